"""Noticing a new model object within seconds, for the RetailModels a canary or a signature
protects.

A RetailModel at rest is looked at every resync (60 s), which is fine for new findings and
moved tags but makes a bad model upload wait up to a minute for its canary, and leaves
``ModelSignatureVerified`` saying True for up to a minute after an unsigned model replaced the
signed one (the pods refuse it at once; the status should say so as soon). ``ModelWatch`` HEADs
the model object of every Canary RetailModel, and of every RetailModel whose models must be
signed (keys in its spec or in a policy that applies), every few seconds (one shared, cached
HEAD per object: S3's cheapest call, no Kubernetes write) and makes the RetailModel due at once
when the object differs from the one its last reconcile saw. Other Immediate RetailModels need
none of this: their pods poll the object themselves. Only the leader looks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from retail_operator import policy
from retail_operator.errors import OperatorError
from retail_operator.facts import ModelObject
from retail_operator.objects import Key, Registry, Tracked
from retail_operator.spec import ModelSpec

logger = logging.getLogger(__name__)


class ModelHeads(Protocol):
    async def head(self, source: ModelSpec, *, bucket_owner: str = "") -> ModelObject: ...


@dataclass(frozen=True)
class _Rules:
    """What the policies that apply in a namespace say about its models, as the watch needs it."""

    signed: bool  # one of them trusts model keys
    bucket_owner: str


def _is_canary(tracked: Tracked) -> bool:
    return ((tracked.body.get("spec") or {}).get("rollout") or {}).get("strategy") == "Canary"


def _watched(tracked: Tracked, rules: Callable[[str], _Rules]) -> ModelSpec | None:
    """The unpinned model source of a Canary RetailModel, or of one whose models must be signed
    (its spec trusts keys, or a policy does for its namespace), else None (read without parsing
    the whole spec: this runs over every RetailModel every few seconds)."""
    spec = tracked.body.get("spec") or {}
    model = spec.get("model") or {}
    if model.get("versionId") or not isinstance(model.get("s3Uri"), str):
        return None
    signed = bool(model.get("trustedKeys")) or rules(tracked.key[0]).signed
    return ModelSpec(s3_uri=model["s3Uri"]) if _is_canary(tracked) or signed else None


class ModelWatch:
    def __init__(
        self,
        registry: Registry,
        models: ModelHeads,
        hurry: Callable[[Key], None],
        *,
        interval: float,
        leading: asyncio.Event | None = None,
        concurrency: int = 4,
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
        """One round: HEAD every watched object; make due each RetailModel whose changed.

        A few HEADs at once (``concurrency``, 4): they share the AWS worker threads with the
        reconciles, so a round over many RetailModels takes longer rather than slowing every
        reconcile; the next round starts ``interval`` after this one ends. Canaries first: a
        bad upload under one is the costlier to notice late."""
        rules = self._rules()
        watched = [
            (t, source) for t in self._registry if (source := _watched(t, rules)) is not None
        ]
        watched.sort(key=lambda pair: not _is_canary(pair[0]))
        await asyncio.gather(
            *(self._look_at(t, source, rules(t.key[0]).bucket_owner) for t, source in watched)
        )

    def _rules(self) -> Callable[[str], _Rules]:
        """Each namespace's rules, worked out once per round, not per RetailModel."""
        policies = list(self._registry.policies.values())

        @functools.cache
        def rules(namespace: str) -> _Rules:
            applying = policy.applying(policies, self._registry.namespaces.get(namespace, {}))
            signed = any(p.spec.models.trusted_keys for p in applying)
            return _Rules(signed, policy.requirements(applying).bucket_owner)

        return rules

    async def _look_at(self, tracked: Tracked, source: ModelSpec, bucket_owner: str) -> None:
        if not tracked.model_seen:
            return  # not reconciled yet by this leader: its reconcile is due anyway
        async with self._slots:
            try:
                found = await self._models.head(source, bucket_owner=bucket_owner)
            except OperatorError as error:
                logger.debug("%s/%s: model not looked at: %s", *tracked.key, error)
                return
        if found.identity != tracked.model_seen:
            logger.info(
                "%s/%s: a new model object (%s): reconciling now",
                *tracked.key,
                found.identity,
            )
            tracked.model_seen = found.identity  # said once
            self._hurry(tracked.key)
