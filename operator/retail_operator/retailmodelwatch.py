"""The RetailModels' informer: each one filed in the ``Registry`` and made due as it needs.

The operator lists and watches the RetailModels itself (``informer``), one ``RetailModelWatch``
per scope. kopf's watch of them filed a restart's list one object per turn of the event loop,
and a RetailModel made during the resync storm that followed was first reconciled minutes
late (bench/notes.md); this one files a page of 500 in a turn.

What each RetailModel's body asks for is decided here, as it is filed: a spec ahead of its
status (a new RetailModel has none) is a change, hurried ahead of the periodic looks; one new
to this replica with its status current (a restart's list) is a look, due now; one deleted,
or that a relist no longer shows (and nothing newer than the list has shown), is forgotten,
and so is one a relist shows deleted and made again (its back-off and findings are not the
new object's).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from retail_operator import metrics
from retail_operator.informer import Informer
from retail_operator.kube import KubeApi
from retail_operator.objects import Due, Key, Registry, Wants
from retail_operator.rendering import GROUP, KIND, VERSION


class RetailModelWatch(Informer):
    """The RetailModels in one scope (``namespace`` None: every namespace)."""

    def __init__(
        self,
        kube: KubeApi,
        streams: KubeApi,
        registry: Registry,
        namespace: str | None,
        wants: Wants,
    ) -> None:
        super().__init__(kube, streams, f"{GROUP}/{VERSION}", KIND, namespace, "")
        self.registry = registry
        self.wants = wants

    def _file_listed(self, body: dict[str, Any], first: bool) -> Key:
        return self._file(body)

    def _file_unlisted(self, seen: set[Any], version: str, first: bool) -> None:
        for key in self.registry.keys(self.namespace) - seen:
            if self.registry.vanished(key, version):
                self.wants.forget(key)

    def _file_event(self, deleted: bool, body: dict[str, Any]) -> None:
        if not deleted:
            self._file(body)
            return
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        tracked = self.registry.get(key)
        if tracked is not None and tracked.uid == meta.get("uid"):  # not one made since
            self.registry.forget(key)
            self.wants.forget(key)

    def _file(self, body: dict[str, Any]) -> Key:
        meta = body["metadata"]
        held = self.registry.get((meta["namespace"], meta["name"]))
        tracked, due = self.registry.observe(body)
        if held is not None and tracked is not held:  # deleted and made again since (a relist)
            self.wants.forget(tracked.key)  # its back-off and findings were the old one's
        if due is Due.CHANGED:
            if not body.get("status"):
                seen_new(body["metadata"].get("creationTimestamp"))
            self.wants.hurry(tracked.key)
        elif due is Due.UNSEEN:
            self.wants.schedule(tracked.key, 0.0)
        return tracked.key


def seen_new(created: str | None) -> None:
    """A RetailModel with no status yet has reached the operator: how long after its creation."""
    try:
        when = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return
    metrics.NEW_SEEN_SECONDS.observe(max(0.0, (datetime.now(UTC) - when).total_seconds()))
