"""What a RetailModel's list entry or watch event asks for, decided as it is filed
(``RetailModelWatch``'s filing, called directly: the list and the watch themselves are tested
on the API server in tests/integration/operator/test_retailmodelwatch.py)."""

from __future__ import annotations

from typing import Any, cast

from retail_operator.kube import KubeApi
from retail_operator.objects import Key, Registry
from retail_operator.retailmodelwatch import RetailModelWatch


class Wanted:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def hurry(self, key: Key) -> None:
        self.asked.append(("hurry", key[1]))

    def schedule(self, key: Key, delay: float) -> None:
        self.asked.append(("schedule", key[1]))

    def forget(self, key: Key) -> None:
        self.asked.append(("forget", key[1]))


def retailmodel(
    name: str, uid: str, version: int, generation: int = 1, observed: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": uid,
            "generation": generation,
            "resourceVersion": str(version),
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"image": {"tag": "v1"}},
    }
    if observed is not None:
        body["status"] = {"observedGeneration": observed}
    return body


def watching() -> tuple[RetailModelWatch, Registry, Wanted]:
    registry, wanted = Registry(), Wanted()
    unused = cast(KubeApi, None)  # no list or watch is made here
    return RetailModelWatch(unused, unused, registry, "shop", wanted), registry, wanted


def test_a_new_spec_is_hurried_a_current_one_looked_at_and_a_known_one_left_alone() -> None:
    watch, _, wanted = watching()
    watch._file_listed(retailmodel("new", "u-1", 5), first=True)
    watch._file_listed(retailmodel("current", "u-2", 6, observed=1), first=True)
    watch._file_event(False, retailmodel("current", "u-2", 7, observed=1))  # status only
    watch._file_event(False, retailmodel("current", "u-2", 8, generation=2, observed=1))
    assert wanted.asked == [("hurry", "new"), ("schedule", "current"), ("hurry", "current")]


def test_the_delete_of_an_older_object_of_that_name_forgets_nothing() -> None:
    """Deleted and made again: the late delete of the first object must not drop the second
    (it would not be reconciled again until it next changed)."""
    watch, registry, wanted = watching()
    watch._file_event(False, retailmodel("prices", "second", 9))
    watch._file_event(True, retailmodel("prices", "first", 8))
    tracked = registry.get(("shop", "prices"))
    assert tracked is not None and tracked.uid == "second"
    watch._file_event(True, retailmodel("prices", "second", 10))
    assert registry.get(("shop", "prices")) is None
    assert wanted.asked == [("hurry", "prices"), ("forget", "prices")]


def test_a_relist_forgets_what_it_no_longer_shows_unless_newer_than_the_list() -> None:
    watch, registry, wanted = watching()
    watch._file_event(False, retailmodel("gone", "u-1", 7, observed=1))
    watch._file_event(False, retailmodel("since", "u-2", 12, observed=1))
    assert registry.keys("shop") == {("shop", "gone"), ("shop", "since")}
    assert registry.keys("elsewhere") == set()
    watch._file_unlisted(set(), "10", first=False)
    assert registry.keys(None) == {("shop", "since")}
    assert ("forget", "gone") in wanted.asked and ("forget", "since") not in wanted.asked


def test_a_relist_showing_one_deleted_and_made_again_forgets_the_old_one_first() -> None:
    """Its back-off, findings and policy violations were the old object's, not the new one's."""
    watch, registry, wanted = watching()
    watch._file_listed(retailmodel("prices", "first", 7, observed=1), first=True)
    registry.record_violations(("shop", "prices"), {"strict"})
    watch._file_listed(retailmodel("prices", "second", 12), first=False)
    tracked = registry.get(("shop", "prices"))
    assert tracked is not None and tracked.uid == "second"
    assert registry.violating["strict"] == set()
    assert wanted.asked == [("schedule", "prices"), ("forget", "prices"), ("hurry", "prices")]
    watch._file_listed(retailmodel("prices", "first", 7, observed=1), first=False)  # older
    assert wanted.asked[-1] == ("hurry", "prices")  # nothing more asked; the new one kept
    tracked = registry.get(("shop", "prices"))
    assert tracked is not None and tracked.uid == "second"
