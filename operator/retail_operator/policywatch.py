"""The informers of what decides which policy applies where: RetailModelPolicies and namespaces.

Both are listed before anything is looked at (``informer.inform`` sets ``listed`` only once
every informer's first list is in): a restarted operator that looked at its RetailModels
before the policies were in would roll out what a policy refuses. kopf watched both before,
and started its watches only after the operator's own had listed the RetailModels, so that
was the usual order, not a rare race.

A policy made, changed or deleted makes every RetailModel due now (judged against the
policies again); a namespace's labels decide which policies select it, so a namespace seen
for the first time or relabelled makes its RetailModels due when a policy selects namespaces
by label. The first lists make nothing due: every RetailModel is due then anyway.
"""

from __future__ import annotations

import logging
from typing import Any

from retail_operator.informer import Informer
from retail_operator.kube import KubeApi
from retail_operator.objects import Registry, Wants
from retail_operator.policy import Policy
from retail_operator.rendering import GROUP, VERSION

logger = logging.getLogger(__name__)


class PolicyWatch(Informer):
    """Every RetailModelPolicy (cluster-scoped), kept in ``registry.policies``."""

    def __init__(self, kube: KubeApi, streams: KubeApi, registry: Registry, wants: Wants) -> None:
        super().__init__(kube, streams, f"{GROUP}/{VERSION}", "RetailModelPolicy", None, "")
        self.registry = registry
        self.wants = wants

    def _file_listed(self, body: dict[str, Any], first: bool) -> str:
        name = str(body["metadata"]["name"])
        if self._keep(name, body) and not first:
            self._judge_all_again()
        return name

    def _file_unlisted(self, seen: set[Any], version: str, first: bool) -> None:
        gone = [name for name in self.registry.policies if name not in seen]
        for name in gone:
            self._drop(name)
        if gone and not first:
            self._judge_all_again()

    def _file_event(self, deleted: bool, body: dict[str, Any]) -> None:
        name = str(body["metadata"]["name"])
        if deleted:
            self._drop(name)
        elif not self._keep(name, body):
            return
        self._judge_all_again()

    def _keep(self, name: str, body: dict[str, Any]) -> bool:
        """Hold the policy ``body`` says; whether that changed what is held."""
        try:
            policy = Policy.from_body(body)
        except ValueError as error:  # the CRD's schema admits only what parses; say so anyway
            logger.error("RetailModelPolicy %s is not readable, ignored: %s", name, error)
            return False
        if self.registry.policies.get(name) == policy:
            return False
        self.registry.policies[name] = policy
        return True

    def _drop(self, name: str) -> None:
        self.registry.policies.pop(name, None)
        self.registry.violating.pop(name, None)

    def _judge_all_again(self) -> None:
        for tracked in self.registry:
            self.wants.schedule(tracked.key, 0.0)


class NamespaceWatch(Informer):
    """Every namespace's labels, kept in ``registry.namespaces``."""

    def __init__(self, kube: KubeApi, streams: KubeApi, registry: Registry, wants: Wants) -> None:
        super().__init__(kube, streams, "v1", "Namespace", None, "")
        self.registry = registry
        self.wants = wants

    def _file_listed(self, body: dict[str, Any], first: bool) -> str:
        name = str(body["metadata"]["name"])
        self._labels(name, body, judge=not first)
        return name

    def _file_unlisted(self, seen: set[Any], version: str, first: bool) -> None:
        for name in [name for name in self.registry.namespaces if name not in seen]:
            del self.registry.namespaces[name]

    def _file_event(self, deleted: bool, body: dict[str, Any]) -> None:
        name = str(body["metadata"]["name"])
        if deleted:
            self.registry.namespaces.pop(name, None)
        else:
            self._labels(name, body, judge=True)

    def _labels(self, name: str, body: dict[str, Any], *, judge: bool) -> None:
        labels = dict(body["metadata"].get("labels") or {})
        if self.registry.namespaces.get(name) == labels:
            return
        self.registry.namespaces[name] = labels
        if judge and any(p.spec.namespace_selector for p in self.registry.policies.values()):
            for tracked in self.registry.in_namespace(name):
                self.wants.schedule(tracked.key, 0.0)
