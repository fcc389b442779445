"""kopf's start-up, clean-up and probes: the operator's thin face, wiring its parts together.

The operator's own lists and watches (``informer``) of the RetailModels
(``retailmodelwatch``), of their children (``childwatch``), and of the RetailModelPolicies and
the namespaces' labels, which decide what may roll out (``policywatch``), feed the
``Registry`` (every replica keeps it warm); nothing is looked at before all of them are
listed. A RetailModel's event makes it due in the ``Scheduler``, and a child's change, on the
leader, takes the reconciler's cheap drift-and-availability path. kopf runs the process and
watches nothing. Nothing stores progress in the objects and none needs a finalizer: owned
children go by garbage collection. With leader election on (the default), every replica
watches but only the one holding the Lease reconciles or writes (``leadership``); a replica
that loses the Lease cancels what it was doing and stands by again.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import kopf

from retail_operator import metrics
from retail_operator.aws.images import ImageInspector
from retail_operator.aws.objects import ModelInspector
from retail_operator.aws.signatures import ImageSignatures
from retail_operator.canary.scraping import PodMetrics, parse_networks
from retail_operator.childwatch import ChildWatch, React, Reactions
from retail_operator.errors import NotLeader, OperatorError, retry_after
from retail_operator.informer import inform
from retail_operator.kube import EventPoster, KubeApi, load_configuration
from retail_operator.leadership import LeaderElection, Timing, identity
from retail_operator.modelwatch import ModelWatch
from retail_operator.objects import ChildKey, Registry, Tracked
from retail_operator.policywatch import NamespaceWatch, PolicyWatch
from retail_operator.reconcile import Reconciler
from retail_operator.rendering import MANAGED_BY
from retail_operator.retailmodelwatch import RetailModelWatch
from retail_operator.scheduler import Scheduler
from retail_operator.settings import Settings

logger = logging.getLogger(__name__)
CHILD_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}
POLICY_STATUS_SECONDS = 10.0
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _lease_namespace(config: Settings) -> str:
    if config.lease_namespace:
        return config.lease_namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return "default"


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    kopf_settings, config = settings, Settings()
    kopf_settings.peering.standalone = True
    kopf_settings.posting.enabled = False  # our own Events say what happened, not kopf's logs
    kopf_settings.networking.request_timeout = 60
    # kopf serves no resource (the informers watch everything): no watch of the cluster's
    # CustomResourceDefinitions to discover resources, and no RBAC for one.
    kopf_settings.scanning.disabled = True
    namespaced = bool(memo.get("namespaced"))
    kube = KubeApi(await load_configuration())
    events = EventPoster(kube)
    pods = PodMetrics(kube, networks=parse_networks(config.scrape_networks))
    reconciler = Reconciler(
        kube=kube,
        images=ImageInspector(tag_ttl=config.tag_ttl_seconds, scan_ttl=config.scan_ttl_seconds),
        models=ModelInspector(ttl=config.model_ttl_seconds),
        signatures=ImageSignatures(
            registry_url=config.registry_url,
            auth=config.registry_auth,
            timeout=config.registry_timeout_seconds,
            unsigned_ttl=config.tag_ttl_seconds,
        ),
        pods=pods,
        emit=events,
        pending_seconds=config.pending_seconds,
        poll_seconds=config.pending_seconds,
        service_creates=config.service_creates,
    )
    election: LeaderElection | None = None
    lease_kube: KubeApi | None = None
    listed = asyncio.Event()  # set once every informer's kind is listed
    if config.leader_election:
        # The Lease's calls get connections of their own: behind a full pool of reconciles'
        # calls a renewal waited past its deadline, and the leader stood down at 2,000
        # RetailModels (kube-controller-manager gives its election a client of its own too).
        lease_kube = KubeApi(await load_configuration())
        election = LeaderElection(
            lease_kube,
            namespace=_lease_namespace(config),
            name=config.lease_name,
            identity=identity(),
            timing=Timing(
                config.lease_duration_seconds,
                config.renew_deadline_seconds,
                config.retry_period_seconds,
            ),
            # A replica that cannot list its children (a list refused or hanging) would look
            # at nothing as leader while a healthy standby waited: it takes the Lease only once
            # they are listed, judging meanwhile whether the holder has gone silent.
            eligible=listed,
        )
        kube.fence = election  # every write lands while this replica leads, or is not sent
    registry = Registry()
    scheduler = Scheduler(
        reconciler,
        registry,
        resync_seconds=config.resync_seconds,
        concurrency=config.concurrency,
        leading=election.leading if election else None,
        ready=listed,
    )
    memo.listed = listed
    memo.ready_task = asyncio.create_task(_ready_once(listed), name="retail-ready")
    memo.lag_task = asyncio.create_task(metrics.measure_loop_lag(), name="retail-loop-lag")
    # The watches get a client of their own, a connection for each watch: each holds it for
    # minutes, and it must not be one the calls wait for.
    namespaces = list(memo.get("namespaces") or [])
    scopes: list[str | None] = list(namespaces) or [None]  # None: every namespace
    stream_configuration = await load_configuration()
    stream_configuration.connection_pool_maxsize = 2 + (len(CHILD_KINDS) + 1) * len(scopes)
    streams = KubeApi(stream_configuration)
    reactions: Reactions[ChildKey, _Change] = Reactions(
        lambda change: _child_changed(memo, *change), limit=config.concurrency
    )
    react = _react(registry, reactions, listed, election)
    informers = [
        PolicyWatch(kube, streams, registry, scheduler),
        NamespaceWatch(kube, streams, registry, scheduler),
        *(RetailModelWatch(kube, streams, registry, scope, scheduler) for scope in scopes),
        *(
            ChildWatch(kube, streams, registry, api_version, kind, scope, CHILD_SELECTOR, react)
            for api_version, kind in CHILD_KINDS
            for scope in scopes
        ),
    ]
    memo.streams = streams
    memo.reactions = reactions
    memo.informers_task = asyncio.create_task(inform(informers, listed), name="retail-informers")
    memo.election = election
    memo.lease_kube = lease_kube
    memo.kube = kube
    memo.pods = pods
    memo.events = events
    memo.registry = registry
    memo.reconciler = reconciler
    memo.scheduler = scheduler
    memo.resync_seconds = config.resync_seconds
    memo.loop_task = asyncio.create_task(scheduler.run(), name="retail-scheduler")
    watch = ModelWatch(
        registry,
        reconciler.models,
        scheduler.hurry,
        interval=config.model_watch_seconds,
        leading=election.leading if election else None,
    )
    memo.watch_task = asyncio.create_task(watch.run(), name="retail-model-watch")
    # A namespaced operator sees some namespaces only: the policies' counts are not its to say.
    memo.policy_task = asyncio.create_task(
        _report_policies(registry, kube, election, enabled=not namespaced),
        name="retail-policy-status",
    )
    if election is None:
        metrics.LEADER.set(1)
        return

    def leadership_changed(leading: bool) -> None:
        metrics.LEADER.set(1 if leading else 0)
        if leading:
            scheduler.resume()
        else:
            scheduler.pause()  # writes are fenced already; stop the work that wanted them

    election.on_change = leadership_changed
    memo.election_task = asyncio.create_task(election.run(), name="retail-leader-election")


async def _ready_once(listed: asyncio.Event) -> None:
    await listed.wait()
    metrics.READY.set()  # /readyz: 200 from now on


async def _report_policies(
    registry: Registry, kube: KubeApi, election: LeaderElection | None, *, enabled: bool
) -> None:
    """Keep each RetailModelPolicy's status (which namespaces, how many RetailModels outside
    it) current, from the leader, writing only what changed."""
    written: dict[str, dict[str, Any]] = {}
    while enabled:
        await asyncio.sleep(POLICY_STATUS_SECONDS)
        if election is not None and not election.is_leader:
            written.clear()
            continue
        for name, policy in list(registry.policies.items()):
            status = {
                "appliesTo": policy.describe_scope(),
                "violations": len(registry.violating.get(name, ())),
            }
            if written.get(name) == status:
                continue
            try:
                await kube.patch_policy_status(name, status)
                written[name] = status
            except OperatorError as error:
                logger.info("RetailModelPolicy %s: status not written: %s", name, error)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.informers_task.cancel()
    await asyncio.gather(memo.informers_task, return_exceptions=True)  # before the clients close
    await memo.reactions.close()
    memo.policy_task.cancel()
    memo.ready_task.cancel()
    memo.lag_task.cancel()
    memo.watch_task.cancel()
    memo.loop_task.cancel()
    await memo.scheduler.stop()
    if memo.election is not None:
        memo.election_task.cancel()  # releases the Lease if held
        await asyncio.gather(memo.election_task, return_exceptions=True)
    await memo.events.drain()
    await memo.pods.close()
    await memo.kube.close()
    await memo.streams.close()
    if memo.lease_kube is not None:
        await memo.lease_kube.close()


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


_Change = tuple[Tracked, str, str]  # (owner, kind, name): the child is read when acted on


def _react(
    registry: Registry,
    reactions: Reactions[ChildKey, _Change],
    listed: asyncio.Event,
    election: LeaderElection | None,
) -> React:
    """What a child's change asks for, decided at once: the reconciler's look at it on the
    leader, once listed, for a child of a RetailModel known here and not on its way out."""

    def react(kind: str, deleted: bool, body: dict[str, Any]) -> None:
        if not listed.is_set():
            return  # no look before the lists are in; the first look covers this change
        if election is not None and not election.is_leader:
            return  # a standby keeps the registry warm and writes nothing
        tracked = registry.owner(body)
        if tracked is None or tracked.leaving:
            return  # not a child of a RetailModel this replica knows (or one on its way out)
        name = body["metadata"]["name"]
        reactions.submit((tracked.key[0], kind, name), (tracked, kind, name))

    return react


async def _child_changed(memo: kopf.Memo, tracked: Tracked, kind: str, name: str) -> None:
    """The reconciler's look at a child, as the registry holds it now (None: gone): the latest
    state, and no body held meanwhile by each change waiting (thousands in a rollout)."""
    registry: Registry = memo.registry
    live = registry.child(tracked.key[0], kind, name)
    try:
        await memo.reconciler.child_changed(tracked, kind, name, live)
    except NotLeader:
        return
    except OperatorError as error:
        delay = retry_after(error, memo.resync_seconds)
        logger.warning("%s/%s: %s; looking again in %.0fs", *tracked.key, error, delay)
        memo.scheduler.schedule(tracked.key, delay)


# The children's kinds, as (apiVersion, kind): listed and watched by the operator itself
# (``childwatch``), asking the API server for its label; ownership is by uid.
CHILD_KINDS = [
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
]
CHILD_SELECTOR = ",".join(f"{key}={value}" for key, value in CHILD_LABELS.items())
