"""A new model object under a Canary RetailModel is noticed within one look, not a resync."""

from __future__ import annotations

import asyncio
from typing import Any

from retail_operator.facts import ModelObject
from retail_operator.modelwatch import ModelWatch
from retail_operator.objects import Registry
from retail_operator.spec import ModelSpec


def body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "uid": name, "generation": 1},
        "spec": {"model": {"s3Uri": f"s3://models/{name}.ubj"}, **spec},
    }


class Heads:
    def __init__(self) -> None:
        self.latest: dict[str, str] = {}
        self.asked: list[str] = []

    async def head(self, source: ModelSpec, *, bucket_owner: str = "") -> ModelObject:
        self.asked.append(source.s3_uri)
        return ModelObject("etag", self.latest.get(source.s3_uri, "v1"), "sha")


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
