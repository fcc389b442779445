"""The real path: ``/predict`` through a Service to two predictor pods on the local cluster's
real node, and a rolling image update under load.

``python -m bench.real_path [--seconds S]``

Brings up what the end-to-end tests bring up (``retail_tools.onnode``): the registry, the AWS
stand-in on the node's bridge, both images built here and pushed, the operator in-cluster; then
a RetailModel of two replicas serving the benchmark model, exposed on a NodePort on 127.0.0.1
(kube-proxy's rules, as a client in the cluster's network would be routed). Measured:

* ``wrk`` (keep-alive, pinned to the load core) at 16 and 64 connections;
* ``retail_tools.load.Load``, a new connection per request (what a load balancer picking a pod
  per request sees), from this process;
* for each, the node's CPU split over the run: the predictor pods, the operator's pods,
  kube-proxy, kubelet, containerd (with its shims), the load generator, everything else, and
  the kernel's softirq time (where the Service's NAT and the bridge's forwarding are charged);
* a rolling image update under ``Load``: apply → Ready on the new digest, failed requests and
  p99 during it.

The cluster must be up (``retailctl cluster up``); what this starts (stand-in, registry if it
was down, the RetailModel, the operator) it removes again. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import wrk
from bench.common import BENCH_CACHE, VENV_BIN, machine, step, write_result
from bench.serving import train, write_bodies
from retail_tools.cluster.config import ClusterConfig
from retail_tools.cluster.errors import ClusterError
from retail_tools.images import registry
from retail_tools.images.build import build_release, target_named
from retail_tools.images.config import ImagesConfig
from retail_tools.images.podman import podman_env, remove_tags
from retail_tools.images.push import push_image
from retail_tools.load import Load, LoadReport
from retail_tools.onnode import OPERATOR_NAMESPACE, OnNode
from retail_tools.polling import wait_until
from retail_tools.settings import current

WORK = BENCH_CACHE / "real_path"
NAMESPACE = "retail-bench"
NAME = "prices-bench"
BUCKET = "retail-bench-models"
KEY = "models/prices/model.ubj"
REPOSITORIES = {"serving": "mlops/retail-api", "operator": "mlops/retail-operator"}
CONNECTIONS = (16, 64)
LOAD_WORKERS = 8
ROLLOUT_WORKERS = 4
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu() -> dict[int, tuple[str, str, float]]:
    """Every process's (name, cgroup lines, CPU seconds so far)."""
    found: dict[int, tuple[str, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cgroup = (entry / "cgroup").read_text()
        except OSError:  # gone meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = (name, cgroup, (int(fields[11]) + int(fields[12])) / CLOCK_TICK)
    return found


def _softirq_and_total() -> tuple[float, float]:
    """Seconds of softirq and of all non-idle time over all CPUs, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    busy = user + nice + system + irq + softirq + steal
    return softirq / CLOCK_TICK, busy / CLOCK_TICK


@contextmanager
def cpu_split(
    pods: dict[str, list[str]], into: dict[str, Any], load_generator: Callable[[], float]
) -> Iterator[None]:
    """CPU seconds by who used them while the block ran; ``pods`` maps a group name to pod
    UIDs (a process is in a pod when its cgroup path names the pod's UID)."""
    before, (softirq0, busy0), load0 = _process_cpu(), _softirq_and_total(), load_generator()
    started = time.monotonic()
    yield
    after, (softirq1, busy1), load1 = _process_cpu(), _softirq_and_total(), load_generator()
    groups: defaultdict[str, float] = defaultdict(float)
    me = os.getpid()
    for pid, (name, cgroup, seconds) in after.items():
        if pid == me:
            continue  # counted as the load generator
        used = seconds - (before[pid][2] if pid in before else 0.0)
        marks = cgroup.replace("_", "-")
        group = next((g for g, uids in pods.items() if any(uid in marks for uid in uids)), None)
        if group is None:
            group = (
                "kube-proxy"
                if name == "kube-proxy"
                else "kubelet"
                if name == "kubelet"
                else "containerd"
                if name.startswith("containerd")
                else "everything else"
            )
        groups[group] += used
    groups["load generator"] = load1 - load0
    into.update(
        {
            "seconds": time.monotonic() - started,
            "cpu_seconds": {
                k: round(v, 2) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])
            },
            "softirq_seconds": round(softirq1 - softirq0, 2),
            "machine_busy_seconds": round(busy1 - busy0, 2),
        }
    )


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _report(report: LoadReport) -> dict[str, Any]:
    succeeded = report.sent - report.failed
    return {
        "requests": report.sent,
        "failed": report.failed,
        "failures": dict(report.failures),
        "seconds": report.seconds,
        "requests_per_second": succeeded / report.seconds if report.seconds else 0.0,
        "p50_ms": report.percentile(0.5) * 1000,
        "p99_ms": report.percentile(0.99) * 1000,
    }


class RealPath:
    """The stack on the real node, brought up once for the measurements."""

    def __init__(self, workdir: Path) -> None:
        self.run = uuid.uuid4().hex[:6]
        self.tag = f"bench-{self.run}"
        self.images = ImagesConfig.from_settings(current())
        config = ClusterConfig.from_settings(current())
        self.registry_started = registry.status(self.images).pid is None
        registry.up(self.images, step)
        self.aws = OnNode.standin_for(config).start()
        self.on_node = OnNode(config, self.aws, workdir)
        self.digests: dict[str, str] = {}

    def build_and_push(self) -> None:
        ecr = self.aws.client("ecr")
        for name, repository in REPOSITORIES.items():
            ecr.create_repository(repositoryName=repository)
            step(f"building the {name} image (cached when unchanged)")
            subprocess.run(
                [str(VENV_BIN / "retailctl"), "image", "build", name, "--tag", self.tag],
                check=True,
                stdout=subprocess.DEVNULL,
                env={**os.environ, **podman_env(self.images)},
            )
            self.push(name, self.tag)

    def push(self, name: str, tag: str) -> str:
        ecr = self.aws.client("ecr")
        manifest = push_image(self.images, target_named(name), tag, ecr, lambda _line: None)
        self.aws.set_scan(REPOSITORIES[name], manifest.digest, "COMPLETE", [])
        self.digests[f"{name}:{tag}"] = manifest.digest
        return manifest.digest

    def operator_and_namespace(self) -> None:
        """The operator in-cluster from this run's image; the namespace with the stand-in."""
        self.on_node.trust_cluster()
        self.on_node.deploy_operator(self.digests[f"operator:{self.tag}"], step)
        self.on_node.predictor_namespace(NAMESPACE)

    def deploy(self, model: Path) -> int:
        self.operator_and_namespace()
        self.aws.put_model(BUCKET, KEY, model.read_bytes())
        self.apply_model(self.tag)
        self.wait_ready(self.digests[f"serving:{self.tag}"])
        return self.on_node.expose(NAMESPACE, NAME)

    def apply_model(self, tag: str) -> None:
        uri = f"s3://{BUCKET}/{KEY}"
        self.on_node.apply(self.on_node.retail_model(NAME, NAMESPACE, tag, uri, replicas=2))

    def pods(self) -> list[dict[str, Any]]:
        return [
            pod
            for pod in self.on_node.pods(NAMESPACE, NAME)
            if not pod["metadata"].get("deletionTimestamp")
        ]

    def wait_ready(self, digest: str, timeout: float = 300) -> None:
        """Until exactly two pods run ``digest``, all Ready, and no other pod is left."""

        def settled() -> bool:
            pods = self.on_node.pods(NAMESPACE, NAME)
            return len(pods) == 2 and all(
                not pod["metadata"].get("deletionTimestamp")
                and pod["status"].get("containerStatuses", [{}])[0].get("ready")
                and pod["status"]["containerStatuses"][0].get("imageID", "").endswith(digest)
                for pod in pods
            )

        wait_until(settled, timeout=timeout, what=f"two Ready pods on {digest[:19]}…")

    def pod_groups(self) -> dict[str, list[str]]:
        operators = self.on_node.kubectl.get_json("pods", "-n", OPERATOR_NAMESPACE)["items"]
        return {
            "predictor pods": [p["metadata"]["uid"] for p in self.pods()],
            "operator pods": [p["metadata"]["uid"] for p in operators],
        }

    def close(self) -> None:
        kubectl = self.on_node.kubectl
        for args in (
            ("delete", "retailmodel", NAME, "-n", NAMESPACE, "--wait=true", "--timeout=120s"),
            ("delete", "namespace", NAMESPACE, "--wait=false"),
            ("delete", "deployment", "retail-operator", "-n", OPERATOR_NAMESPACE),
        ):
            try:
                kubectl(*args)
            except ClusterError as error:
                step(f"cleaning up: kubectl {' '.join(args[:2])} failed: {error}")
        self.aws.stop()
        remove_tags(self.images, self.tag)  # this run's images and the -next release
        if self.registry_started:
            registry.down(self.images)


def keep_alive(stack: RealPath, port: int, seconds: float) -> list[dict[str, Any]]:
    body = write_bodies(train(1))["predict"]
    url = f"http://127.0.0.1:{port}/predict"
    runs = []
    for connections in CONNECTIONS:
        wrk.run(url, body, connections=connections, seconds=2)
        split: dict[str, Any] = {}
        # wrk has exited by the end of the block: its CPU comes from this process's children.
        with cpu_split(stack.pod_groups(), split, _children_cpu):
            result = wrk.run(url, body, connections=connections, seconds=seconds)
        step(
            f"wrk c={connections} through the NodePort: {result.requests_per_second:,.0f} req/s,"
            f" p99 {result.p99_ms:.1f} ms, failed {result.failed}"
        )
        runs.append({"client": "wrk", **result.as_dict(), "cpu": split})
    return runs


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def connection_per_request(stack: RealPath, port: int, seconds: float) -> dict[str, Any]:
    split: dict[str, Any] = {}
    with cpu_split(stack.pod_groups(), split, _own_cpu):
        with Load(port, workers=LOAD_WORKERS, max_seconds=seconds) as load:
            time.sleep(seconds)
    measured = _report(load.report)
    step(
        f"Load ({LOAD_WORKERS} threads, a connection per request): "
        f"{measured['requests_per_second']:,.0f} req/s, p99 {measured['p99_ms']:.1f} ms, "
        f"failed {measured['failed']}"
    )
    return {"client": "Load", "workers": LOAD_WORKERS, **measured, "cpu": split}


def rolling_update(stack: RealPath) -> dict[str, Any]:
    tag = f"{stack.tag}-next"
    build_release(stack.images, target_named("serving"), stack.tag, tag, WORK / tag)
    digest = stack.push("serving", tag)
    with Load(stack_port(stack), workers=ROLLOUT_WORKERS, max_seconds=600) as load:
        time.sleep(2)
        started = time.monotonic()
        stack.apply_model(tag)
        stack.wait_ready(digest)
        duration = time.monotonic() - started
        time.sleep(2)
    measured = _report(load.report)
    step(
        f"rolling image update: {duration:.1f} s, {measured['requests']} requests, "
        f"{measured['failed']} failed, p99 {measured['p99_ms']:.1f} ms"
    )
    return {"duration_seconds": duration, "workers": ROLLOUT_WORKERS, **measured}


def stack_port(stack: RealPath) -> int:
    service = stack.on_node.kubectl.get_json("service", f"{NAME}-local", "-n", NAMESPACE)
    return int(service["spec"]["ports"][0]["nodePort"])


def operator_running() -> bool:
    found = ClusterConfig.from_settings(current()).kubectl(
        "get", "deployment", "retail-operator", "-n", OPERATOR_NAMESPACE, "--ignore-not-found",
        "-o", "name", check=False,
    )  # fmt: skip
    return bool(found.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load run")
    args = parser.parse_args()
    status = subprocess.run([str(VENV_BIN / "retailctl"), "cluster", "status"], check=False,
                            capture_output=True)  # fmt: skip
    if status.returncode != 0:
        sys.exit("the local cluster is not up: run `retailctl cluster up` first")
    if operator_running():
        sys.exit(
            "an operator is already deployed in the cluster (a demo or a test session?): "
            "not measuring over it (the two would act on the same objects)"
        )
    model = train(1)
    WORK.mkdir(parents=True, exist_ok=True)
    stack = RealPath(WORK / "on-node")
    try:
        stack.build_and_push()
        port = stack.deploy(model)
        step(f"two predictor pods Ready behind 127.0.0.1:{port}")
        runs = keep_alive(stack, port, args.seconds)
        runs.append(connection_per_request(stack, port, args.seconds))
        rollout = rolling_update(stack)
    finally:
        stack.close()
    write_result(
        "real_path",
        {
            "settings": {"seconds": args.seconds, "model": str(model), "replicas": 2},
            "machine": machine(),
            "runs": runs,
            "rollout": rollout,
        },
    )


if __name__ == "__main__":
    main()
