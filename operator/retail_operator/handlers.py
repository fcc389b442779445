"""kopf handlers: the operator's thin face on the Kubernetes watch streams.

Watch events for RetailModels feed the ``Scheduler``; watch events for the children feed the
reconciler's cheap drift-and-availability path. No handler here stores progress in the objects
and none needs a finalizer: owned children go by garbage collection. With leader election on
(the default), every replica watches but only the one holding the Lease reconciles or writes
(``leadership``); a replica that loses the Lease stands by again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kopf

from retail_operator import metrics
from retail_operator.aws.images import ImageInspector
from retail_operator.aws.objects import ModelInspector
from retail_operator.errors import OperatorError
from retail_operator.kube import EventPoster, KubeApi, load_configuration
from retail_operator.leadership import LeaderElection, Timing, identity
from retail_operator.podmetrics import PodMetrics, parse_networks
from retail_operator.progressive import CanaryRollout
from retail_operator.reconcile import Reconciler
from retail_operator.rendering import GROUP, KIND, MANAGED_BY, PLURAL, VERSION
from retail_operator.scheduler import Scheduler
from retail_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)
CHILD_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _lease_namespace(config: OperatorSettings) -> str:
    if config.lease_namespace:
        return config.lease_namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return "default"


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base. Every handler here is an event handler, which never sees a diff, yet kopf
    deep-copies each body on every watch event to build one: about a tenth of the operator's
    CPU while a thousand RetailModels rolled out (docs/performance.md)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = OperatorSettings()
    settings.peering.standalone = True
    settings.posting.enabled = False  # our own Events say what happened, not kopf's log lines
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    kube = KubeApi(await load_configuration())
    events = EventPoster(kube)
    pods = PodMetrics(kube, networks=parse_networks(config.scrape_networks))
    reconciler = Reconciler(
        kube=kube,
        images=ImageInspector(tag_ttl=config.tag_ttl_seconds, scan_ttl=config.scan_ttl_seconds),
        models=ModelInspector(ttl=config.model_ttl_seconds),
        emit=events,
        canary=CanaryRollout(kube, pods, events, poll_seconds=config.pending_seconds),
        pending_seconds=config.pending_seconds,
    )
    election: LeaderElection | None = None
    if config.leader_election:
        election = LeaderElection(
            kube,
            namespace=_lease_namespace(config),
            name=config.lease_name,
            identity=identity(),
            timing=Timing(
                config.lease_duration_seconds,
                config.renew_deadline_seconds,
                config.retry_period_seconds,
            ),
        )
    scheduler = Scheduler(
        reconciler,
        resync_seconds=config.resync_seconds,
        concurrency=config.concurrency,
        leading=election.leading if election else None,
    )
    memo.election = election
    memo.kube = kube
    memo.pods = pods
    memo.events = events
    memo.reconciler = reconciler
    memo.scheduler = scheduler
    memo.loop_task = asyncio.create_task(scheduler.run(), name="retail-scheduler")
    if election is None:
        metrics.LEADER.set(1)
        return

    def leadership_changed(leading: bool) -> None:
        metrics.LEADER.set(1 if leading else 0)
        if leading:
            scheduler.catch_up()
        # Lost: the scheduler pauses (it runs only while ``leading`` is set) and child events
        # are ignored; this replica watches on as a standby until it can lead again.

    election.on_change = leadership_changed
    memo.election_task = asyncio.create_task(election.run(), name="retail-leader-election")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.loop_task.cancel()
    await memo.scheduler.stop()
    if memo.election is not None:
        memo.election_task.cancel()  # releases the Lease if held
        await asyncio.gather(memo.election_task, return_exceptions=True)
    await memo.events.drain()
    await memo.pods.close()
    await memo.kube.close()


@kopf.on.probe(id="scheduler")
def scheduler_alive(memo: kopf.Memo, **_: Any) -> bool:
    return not memo.loop_task.done()


@kopf.on.probe(id="calls")
def api_calls(memo: kopf.Memo, **_: Any) -> dict[str, int]:
    """Calls made so far, on /healthz (kopf caches probes for 10 s): for the scale benchmark."""
    reconciler: Reconciler = memo.reconciler
    return {
        "kubernetes": memo.kube.calls,
        "ecr": reconciler.images.calls,
        "s3": reconciler.models.calls,
    }


@kopf.on.event(GROUP, VERSION, PLURAL)
async def retailmodel_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    # async, so kopf runs it on the event loop: kopf runs plain functions in a worker thread,
    # and the Scheduler (its heap, its asyncio.Event) belongs to the loop.
    scheduler: Scheduler = memo.scheduler
    if type == "DELETED":
        scheduler.forget(body.metadata["namespace"], body.metadata["name"])
    else:
        scheduler.observe(body)


async def _child_event(kind: str, type: str, body: kopf.Body, memo: kopf.Memo) -> None:
    owner = next(
        (
            ref
            for ref in body.metadata.get("ownerReferences", [])
            if ref.get("kind") == KIND and ref.get("controller")
        ),
        None,
    )
    if owner is None:
        return
    if memo.election is not None and not memo.election.is_leader:
        return  # a standby writes nothing
    scheduler: Scheduler = memo.scheduler
    key = (body.metadata["namespace"], owner["name"])
    parent = scheduler.body(key)
    if parent is None or parent["metadata"].get("uid") != owner.get("uid"):
        return  # an orphan on its way to garbage collection, or not ours
    if parent["metadata"].get("deletionTimestamp"):
        return
    live = None if type == "DELETED" else dict(body)
    try:
        status = await memo.reconciler.child_changed(parent, kind, body.metadata["name"], live)
    except OperatorError as error:
        logger.warning("%s/%s: %s; the next resync will retry", *key, error)
        scheduler.schedule(key, 5.0)
        return
    if status is not None:
        scheduler.update_status(key, status)


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
async def deployment_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _child_event("Deployment", type, body, memo)


@kopf.on.event("v1", "services", labels=CHILD_LABELS)
async def service_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _child_event("Service", type, body, memo)


@kopf.on.event("v1", "configmaps", labels=CHILD_LABELS)
async def config_map_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _child_event("ConfigMap", type, body, memo)
