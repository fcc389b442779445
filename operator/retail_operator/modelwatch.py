"""Noticing a new model object within seconds, for the RetailModels a canary protects.

A RetailModel at rest is looked at every resync (60 s), which is fine for new findings and
moved tags but makes a bad model upload wait up to a minute for its canary. ``ModelWatch``
HEADs the model object of every Canary RetailModel every few seconds (one shared, cached HEAD
per object: S3's cheapest call, no Kubernetes write) and makes the RetailModel due at once
when the version differs from the one its last reconcile saw. Immediate RetailModels need
none of this: their pods poll the object themselves. Only the leader looks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from retail_operator import policy
from retail_operator.errors import OperatorError
from retail_operator.facts import ModelObject
from retail_operator.objects import Key, Registry, Tracked
from retail_operator.spec import ModelSpec

logger = logging.getLogger(__name__)


class ModelHeads(Protocol):
    async def head(self, source: ModelSpec, *, bucket_owner: str = "") -> ModelObject: ...


def _watched(tracked: Tracked) -> ModelSpec | None:
    """The unpinned model source of a Canary RetailModel, else None (read without parsing the
    whole spec: this runs over every RetailModel every few seconds)."""
    spec = tracked.body.get("spec") or {}
    if (spec.get("rollout") or {}).get("strategy") != "Canary":
        return None
    model = spec.get("model") or {}
    if model.get("versionId") or not isinstance(model.get("s3Uri"), str):
        return None
    return ModelSpec(s3_uri=model["s3Uri"])


class ModelWatch:
    def __init__(
        self,
        registry: Registry,
        models: ModelHeads,
        hurry: Callable[[Key], None],
        *,
        interval: float,
        leading: asyncio.Event | None = None,
        concurrency: int = 16,
    ) -> None:
        self._registry = registry
        self._models = models
        self._hurry = hurry
        self._interval = interval
        self._leading = leading
        self._slots = asyncio.Semaphore(concurrency)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if self._leading is not None and not self._leading.is_set():
                continue
            await self.look()

    async def look(self) -> None:
        """One round: HEAD every watched object; make due each RetailModel whose changed."""
        watched = [(t, source) for t in self._registry if (source := _watched(t)) is not None]
        await asyncio.gather(*(self._look_at(t, source) for t, source in watched))

    async def _look_at(self, tracked: Tracked, source: ModelSpec) -> None:
        if not tracked.model_seen:
            return  # not reconciled yet by this leader: its reconcile is due anyway
        namespace = tracked.key[0]
        applying = policy.applying(
            self._registry.policies.values(), self._registry.namespaces.get(namespace, {})
        )
        async with self._slots:
            try:
                found = await self._models.head(
                    source, bucket_owner=policy.requirements(applying).bucket_owner
                )
            except OperatorError as error:
                logger.debug("%s/%s: model not looked at: %s", *tracked.key, error)
                return
        if found.version_id != tracked.model_seen:
            logger.info(
                "%s/%s: a new model object (version %s): reconciling now",
                *tracked.key,
                found.version_id or "(unversioned)",
            )
            tracked.model_seen = found.version_id  # said once
            self._hurry(tracked.key)
