"""Operator at scale: 100, 500 and 1,000 RetailModels on a real local control plane.

``python -m bench.operator_scale [--scales 100,500,1000] [--label before] [--storm-resyncs 30,5]
[--operator-concurrency 128]``

``--memory-profile`` runs only phase 2's convergence, with the operator under memray
(``--trace-python-allocators``, so each object is put down to its site rather than to a whole
arena): the live heap at its high-water mark, by the innermost frame in ``retail_operator`` or
kopf and by allocating frame, goes to ``bench/results/memory-operator-<count>[-<label>].txt``,
the capture stays in the cache. memray's own bookkeeping inflates the peak RSS it reports.

Each scale's result is written on its own (``bench/results/operator_scale-<count>.json``, with
``--label``: ``operator_scale-<count>-<label>.json``, say the code before a change, shown beside
the current one), so a later run at one scale keeps the others; ``bench.report`` merges them.

For each scale, with moto's server as AWS (five images, one model object per RetailModel), the
baseline and then the operator each on a fresh cluster of its own (own folder and ports, never
the shared test cluster), so neither works beside the other's objects:

1. Baseline: the same ConfigMaps, Deployments and Services the operator would render, applied
   directly by a plain async client (server-side apply, 32 at a time) as fast as the API
   server accepts them; timed until all are created and until every Deployment is Available.
   In both phases the API server's own histograms give its time for the Service path
   (``service_path``: each Service apply, the IPAddress create it makes, and the ClusterIP
   allocation around it, which one API server makes one at a time).
2. Operator: ``retailctl operator`` is started, N RetailModels are applied (32 at a time), and
   independent watches time when each one's Deployment appears, when its status is written
   (``observedGeneration``) and when it is Ready. Then 20 more are applied one at a time, for
   the apply → Deployment latency of a single RetailModel on a loaded operator. Peak RSS is
   the operator process's VmHWM; API and AWS calls are the operator's own counters (the
   ``calls`` probe on /healthz).
3. Resync storms: the operator is restarted with a short resync (each of ``STORM_RESYNCS``),
   which makes every RetailModel due at once and again that many seconds after its last look;
   once half of them are due (or after ``STORM_WAIT`` seconds: an operator whose looks keep
   pace never has them due at once), ``STORM_NEW`` new RetailModels are applied one every
   ``STORM_SPACING`` seconds, timed to their first reconcile (Deployment created, status
   written). 30 s was more than the control plane could serve while every look applied three
   children; once an unchanged RetailModel's look sent no apply, it kept pace, so 5 s asks
   for six times as many looks as 30 s does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_CACHE,
    RESULTS_DIR,
    ROOT,
    VENV_BIN,
    git_commit,
    machine,
    step,
    wait_http,
)
from bench.common import write_result as save
from bench.kubeclient import Kube, Recorder, follow
from bench.profile import summarise
from retail_operator.kube import object_path
from retail_operator.rendering import OWNER_LABEL, Owner, Target, render_children
from retail_operator.spec import RetailModelSpec
from retail_tools.cluster import build, cluster
from retail_tools.cluster.components import CLIENT_BURST, CLIENT_QPS
from retail_tools.cluster.config import ClusterConfig, Ports
from retail_tools.ports import free_port, free_port_base
from retail_tools.settings import current
from retail_tools.standin import ACCOUNT, REGION, AwsStandIn

WORK = BENCH_CACHE / "operator"
PROFILE = BENCH_CACHE / "profiles" / "operator.txt"
MEMORY_CAPTURE = BENCH_CACHE / "profiles" / "operator-memray.bin"
REPOSITORY = "mlops/retail-api"
BUCKET = "bench-models"
IMAGES = 5
CONCURRENCY = 32  # the baseline client's requests in flight
# Reconciles in flight (default 32): each makes about six API calls one after another, so
# keeping as many requests in flight as the baseline takes several times its concurrency.
OPERATOR_CONCURRENCY = 128
SINGLES = 20
STORM_RESYNCS: tuple[float, ...] = (30.0, 5.0)
STORM_WAIT = 60.0
# How long the new RetailModels of a storm are waited for; those not reconciled by then are
# recorded as at least that late (``unreconciled``), so a storm that starves them keeps the run.
STORM_NEW_WAIT = 300.0
STORM_NEW = 40
STORM_SPACING = 0.5
KUBE_CALLS = "retail_operator_kubernetes_calls_total"
# Distinct model objects (0: one per RetailModel). Uploading 10,000 to moto takes most of an
# hour on this machine; the operator HEADs each RetailModel's object all the same (cached 5 s).
MODEL_OBJECTS = 0


def _timeout(count: int) -> float:
    """How long a phase may take: generous, growing with the RetailModels."""
    return max(900.0, count * 0.5)


def fresh_cluster() -> ClusterConfig:
    shared = ClusterConfig.from_settings(current())
    folder = WORK / "cluster"
    config = ClusterConfig(shared.cache_dir, folder, Ports(free_port_base(6)), shared.toolchain)
    cluster.down(config)
    shutil.rmtree(folder, ignore_errors=True)
    build.build(config)
    step(f"starting a private cluster in {folder} (API server on port {config.ports.apiserver})")
    cluster.up(config, notify=lambda line: step(f"  {line}"))
    config.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "retailmodel.yaml"))
    config.kubectl("wait", "--for=condition=Established", "crd/retailmodels.mlops.retail.io")
    for namespace in ("baseline", "operator"):
        config.kubectl("create", "namespace", namespace)
        config.kubectl("wait", "--for=create", "serviceaccount/default", "-n", namespace)
    return config


def start_aws() -> AwsStandIn:
    """moto in its own process (its CPU is measured apart), with an image repository."""
    WORK.mkdir(parents=True, exist_ok=True)
    aws = AwsStandIn(own_process=True, log=WORK / "moto.log").start()
    aws.ensure_repository(REPOSITORY)
    return aws


def push_images(aws: AwsStandIn) -> dict[str, str]:
    """``IMAGES`` tags, each a distinct digest, scanned (moto: one HIGH CVE-9999-9999)."""
    digests = {}
    for index in range(IMAGES):
        tag = f"v{index}"
        digests[tag] = aws.push_image(REPOSITORY, tag)
        aws.client("ecr").start_image_scan(
            repositoryName=REPOSITORY, imageId={"imageDigest": digests[tag]}
        )
    return digests


def put_models(aws: AwsStandIn, keys: list[str]) -> None:
    """One small object per key, through one client (a client per upload took ten minutes for
    2,000 objects here)."""
    s3 = aws.client("s3")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: aws.put_model(BUCKET, key, key.encode(), s3=s3), keys))


def model_key(index: int) -> str:
    """RetailModel ``index``'s model object: its own, or one of ``MODEL_OBJECTS`` shared ones."""
    number = index % MODEL_OBJECTS if MODEL_OBJECTS else index
    return f"models/rm-{number:05d}/model.ubj"


def spec_for(index: int) -> dict[str, Any]:
    return {
        "image": {
            "repository": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}",
            "tag": f"v{index % IMAGES}",
        },
        "model": {"s3Uri": f"s3://{BUCKET}/{model_key(index)}"},
        "replicas": 1,
        "scanPolicy": {"ignoreCVEs": ["CVE-9999-9999"]},
    }


def retail_model(index: int, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.retail.io/v1alpha1",
        "kind": "RetailModel",
        "metadata": {"name": f"rm-{index:05d}", "namespace": namespace},
        "spec": spec_for(index),
    }


def baseline_objects(index: int, digests: dict[str, str]) -> list[dict[str, Any]]:
    """What the operator renders for RetailModel ``index``, without the owner reference."""
    spec = RetailModelSpec.from_body(spec_for(index))
    owner = Owner(f"rm-{index:05d}", "baseline", "00000000-0000-0000-0000-000000000000")
    target = Target(spec.image.pinned(digests[spec.image.tag]), spec.model)
    documents = render_children(spec, owner, target)
    for document in documents:
        document["metadata"].pop("ownerReferences", None)
    return documents


def _path(document: dict[str, Any]) -> str:
    meta = document["metadata"]
    return object_path(document["apiVersion"], document["kind"], meta["namespace"], meta["name"])


def _available(deployment: dict[str, Any]) -> bool:
    conditions = deployment.get("status", {}).get("conditions", [])
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


async def _bounded(jobs: list[Any]) -> None:
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(job: Any) -> None:
        async with slots:
            await job

    await asyncio.gather(*(one(job) for job in jobs))


async def run_baseline(
    config: ClusterConfig, count: int, digests: dict[str, str]
) -> dict[str, Any]:
    names = {f"rm-{i:05d}" for i in range(count)}
    async with Kube(config.kubeconfig, WORK / "client") as kube:
        listed = await kube.get("/apis/apps/v1/namespaces/baseline/deployments")
        before, timed_before = await kube.server_figures()
        start = time.monotonic()
        available = Recorder(names, start)
        watcher = asyncio.create_task(
            follow(
                kube,
                "/apis/apps/v1/namespaces/baseline/deployments",
                listed["metadata"]["resourceVersion"],
                [(available, lambda d: d["metadata"]["name"] if _available(d) else None)],
            )
        )
        documents = [doc for i in range(count) for doc in baseline_objects(i, digests)]
        await _bounded([kube.apply(_path(doc), doc) for doc in documents])
        created = time.monotonic() - start
        step(f"  baseline: {len(documents):,} objects created in {created:.1f} s")
        try:
            await asyncio.wait_for(available.done.wait(), timeout=_timeout(count))
        finally:
            watcher.cancel()
        step(f"  baseline: all {count:,} Deployments Available after {available.last:.1f} s")
        after, timed_after = await kube.server_figures()
        step(f"  baseline: the API server's Service path {_timed(timed_after, timed_before)}")
        return {
            "server_requests": _difference(after, before),
            "service_path": _timed(timed_after, timed_before),
            "objects": len(documents),
            "api_calls": kube.calls,
            "created_seconds": created,
            "available_seconds": available.last,
        }


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds each process spent between ``start`` and ``stop``: where the time went."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start = {name: _cpu_seconds(pid) for name, pid in pids.items()}

    def stop(self) -> dict[str, float]:
        return {
            name: round(_cpu_seconds(pid) - self._start[name], 2) for name, pid in self.pids.items()
        }


def _component_pids(config: ClusterConfig, aws: AwsStandIn) -> dict[str, int]:
    pids = {c.name: c.pid for c in cluster.status(config) if c.pid is not None}
    return {**pids, "moto": aws.pid}


def _difference(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    """Requests the API server served between two readings, busiest first (watches and
    reads of the benchmark's own watches are small and the same in both phases)."""
    grown = after - before
    return dict(grown.most_common())


def _timed(
    after: dict[str, tuple[float, int]], before: dict[str, tuple[float, int]]
) -> dict[str, dict[str, float]]:
    """The API server's time for each of ``TIMED`` over a phase: seconds in all, how many,
    and the mean. Allocations made one after another add up to the phase's length."""
    figures = {}
    for key, (seconds, count) in after.items():
        spent, made = seconds - before[key][0], count - before[key][1]
        figures[key] = {
            "seconds": round(spent, 1),
            "count": made,
            "mean_ms": round(1000 * spent / made, 1) if made else float("nan"),
        }
    return figures


def _status_written(body: dict[str, Any]) -> str | None:
    meta, status = body["metadata"], body.get("status") or {}
    if status.get("observedGeneration") == meta.get("generation") and status.get("conditions"):
        return str(meta["name"])
    return None


def _ready(body: dict[str, Any]) -> str | None:
    conditions = (body.get("status") or {}).get("conditions", [])
    if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
        return str(body["metadata"]["name"])
    return None


def _owner(deployment: dict[str, Any]) -> str | None:
    label = deployment["metadata"].get("labels", {}).get(OWNER_LABEL)
    return str(label) if label else None


class OperatorProcess:
    def __init__(
        self, config: ClusterConfig, aws: AwsStandIn, *, resync: float = 600, memray: bool = False
    ) -> None:
        """``resync`` 600 s: no periodic work inside the convergence measurement; ``memray``:
        run under memray's tracker, its capture written to ``MEMORY_CAPTURE``."""
        self.port, self.metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            **aws.env(),
            "KUBECONFIG": str(config.kubeconfig),
            "RETAIL_OPERATOR_RESYNC_SECONDS": str(resync),
            "RETAIL_OPERATOR_CONCURRENCY": str(OPERATOR_CONCURRENCY),
            "RETAIL_OPERATOR_LIVENESS_PORT": str(self.port),
            "RETAIL_OPERATOR_METRICS_PORT": str(self.metrics_port),
        }
        command = [str(VENV_BIN / "retailctl"), "operator"]
        if memray:
            MEMORY_CAPTURE.parent.mkdir(parents=True, exist_ok=True)
            # Python's own allocator traced too: each object to its site, not a whole arena.
            memray_run = [str(VENV_BIN / "memray"), "run", "--trace-python-allocators"]
            memray_run += ["--force", "-o", str(MEMORY_CAPTURE)]
            command = memray_run + command
        with (WORK / "operator.log").open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http(f"http://127.0.0.1:{self.port}/healthz", 60, self.process)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def profile(self, seconds: float) -> subprocess.Popen[bytes]:
        """py-spy samples the operator for ``seconds`` (raw stacks in the cache)."""
        PROFILE.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [str(VENV_BIN / "py-spy"), "record", "--pid", str(self.process.pid)]
            + ["--duration", f"{seconds:.0f}", "--rate", "100", "--nonblocking"]
            + ["--format", "raw", "--output", str(PROFILE)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def metric(self, name: str) -> float:
        """The sum of a metric's samples on the operator's /metrics (all its labels)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return sum(
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith((name + " ", name + "{"))
        )

    def samples(self, name: str) -> dict[str, float]:
        """A metric's samples on the operator's /metrics, by their labels."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith((name + " ", name + "{")):
                labels, _, value = line.rpartition(" ")
                found[labels.removeprefix(name)] = float(value)
        return found

    def calls(self) -> dict[str, int]:
        time.sleep(11)  # kopf caches probe results for 10 s
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=10) as r:
            found: dict[str, int] = json.loads(r.read())["calls"]
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def lane_waits(operator: OperatorProcess) -> dict[str, list[float]]:
    """Per scheduler lane, [waits counted, seconds waited in all] so far (the operator's
    ``retail_operator_queue_wait_seconds``); and, as lane ``seen``, how late new RetailModels
    reached the operator (``retail_operator_new_retailmodel_seen_seconds``), as ``loop_lag``
    how late the event loop woke a sleep (``retail_operator_event_loop_lag_seconds``)."""
    found: dict[str, list[float]] = {}
    for part, index in (("_count", 0), ("_sum", 1)):
        for labels, value in operator.samples("retail_operator_queue_wait_seconds" + part).items():
            found.setdefault(labels.split('"')[1], [0.0, 0.0])[index] = value
        for lane, name in (
            ("seen", "retail_operator_new_retailmodel_seen_seconds"),
            ("loop_lag", "retail_operator_event_loop_lag_seconds"),
        ):
            found.setdefault(lane, [0.0, 0.0])[index] = operator.metric(name + part)
    return found


def _waits_between(
    before: dict[str, list[float]], after: dict[str, list[float]]
) -> dict[str, dict[str, float]]:
    """What each lane waited between two ``lane_waits``: how many waits, their mean."""
    result = {}
    for lane, (count, seconds) in after.items():
        counted, waited = before.get(lane, [0.0, 0.0])
        if count > counted:
            result[lane] = {
                "waits": count - counted,
                "mean_seconds": (seconds - waited) / (count - counted),
            }
    return result


async def run_operator(
    config: ClusterConfig, count: int, operator: OperatorProcess
) -> dict[str, Any]:
    names = {f"rm-{i:05d}" for i in range(count)}
    singles = [count + i for i in range(SINGLES)]
    everyone = names | {f"rm-{i:05d}" for i in singles}
    async with Kube(config.kubeconfig, WORK / "client") as kube:
        rms = "/apis/mlops.retail.io/v1alpha1/namespaces/operator/retailmodels"
        deployments = "/apis/apps/v1/namespaces/operator/deployments"
        rm_version = (await kube.get(rms))["metadata"]["resourceVersion"]
        deploy_version = (await kube.get(deployments))["metadata"]["resourceVersion"]
        before, timed_before = await kube.server_figures()
        start = time.monotonic()
        created = Recorder(everyone, start)
        written = Recorder(names, start)
        ready = Recorder(names, start)
        watchers = [
            asyncio.create_task(
                follow(kube, rms, rm_version, [(written, _status_written), (ready, _ready)])
            ),
            asyncio.create_task(follow(kube, deployments, deploy_version, [(created, _owner)])),
        ]
        applied: dict[str, float] = {}

        async def apply(index: int) -> None:
            document = retail_model(index, "operator")
            applied[document["metadata"]["name"]] = time.monotonic() - start
            await kube.apply(_path(document), document)

        try:
            await _bounded([apply(i) for i in range(count)])
            applied_all = time.monotonic() - start
            step(f"  operator: {count:,} RetailModels applied in {applied_all:.1f} s")
            await asyncio.wait_for(written.done.wait(), timeout=_timeout(count))
            converged = max(written.last, max(created.times[n] for n in names))
            step(f"  operator: Deployments applied and status written after {converged:.1f} s")
            await asyncio.wait_for(ready.done.wait(), timeout=_timeout(count))
            step(f"  operator: all Ready after {ready.last:.1f} s")
            after, timed_after = await kube.server_figures()
            server_requests = _difference(after, before)
            service_path = _timed(timed_after, timed_before)
            step(f"  operator: the API server's Service path {service_path}")
            waits_before = await asyncio.to_thread(lane_waits, operator)
            single_latencies = []
            for index in singles:
                name = f"rm-{index:05d}"
                await apply(index)
                deadline = time.monotonic() + 30
                while name not in created.times and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                if name in created.times:
                    single_latencies.append(created.times[name] - applied[name])
            # while the singles went: how long the changes (the singles) and the rest waited
            waits = _waits_between(waits_before, await asyncio.to_thread(lane_waits, operator))
            converging_waits = _waits_between({}, waits_before)
        finally:
            for watcher in watchers:
                watcher.cancel()
    burst = sorted(created.times[n] - applied[n] for n in names if n in created.times)
    return {
        "server_requests": server_requests,
        "service_path": service_path,
        "applied_seconds": applied_all,
        "converged_seconds": converged,
        "ready_seconds": ready.last,
        "burst_latency_p50": statistics.median(burst),
        "burst_latency_p95": burst[int(0.95 * (len(burst) - 1))],
        "single_latencies": single_latencies,
        "single_latency_p95": sorted(single_latencies)[int(0.95 * (len(single_latencies) - 1))]
        if single_latencies
        else float("nan"),
        "single_timeouts": SINGLES - len(single_latencies),
        "queue_waits_converging": converging_waits,
        "queue_waits_singles": waits,
    }


def _ours(file: str) -> bool:
    return "retail_operator" in file or "/kopf/" in file


def memory_summary(capture: Path, top: int = 25) -> str:
    """The live heap at the operator's high-water mark, by allocation site: the innermost
    frame in the project (``retail_operator``) or in kopf, and the innermost frame of all."""
    from memray import FileReader  # a dev tool, only for --memory-profile

    reader = FileReader(str(capture))
    by_project: Counter[str] = Counter()
    by_site: Counter[str] = Counter()
    total = 0
    for record in reader.get_high_watermark_allocation_records(merge_threads=True):
        stack = record.stack_trace(max_stacks=64)
        total += record.size
        if stack:
            function, file, line = stack[0]
            by_site[f"{function} {Path(file).name}:{line}"] += record.size
        own = next((frame for frame in stack if _ours(frame[1])), None)
        if own is not None:
            package = "kopf" if "/kopf/" in own[1] else "retail_operator"
            by_project[f"{own[0]} {package}/{Path(own[1]).name}:{own[2]}"] += record.size
        else:
            outer = stack[-1] if stack else ("?", "?", 0)
            by_project[f"(outside retail_operator) {Path(outer[1]).parent.name}"] += record.size
    lines = [f"live heap at the high-water mark: {total / 2**20:.1f} MiB", ""]
    for title, counter in (
        ("innermost retail_operator frame", by_project),
        ("allocating frame", by_site),
    ):
        lines.append(f"by {title}:")
        lines += [f"  {size / 2**20:8.1f} MiB  {name}" for name, size in counter.most_common(top)]
        lines.append("")
    reader.close()
    return "\n".join(lines)


async def _watch_cache_ready(config: ClusterConfig) -> None:
    """Until the API server serves RetailModels from its watch cache (a 429 "storage is
    (re)initializing" at first; the baseline phase otherwise gives it that time)."""
    async with Kube(config.kubeconfig, WORK / "client") as kube:
        for _ in range(120):
            try:
                await kube.get("/apis/mlops.retail.io/v1alpha1/namespaces/operator/retailmodels")
                return
            except RuntimeError:
                await asyncio.sleep(1)


def memory_profile(count: int, label: str) -> None:
    """The operator phase only, under memray; the summary to ``bench/results``."""
    step(f"scale {count:,} under memray: fresh cluster and AWS stand-in")
    config = fresh_cluster()
    aws = start_aws()
    operator: OperatorProcess | None = None
    try:
        push_images(aws)
        put_models(aws, sorted({model_key(i) for i in range(count + SINGLES)}))
        asyncio.run(_watch_cache_ready(config))
        operator = OperatorProcess(config, aws, memray=True)
        measured = asyncio.run(run_operator(config, count, operator))
        peak = operator.peak_rss_mb()
        step(
            f"  operator under memray: peak RSS {peak:.0f} MB, "
            f"Ready {measured['ready_seconds']:.0f} s"
        )
    finally:
        if operator is not None:
            operator.stop()
        aws.stop()
        cluster.down(config)
    header = (
        f"memray of the operator at commit {git_commit()}, {count:,} RetailModels "
        f"(+{SINGLES} singles), {MODEL_OBJECTS or count} model objects; "
        f"peak RSS under memray {peak:.0f} MB\n"
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    name = f"memory-operator-{count}" + (f"-{label}" if label else "")
    (RESULTS_DIR / f"{name}.txt").write_text(header + memory_summary(MEMORY_CAPTURE))


def _p(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    return ordered[int(quantile * (len(ordered) - 1))] if ordered else float("nan")


async def run_storm(
    config: ClusterConfig, count: int, operator: OperatorProcess, resync: float, first: int
) -> dict[str, Any]:
    """New RetailModels (from index ``first``) applied while the ``count`` are due for a look
    (see above)."""
    new = {f"rm-{i:05d}" for i in range(first, first + STORM_NEW)}
    rms = "/apis/mlops.retail.io/v1alpha1/namespaces/operator/retailmodels"
    deployments = "/apis/apps/v1/namespaces/operator/deployments"
    backlog = "retail_operator_due_backlog"
    reconciles = "retail_operator_reconciles_total"
    async with Kube(config.kubeconfig, WORK / "client") as kube:
        deadline, peak = time.monotonic() + STORM_WAIT, 0.0
        while (due := await asyncio.to_thread(operator.metric, backlog)) < count / 2:
            peak = max(peak, due)
            if time.monotonic() > deadline:
                step(f"  storm: at most {peak:.0f} looks due at once; new RetailModels now")
                break
            await asyncio.sleep(1)
        rm_version = (await kube.get(rms))["metadata"]["resourceVersion"]
        deploy_version = (await kube.get(deployments))["metadata"]["resourceVersion"]
        start = time.monotonic()
        looks_before = await asyncio.to_thread(operator.metric, reconciles)
        verbs_before = await asyncio.to_thread(operator.samples, KUBE_CALLS)
        waits_before = await asyncio.to_thread(lane_waits, operator)
        created, written = Recorder(new, start), Recorder(new, start)
        watchers = [
            asyncio.create_task(follow(kube, rms, rm_version, [(written, _status_written)])),
            asyncio.create_task(follow(kube, deployments, deploy_version, [(created, _owner)])),
        ]
        applied: dict[str, float] = {}
        backlogs: list[float] = []
        try:
            for index in range(first, first + STORM_NEW):
                document = retail_model(index, "operator")
                applied[document["metadata"]["name"]] = time.monotonic() - start
                await kube.apply(_path(document), document)
                backlogs.append(await asyncio.to_thread(operator.metric, backlog))
                await asyncio.sleep(STORM_SPACING)
            try:
                await asyncio.wait_for(written.done.wait(), timeout=STORM_NEW_WAIT)
            except TimeoutError:
                step(
                    f"  storm: {len(new) - len(written.times)} of {len(new)} new RetailModels "
                    f"not reconciled within {STORM_NEW_WAIT:.0f} s; recorded as at least that"
                )
            seconds = time.monotonic() - start
            looks = await asyncio.to_thread(operator.metric, reconciles) - looks_before
            verbs = await asyncio.to_thread(operator.samples, KUBE_CALLS)
            waits = _waits_between(waits_before, await asyncio.to_thread(lane_waits, operator))
            backlogs.append(await asyncio.to_thread(operator.metric, backlog))
        finally:
            for watcher in watchers:
                watcher.cancel()
    # One not reconciled by the end counts as late as the wait let it be (a lower bound).
    to_deployment = [created.times.get(n, seconds) - applied[n] for n in new]
    to_status = [written.times.get(n, seconds) - applied[n] for n in new]
    result = {
        "resync_seconds": resync,
        "new": STORM_NEW,
        "unreconciled": len(new) - len(written.times),
        "spacing_seconds": STORM_SPACING,
        "seconds": seconds,
        "reconciles": looks,
        "reconciles_per_second": looks / seconds,
        "backlog_min": min(backlogs),
        "backlog_median": statistics.median(backlogs),
        "to_deployment_p50": _p(to_deployment, 0.5),
        "to_deployment_p95": _p(to_deployment, 0.95),
        "to_status_p50": _p(to_status, 0.5),
        "to_status_p95": _p(to_status, 0.95),
        "queue_waits": waits,
        # the operator's API calls over the storm's measurement, by verb
        "kubernetes_calls": {
            label.split('"')[1]: value - verbs_before.get(label, 0.0)
            for label, value in verbs.items()
        },
    }
    step(
        f"  storm: {looks:.0f} reconciles in {seconds:.0f} s ({result['reconciles_per_second']:.0f}"
        f"/s), backlog {min(backlogs):.0f}-{max(backlogs):.0f}; a new RetailModel's first "
        f"reconcile p50 {result['to_status_p50']:.2f} s, p95 {result['to_status_p95']:.2f} s"
    )
    return result


def one_scale(count: int, profile_seconds: float = 0) -> dict[str, Any]:
    step(f"scale {count:,}: fresh cluster and AWS stand-in")
    config = fresh_cluster()
    aws = start_aws()
    operator: OperatorProcess | None = None
    try:
        digests = push_images(aws)
        last = count + SINGLES + STORM_NEW * len(STORM_RESYNCS)
        put_models(aws, sorted({model_key(i) for i in range(last)}))
        meter = CpuMeter(_component_pids(config, aws))
        baseline = asyncio.run(run_baseline(config, count, digests))
        baseline["cpu_seconds"] = meter.stop()
        # The operator on a cluster as empty as the baseline's: with the baseline's 10,000
        # Services kept, every further Service create timed out (the API server's ClusterIP
        # allocation, a lone kubectl create included), and nothing converged.
        step(f"scale {count:,}: a fresh cluster for the operator")
        config = fresh_cluster()
        operator = OperatorProcess(config, aws)
        meter = CpuMeter({**_component_pids(config, aws), "operator": operator.process.pid})
        profiler = operator.profile(profile_seconds) if profile_seconds else None
        measured = asyncio.run(run_operator(config, count, operator))
        measured["cpu_by_process"] = meter.stop()
        if profiler is not None:
            profiler.wait()
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            header = f"py-spy of the operator at commit {git_commit()}, {count:,} RetailModels\n"
            (RESULTS_DIR / "profile-operator.txt").write_text(header + summarise(PROFILE) + "\n")
        measured["calls"] = operator.calls()
        measured["cpu_seconds"] = operator.cpu_seconds()
        measured["peak_rss_mb"] = operator.peak_rss_mb()
        step(
            f"  operator: peak RSS {measured['peak_rss_mb']:.0f} MB, "
            f"CPU {measured['cpu_seconds']:.0f} s, calls {measured['calls']}, "
            f"single apply→Deployment p95 {measured['single_latency_p95'] * 1000:.0f} ms; "
            f"waits for a slot meanwhile {measured['queue_waits_singles']}"
        )
        measured["storms"] = []
        for number, resync in enumerate(STORM_RESYNCS):
            operator.stop()
            step(f"  storm: operator restarted with a {resync:.0f} s resync")
            operator = OperatorProcess(config, aws, resync=resync)
            first = count + SINGLES + number * STORM_NEW
            storm = asyncio.run(run_storm(config, count, operator, resync, first))
            storm["calls"] = operator.calls()
            storm["peak_rss_mb"] = operator.peak_rss_mb()
            measured["storms"].append(storm)
        if measured["storms"]:  # none asked for (``--storm-resyncs ""``): none recorded
            measured["storm"] = measured["storms"][0]
    finally:
        if operator is not None:
            operator.stop()
        aws.stop()
        cluster.down(config)
    return {"count": count, "images": IMAGES, "baseline": baseline, "operator": measured}


def main() -> None:
    global MODEL_OBJECTS, OPERATOR_CONCURRENCY, STORM_RESYNCS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="100,500,1000")
    parser.add_argument(
        "--profile", type=float, default=0, help="py-spy the operator for this many seconds"
    )
    parser.add_argument(
        "--model-objects", type=int, default=0, help="distinct model objects (0: one each)"
    )
    parser.add_argument(
        "--label", default="", help="save as operator_scale-<count>-<label> (e.g. before)"
    )
    parser.add_argument(
        "--memory-profile",
        action="store_true",
        help="only the operator phase, under memray: the live heap at its peak by allocation "
        "site to bench/results/memory-operator-<count>[-<label>].txt (the capture in the cache)",
    )
    parser.add_argument(
        "--storm-resyncs",
        default=",".join(f"{r:g}" for r in STORM_RESYNCS),
        help="the resyncs (seconds) of the storms, comma-separated (one storm takes minutes "
        "at 10,000)",
    )
    parser.add_argument(
        "--operator-concurrency",
        type=int,
        default=OPERATOR_CONCURRENCY,
        help=f"the operator's reconciles at once (default {OPERATOR_CONCURRENCY})",
    )
    args = parser.parse_args()
    MODEL_OBJECTS = args.model_objects
    OPERATOR_CONCURRENCY = args.operator_concurrency
    STORM_RESYNCS = tuple(float(r) for r in args.storm_resyncs.split(",") if r)
    if args.memory_profile:
        for count in args.scales.split(","):
            memory_profile(int(count), args.label)
        return
    for count in args.scales.split(","):  # each written when done: the largest takes long
        name = f"operator_scale-{int(count)}" + (f"-{args.label}" if args.label else "")
        scale = one_scale(int(count), args.profile)
        save(
            name,
            {
                "label": args.label,
                "settings": {
                    "concurrency": CONCURRENCY,
                    "operator_concurrency": OPERATOR_CONCURRENCY,
                    "images": IMAGES,
                    "storm_resync_seconds": list(STORM_RESYNCS),
                    "storm_new": STORM_NEW,
                    "model_objects": MODEL_OBJECTS,
                    "control_plane_client_qps": CLIENT_QPS,
                    "control_plane_client_burst": CLIENT_BURST,
                },
                "machine": machine(),
                "scales": [scale],
            },
        )


if __name__ == "__main__":
    main()
