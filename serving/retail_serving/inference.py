"""Running model calls without stalling the event loop, and coalescing single-row requests.

Two paths lead to the model:

* ``predict_matrix`` for requests that bring many rows: one vectorised call in a worker thread
  (XGBoost releases the GIL while it predicts, so the loop keeps parsing other requests
  meanwhile), or on the event loop when it has at most ``inline_max_rows`` rows.
* ``predict_row`` for single-row requests, through adaptive micro-batching: rows that arrive
  together are stacked into one model call. An idle server answers a lone request on the next
  loop tick, with no added wait. While a call is running, newly arrived rows queue up and go
  in the next call. When the server is busy, the next call waits for as many rows as were in
  flight last time (the rows of the last call plus those that queued meanwhile), but never
  longer than ``max_wait``: one full call per round of requests pays XGBoost's per-call cost
  once, where two half-size calls would pay it twice (measured: +20 % requests/s at 16
  connections). Rows are grouped by the model they were encoded for, so a request that
  started on one model finishes on it even if a reload swaps the model while it waits.

Both paths end in ``predict_matrix``, which counts the rows of each model call by predicted
class (one vectorised count per call, not per row): what a canary's prediction shift is
measured from; and, when the model carries a drift reference, its input rows in the
reference's feature bins (one vectorised pass per call): what drift is measured from.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from retail_serving.encoding import Matrix
from retail_serving.metrics import ServingMetrics
from retail_serving.model import Model, Probabilities


@dataclass(frozen=True, eq=False)
class _Pending:
    model: Model
    row: list[float]
    result: asyncio.Future[list[float]]


class InferenceEngine:
    def __init__(
        self,
        metrics: ServingMetrics,
        *,
        inline_max_rows: int,
        microbatch: bool,
        microbatch_max_rows: int,
        microbatch_max_wait: float,
    ) -> None:
        self.metrics = metrics
        self.inline_max_rows = inline_max_rows
        self.microbatch = microbatch
        self.max_rows = microbatch_max_rows
        self.max_wait = microbatch_max_wait
        self._executor = self._new_executor()
        self._pending: list[_Pending] = []
        self._running = False  # a micro-batch model call is in flight
        self._timer: asyncio.Handle | None = None
        self._expected = 1  # rows the last micro-batch carried: how much company to wait for

    @staticmethod
    def _new_executor() -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=2, thread_name_prefix="predict")

    def close(self) -> None:
        """Finish running model calls and release the threads (the engine stays usable)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = self._new_executor()

    async def predict_matrix(self, model: Model, matrix: Matrix) -> Probabilities:
        self.metrics.model_calls.observe(len(matrix))
        if len(matrix) <= self.inline_max_rows:
            probabilities = model.predict_proba(matrix)
        else:
            loop = asyncio.get_running_loop()
            probabilities = await loop.run_in_executor(self._executor, model.predict_proba, matrix)
        classes = model.classes
        winners = np.bincount(probabilities.argmax(axis=1), minlength=len(classes))
        self.metrics.predicted(model.version, classes, winners.tolist())
        if model.reference is not None:
            self.metrics.binned(model.version, model.reference, matrix)
        return probabilities

    async def predict_row(self, model: Model, row: list[float]) -> list[float]:
        if not self.microbatch:
            matrix = np.asarray([row], dtype=np.float32)
            return (await self.predict_matrix(model, matrix))[0].tolist()  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        pending = _Pending(model, row, loop.create_future())
        self._pending.append(pending)
        if not self._running:
            self._schedule(loop)
        return await pending.result

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Arrange the next flush: now-ish if the batch is full or the server is quiet."""
        enough = len(self._pending) >= min(self._expected, self.max_rows)
        if self._timer is not None:
            if not enough:
                return
            self._timer.cancel()
        if enough or self.max_wait <= 0:
            self._timer = loop.call_soon(self._flush)
        else:
            self._timer = loop.call_later(self.max_wait, self._flush)

    def _flush(self) -> None:
        self._timer = None
        live = [p for p in self._pending if not p.result.done()]  # drop cancelled requests
        if not live:
            self._pending = []
            return
        model = live[0].model
        batch = [p for p in live[: self.max_rows] if p.model is model]
        taken = {id(p) for p in batch}
        self._pending = [p for p in live if id(p) not in taken]
        self._running = True
        matrix = np.asarray([p.row for p in batch], dtype=np.float32)
        task = asyncio.ensure_future(self.predict_matrix(model, matrix))
        task.add_done_callback(lambda done: self._deliver(batch, done))

    def _deliver(self, batch: list[_Pending], done: asyncio.Future[Probabilities]) -> None:
        self._running = False
        error = asyncio.CancelledError() if done.cancelled() else done.exception()
        if error is not None:
            for pending in batch:
                if not pending.result.done():
                    pending.result.set_exception(error)
        else:
            for pending, row in zip(batch, done.result().tolist(), strict=True):
                if not pending.result.done():
                    pending.result.set_result(row)
        # Rows in this call plus rows that queued meanwhile estimate how many requests are in
        # flight: the next call waits (boundedly) for the answered clients' next requests too,
        # rather than settling into two half-size calls that each pay the per-call cost.
        self._expected = min(len(batch) + len(self._pending), self.max_rows)
        if self._pending:
            self._schedule(asyncio.get_running_loop())
