"""A new model object under a Canary RetailModel, or under one whose models must be signed, is
noticed within one look, not a resync."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from retail_operator.facts import ModelObject
from retail_operator.modelwatch import ModelWatch
from retail_operator.objects import Key, Registry
from retail_operator.policy import Policy
from retail_operator.spec import ModelSpec
from tests.support.signing import KeyPair
from tests.unit.operator.fakes import World

TEAM = KeyPair.new()


def body(name: str, namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": name, "generation": 1},
        "spec": {"model": {"s3Uri": f"s3://models/{name}.ubj"}, **spec},
    }


class Heads:
    def __init__(self) -> None:
        self.latest: dict[str, str] = {}
        self.etags: dict[str, str] = {}
        self.asked: list[str] = []

    async def head(self, source: ModelSpec, *, bucket_owner: str = "") -> ModelObject:
        self.asked.append(source.s3_uri)
        uri = source.s3_uri
        return ModelObject(self.etags.get(uri, "etag"), self.latest.get(uri, "v1"), "sha")


def test_only_canary_models_are_looked_at_and_a_new_version_is_due_at_once() -> None:
    registry = Registry()
    canary = {"rollout": {"strategy": "Canary"}}
    for tracked_body in (
        body("watched", **canary),
        body("immediate"),
        body("pinned", **canary) | {"spec": {"model": {"s3Uri": "s3://m/k", "versionId": "v1"},
                                              **canary}},
        body("new", **canary),
    ):  # fmt: skip
        tracked, _ = registry.observe(tracked_body)
        tracked.model_seen = "" if tracked_body["metadata"]["name"] == "new" else "v1"
    heads, due = Heads(), []
    watch = ModelWatch(registry, heads, due.append, interval=5)

    asyncio.run(watch.look())
    assert heads.asked == ["s3://models/watched.ubj"]  # not Immediate, pinned, or unreconciled
    assert due == []
    heads.latest["s3://models/watched.ubj"] = "v2"
    asyncio.run(watch.look())
    assert due == [("shop", "watched")]
    asyncio.run(watch.look())
    assert due == [("shop", "watched")]  # said once; the reconcile records what it saw


def _seen(registry: Registry, *bodies: dict[str, Any], seen: str = "v1") -> None:
    for tracked_body in bodies:
        tracked, _ = registry.observe(tracked_body)
        tracked.model_seen = seen


def test_a_model_that_must_be_signed_is_watched_by_its_spec_or_by_a_policy_of_its_namespace() -> (
    None
):
    """An unsigned upload is refused by the pods at once; the status must not say
    ``ModelSignatureVerified`` True until the next resync."""
    registry = Registry()
    keys = {"s3Uri": "s3://models/by-spec.ubj", "trustedKeys": [TEAM.public]}
    _seen(
        registry,
        body("by-spec") | {"spec": {"model": keys}},
        body("by-policy", namespace="signed-team"),
        body("elsewhere", namespace="open-team"),
    )
    registry.namespaces = {"signed-team": {"signing": "required"}, "open-team": {}}
    heads, due = Heads(), []
    watch = ModelWatch(registry, heads, due.append, interval=5)
    asyncio.run(watch.look())
    assert heads.asked == ["s3://models/by-spec.ubj"]  # no policy trusts keys yet

    registry.policies["signing"] = Policy.from_body(
        {
            "metadata": {"name": "signing"},
            "spec": {
                "namespaceSelector": {"matchLabels": {"signing": "required"}},
                "models": {"trustedKeys": [TEAM.public]},
            },
        }
    )
    heads.asked.clear()
    asyncio.run(watch.look())
    assert sorted(heads.asked) == ["s3://models/by-policy.ubj", "s3://models/by-spec.ubj"]
    heads.latest["s3://models/by-policy.ubj"] = "v2"
    asyncio.run(watch.look())
    assert due == [("signed-team", "by-policy")]


@pytest.mark.parametrize("version", ["", "null"], ids=["never versioned", "versioning suspended"])
def test_an_unversioned_object_is_told_apart_by_its_etag_and_an_unchanged_one_is_left_alone(
    version: str,
) -> None:
    """In a bucket without versioning every HEAD says version "" (or "null", once versioning was
    suspended, and for every overwrite): the object is the same while its ETag is (before, ""
    never matched what the reconcile recorded, and the RetailModel was made due over and over;
    "null" never changed, and an overwrite went unnoticed until the resync)."""
    world = World()
    world.models.latest = ModelObject("first", version, "sha-first")
    tracked = world.retailmodel(model={"s3Uri": "s3://models/prices/model.ubj",
                                       "trustedKeys": [TEAM.public]})  # fmt: skip
    world.reconcile(tracked)  # records what it saw
    due: list[Key] = []
    watch = ModelWatch(world.registry, world.models, due.append, interval=5)
    for _ in range(3):
        asyncio.run(watch.look())
    assert due == []
    world.models.latest = ModelObject("second", version, "sha-second")
    asyncio.run(watch.look())
    assert due == [tracked.key]
