"""A child's watch event that waited on the RetailModel's lock while a reconcile rolled out a
new image must judge the child by what that reconcile applied, not by what it saw before the
wait: else it "reverts drift" back to the old image (seen on the real node: the rollout
flip-flopped between two digests at every resync and never became Ready)."""

from __future__ import annotations

import asyncio

from tests.unit.operator.fakes import World, pinned


def test_a_child_event_queued_behind_a_rollout_does_not_revert_it() -> None:
    world = World()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)  # v1 runs

    async def scenario() -> None:
        world.store.gate = asyncio.Event()
        tracked.body["spec"]["image"]["tag"] = "v2"
        rollout = asyncio.create_task(world.reconciler.reconcile(tracked))
        while pinned("v2") not in str(world.store.kinds("Deployment")["prices"]):
            await asyncio.sleep(0)  # the new Deployment is applied; its status write is held
        live = world.store.kinds("Deployment")["prices"]  # the watch event of the new one
        child = asyncio.create_task(
            world.reconciler.child_changed(tracked, "Deployment", "prices", live)
        )
        await asyncio.sleep(0.01)  # the child event waits on the RetailModel's lock
        world.store.gate.set()
        await asyncio.gather(rollout, child)

    asyncio.run(scenario())
    deployments = [m for m in world.store.applied if m["kind"] == "Deployment"]
    images = [d["spec"]["template"]["spec"]["containers"][0]["image"] for d in deployments]
    assert images[-1] == pinned("v2"), "the child event re-applied another image"
    assert [e for e in world.events if e[1] == "DriftReverted"] == []
