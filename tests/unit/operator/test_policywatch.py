"""What a RetailModelPolicy's or a namespace's list entry or watch event makes due, decided as
it is filed (the informers' filing, called directly; the lists and watches themselves are the
shared ``Informer``'s, tested on the API server)."""

from __future__ import annotations

from typing import Any, cast

from retail_operator.kube import KubeApi
from retail_operator.objects import Key, Registry
from retail_operator.policy import Policy
from retail_operator.policywatch import NamespaceWatch, PolicyWatch

UNUSED = cast(KubeApi, None)  # no list or watch is made here


class Wanted:
    def __init__(self) -> None:
        self.due: list[str] = []

    def hurry(self, key: Key) -> None:
        raise AssertionError("a policy or a namespace is no change of a spec")

    def schedule(self, key: Key, delay: float) -> None:
        assert delay == 0.0
        self.due.append(f"{key[0]}/{key[1]}")

    def forget(self, key: Key) -> None:
        raise AssertionError("a policy or a namespace forgets no RetailModel")


def registry_with(*keys: Key) -> Registry:
    registry = Registry()
    for index, (namespace, name) in enumerate(keys):
        metadata = {"namespace": namespace, "name": name, "uid": f"u-{index}", "generation": 1}
        registry.observe({"metadata": metadata, "spec": {}, "status": {"observedGeneration": 1}})
    return registry


def policy(name: str, max_severity: str = "HIGH", team: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"scanning": {"maxBlockSeverity": max_severity}}
    if team is not None:
        spec["namespaceSelector"] = {"matchLabels": {"team": team}}
    return {"metadata": {"name": name}, "spec": spec}


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def test_a_policy_made_changed_or_deleted_judges_every_retailmodel_again() -> None:
    registry, wanted = registry_with(("a", "one"), ("b", "two")), Wanted()
    watch = PolicyWatch(UNUSED, UNUSED, registry, wanted)
    watch._file_listed(policy("strict"), first=True)  # the first list: all are due anyway
    assert wanted.due == [] and "strict" in registry.policies
    watch._file_event(False, policy("strict"))  # nothing new
    assert wanted.due == []
    watch._file_event(False, policy("strict", max_severity="CRITICAL"))
    assert sorted(wanted.due) == ["a/one", "b/two"]
    registry.violating["strict"] = {("a", "one")}
    watch._file_event(True, policy("strict"))
    assert len(wanted.due) == 4 and "strict" not in registry.policies
    assert "strict" not in registry.violating


def test_a_relist_drops_a_policy_deleted_meanwhile_and_an_unreadable_one_is_ignored() -> None:
    registry, wanted = registry_with(("a", "one")), Wanted()
    watch = PolicyWatch(UNUSED, UNUSED, registry, wanted)
    watch._file_listed(policy("strict"), first=True)
    watch._file_listed(policy("kept"), first=True)
    watch._file_unlisted({"kept"}, "9", first=False)
    assert set(registry.policies) == {"kept"} and wanted.due == ["a/one"]
    watch._file_event(False, {"metadata": {"name": "bad"}, "spec": {"scanning": 3}})
    assert "bad" not in registry.policies and wanted.due == ["a/one"]


def test_a_namespace_seen_first_or_relabelled_judges_its_retailmodels_under_a_selector() -> None:
    """A RetailModel's event can come before its new namespace's: when the namespace comes,
    its RetailModels are judged again, or a policy selecting it would not apply until the next
    resync."""
    registry = registry_with(("shop", "prices"), ("other", "stock"))
    wanted = Wanted()
    watch = NamespaceWatch(UNUSED, UNUSED, registry, wanted)
    watch._file_listed(namespace("other"), first=True)
    registry.policies["team"] = Policy.from_body(policy("team", team="a"))
    watch._file_event(False, namespace("shop", team="a"))  # first seen, after the first list
    assert wanted.due == ["shop/prices"]
    watch._file_event(False, namespace("shop", team="a"))  # the same labels
    assert wanted.due == ["shop/prices"]
    watch._file_event(False, namespace("other", team="b"))
    assert wanted.due == ["shop/prices", "other/stock"]
    watch._file_unlisted({"shop"}, "9", first=False)
    assert set(registry.namespaces) == {"shop"}


def test_labels_matter_only_when_a_policy_selects_by_them() -> None:
    registry, wanted = registry_with(("shop", "prices")), Wanted()
    registry.policies["strict"] = Policy.from_body(policy("strict"))  # no namespace selector
    watch = NamespaceWatch(UNUSED, UNUSED, registry, wanted)
    watch._file_event(False, namespace("shop", team="a"))
    assert wanted.due == [] and registry.namespaces["shop"] == {"team": "a"}
