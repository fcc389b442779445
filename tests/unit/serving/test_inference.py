"""Micro-batching: concurrent single rows share one model call and each gets its own answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import pytest

from retail_serving.encoding import Matrix
from retail_serving.inference import InferenceEngine
from retail_serving.metrics import ServingMetrics
from retail_serving.model import Model, Probabilities


@dataclass(eq=False)
class RecordingModel:
    """Answers [x, 2x, 3x] for a row whose first value is x, and records each call's size."""

    calls: list[int] = field(default_factory=list)
    version: str = "recording-1"
    classes: tuple[str, ...] = ("Low", "Medium", "High")
    reference: None = None  # no drift reference: no feature bins counted

    def predict_proba(self, matrix: Matrix) -> Probabilities:
        self.calls.append(len(matrix))
        first = matrix[:, :1]
        return np.hstack([first, 2 * first, 3 * first]).astype(np.float32)


def engine(*, microbatch: bool = True, max_rows: int = 256, wait: float = 0.001) -> InferenceEngine:
    return InferenceEngine(
        ServingMetrics(),
        inline_max_rows=8,
        microbatch=microbatch,
        microbatch_max_rows=max_rows,
        microbatch_max_wait=wait,
    )


def as_model(recording: RecordingModel) -> Model:
    return recording  # type: ignore[return-value]  # duck-typed stand-in


async def predict_concurrently(
    subject: InferenceEngine, jobs: list[tuple[RecordingModel, float]]
) -> list[list[float]]:
    return list(
        await asyncio.gather(
            *(subject.predict_row(as_model(model), [x] + [0.0] * 7) for model, x in jobs)
        )
    )


def test_rows_are_counted_by_predicted_class_once_per_model_call() -> None:
    model = RecordingModel()
    subject = engine()
    asyncio.run(predict_concurrently(subject, [(model, 1.0)] * 5 + [(model, -1.0)] * 2))
    subject.close()
    counted = {
        sample.labels["class"]: sample.value
        for family in subject.metrics.registry.collect()
        if family.name == "retail_predictions"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["model_version"] == "recording-1"
    }
    # [x, 2x, 3x]: High for x > 0, Low for x < 0; a class never predicted is there, at zero
    assert counted == {"High": 5.0, "Low": 2.0, "Medium": 0.0}


def test_concurrent_rows_coalesce_into_one_call_with_answers_in_place() -> None:
    model = RecordingModel()
    subject = engine()
    answers = asyncio.run(predict_concurrently(subject, [(model, float(x)) for x in range(1, 41)]))
    subject.close()
    assert model.calls == [40]
    assert answers == [[x, 2 * x, 3 * x] for x in range(1, 41)]


def test_batches_respect_the_row_cap() -> None:
    model = RecordingModel()
    subject = engine(max_rows=16)
    answers = asyncio.run(predict_concurrently(subject, [(model, float(x)) for x in range(50)]))
    subject.close()
    assert sum(model.calls) == 50 and max(model.calls) <= 16 and len(model.calls) >= 4
    assert [a[0] for a in answers] == [float(x) for x in range(50)]


def test_rows_for_different_models_never_share_a_call() -> None:
    old, new = RecordingModel(), RecordingModel()
    jobs = [(old, 1.0), (new, 2.0), (old, 3.0), (new, 4.0)]
    subject = engine()
    answers = asyncio.run(predict_concurrently(subject, jobs))
    subject.close()
    assert sum(old.calls) == 2 and sum(new.calls) == 2
    assert [a[0] for a in answers] == [1.0, 2.0, 3.0, 4.0]


def test_without_microbatching_every_row_is_its_own_call() -> None:
    model = RecordingModel()
    subject = engine(microbatch=False)
    asyncio.run(predict_concurrently(subject, [(model, 1.0)] * 5))
    subject.close()
    assert model.calls == [1] * 5


def test_a_failing_model_call_fails_every_request_in_the_batch() -> None:
    class Broken(RecordingModel):
        def predict_proba(self, matrix: Matrix) -> Probabilities:
            raise RuntimeError("boom")

    subject = engine()

    async def run() -> list[object]:
        rows = [subject.predict_row(as_model(Broken()), [1.0] * 8) for _ in range(3)]
        return list(await asyncio.gather(*rows, return_exceptions=True))

    results = asyncio.run(run())
    subject.close()
    assert all(isinstance(result, RuntimeError) for result in results)


@pytest.mark.parametrize("rows", [3, 500])
def test_matrices_small_and_large_get_one_call(rows: int) -> None:
    model = RecordingModel()
    subject = engine()
    matrix = np.arange(rows * 8, dtype=np.float32).reshape(rows, 8)
    result = asyncio.run(subject.predict_matrix(as_model(model), matrix))
    subject.close()
    assert model.calls == [rows]
    assert result[:, 0].tolist() == matrix[:, 0].tolist()


def test_closed_loop_clients_are_answered_in_full_calls() -> None:
    model = RecordingModel()
    subject = engine(wait=5.0)

    async def client(x: float) -> None:
        for _ in range(3):  # closed loop: ask again as soon as answered
            await subject.predict_row(as_model(model), [x] + [0.0] * 7)

    async def run() -> None:
        await asyncio.gather(*(client(float(x)) for x in range(8)))

    asyncio.run(run())
    subject.close()
    assert model.calls == [8, 8, 8]
