"""The children a RetailModel owns, and only those: looked up, applied, removed.

A child is this RetailModel's when its controller owner reference names the RetailModel's uid.
``Children.apply`` server-side applies a child (taking over conflicting fields, so hand edits
to the fields the operator renders are reverted) only after making sure of that: an object of
the same name that someone else made (or that a RetailModel of the same name, deleted since,
left behind) is never applied over, adopted or deleted; ``NameConflict`` names it instead.
``Children.remove`` deletes only an object it owns, with the object's uid as a precondition.

Every child is applied ``rendering.stamped`` (a digest of the document as an annotation), and
an apply that would change nothing is not sent: the live child carries the same stamp and
every field the operator renders still holds its value. A periodic look at an unchanged
RetailModel then costs the API server nothing (three applies per look, thousands a minute at
scale, were most of what a resync storm asked of it: bench/RESULTS.md), while a child someone
edited, or one applied from another document, is applied again as before.

A Service the API server has not got yet is created at most ``service_creates`` at a time
(a ``lanes.Gate``: a change's create goes first). The API server creates Services one after
another (a ClusterIP each): while 10,000 RetailModels rolled out, up to 128 creates at once
took 7.3 s each on average there (its own histogram), where every other write took 60-70 ms,
and about a third ran past the client's deadline, leaked their address and were tried again
(bench/notes.md). Queued here instead, a new RetailModel's Service goes ahead of the
rollout's and none times out; the API server's rate is the same either way.

``LiveChildren`` answers "what is there?" for one reconcile: from the watch-fed ``Registry``
when it knows the child, else with one read of the API server's watch cache, remembered for
the rest of the reconcile (a new RetailModel's three children cost three cheap reads, once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from retail_operator import rendering
from retail_operator.errors import NameConflict
from retail_operator.kube import KubeApi
from retail_operator.lanes import Gate
from retail_operator.objects import Tracked, controller_uid

_API_VERSIONS = {
    "Deployment": "apps/v1",
    "ConfigMap": "v1",
    "Service": "v1",
    "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}


def _describe_owner(body: Mapping[str, Any]) -> str:
    references = body.get("metadata", {}).get("ownerReferences") or []
    controller = next((r for r in references if r.get("controller")), None)
    if controller is None:
        return "it has no controller"
    kind, name, uid = (controller.get(k) for k in ("kind", "name", "uid"))
    return f"its controller is {kind} {name} ({uid})"


@dataclass
class LiveChildren:
    """One reconcile's view of the live children (None: absent)."""

    kube: KubeApi
    tracked: Tracked
    _read: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """The live child, whoever owns it (None when there is none)."""
        if (kind, name) in self._read:  # applied, removed or read in this reconcile
            return self._read[(kind, name)]
        namespace = self.tracked.key[0]
        known = self.tracked.registry.child(namespace, kind, name)
        if known is not None:
            return known
        found: dict[str, Any] | None = await self.kube.get(
            _API_VERSIONS[kind], kind, namespace, name, cached=True
        )
        self._read[(kind, name)] = found
        return found

    def known(self, kind: str, name: str) -> dict[str, Any] | None:
        """The child as this reconcile or the watches last saw it, without asking the API."""
        if (kind, name) in self._read:
            return self._read[(kind, name)]
        return self.tracked.registry.child(self.tracked.key[0], kind, name)

    async def owned(self, kind: str, name: str) -> dict[str, Any] | None:
        """The live child, only if this RetailModel owns it."""
        live = await self.get(kind, name)
        if live is None or controller_uid(live) != self.tracked.uid:
            return None
        return live

    def applied(self, kind: str, name: str, live: dict[str, Any] | None) -> None:
        self._read[(kind, name)] = live
        if live is not None:
            self.tracked.registry.child_applied(self.tracked.key[0], kind, live)


@dataclass
class Children:
    kube: KubeApi
    service_creates: int = 8
    _creating: Gate = field(init=False)

    def __post_init__(self) -> None:
        self._creating = Gate(self.service_creates)

    def live(self, tracked: Tracked) -> LiveChildren:
        return LiveChildren(self.kube, tracked)

    async def claim(self, live: LiveChildren, manifests: list[dict[str, Any]]) -> None:
        """``NameConflict`` if any of these names is taken by an object this RetailModel does
        not own: checked for all before any is applied, so none is half rolled out."""
        names = [(manifest["kind"], manifest["metadata"]["name"]) for manifest in manifests]
        # Read together: a new RetailModel's children are read from the API server (a name
        # the watches have not shown may still be a stranger's), one round trip for all.
        found = await asyncio.gather(*(live.get(kind, name) for kind, name in names))
        for (kind, name), existing in zip(names, found, strict=True):
            if existing is not None and controller_uid(existing) != live.tracked.uid:
                raise NameConflict(
                    f"{kind} {name} already exists and is not this RetailModel's "
                    f"({_describe_owner(existing)}): it is left alone; delete or rename it, or "
                    "rename the RetailModel"
                )

    async def apply(self, live: LiveChildren, manifest: dict[str, Any]) -> dict[str, Any]:
        """Apply a child of ``live``'s RetailModel, unless the live one is this document
        unchanged (then it is returned as it is); ``NameConflict`` if the name is taken."""
        await self.claim(live, [manifest])
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        document = rendering.stamped(manifest)
        current = await live.get(kind, name)  # the claim has just read it: no API call
        if current is not None and rendering.unchanged(document, current):
            return current
        if current is None and kind == "Service":
            async with self._creating:
                applied = await self.kube.apply(document)
        else:
            applied = await self.kube.apply(document)
        live.applied(kind, name, applied)
        return applied

    async def remove(self, live: LiveChildren, kind: str, name: str) -> bool:
        """Delete a child this RetailModel owns (only that very object); whether one went.

        Only what the watches have shown counts here: every RetailModel without a canary, a
        budget or an autoscaler asks this on every reconcile, and a read of the API server
        for each would cost thousands of reads a minute at scale. One created a moment ago
        and not seen yet is removed on the next reconcile."""
        known = live.known(kind, name)
        owned = known if known is not None and controller_uid(known) == live.tracked.uid else None
        if owned is None:
            return False
        await self.kube.delete(
            _API_VERSIONS[kind],
            kind,
            live.tracked.key[0],
            name,
            uid=str(owned["metadata"].get("uid", "")),
        )
        live.applied(kind, name, None)  # gone for the rest of this reconcile
        return True
