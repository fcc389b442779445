"""Big models on the real node: pod start → Ready, and a hot reload under load, for the
benchmark's 3.5 MB model and ~100 MB and ~250 MB ones (``bench.reload_memory``'s: the
training's features, more and deeper trees).

``python -m bench.big_models [--sizes 3.5,100,250]`` (the local cluster up; run it under the
real node's lock: ``flock /tmp/realnode.lock``).

Brings up what ``bench.real_path`` brings up (registry, the AWS stand-in on the node's bridge,
both images built from this tree, the operator in-cluster). For each size, a RetailModel of one
pod serving that model from the stand-in, with a memory limit that admits it (the predictor's
size rule, docs/serving.md); timed by polling every ``POLL`` seconds: apply → pod created →
container started → pod Ready → RetailModel Ready. Then ``LOAD_SECONDS`` of steady load
through the NodePort (p99), and a hot reload under the same load: a twin of the model (same
trees, another version) is uploaded and the pod picks it up on its own poll
(``reloadIntervalSeconds`` 5); timed upload → first answer from the new version, with the p99
and failed requests over the reload's window, and the server process's peak RSS (its kernel
high water mark, reset before the upload, and a 5 ms sampler of it and its helper) against its
steady RSS and the model's size. The server is found on this host by the pod's cgroup.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_CACHE, machine, step, write_result
from bench.real_path import NAMESPACE, RealPath, operator_running
from bench.reload_memory import MB, Sampler, big_model, rss_mb, steady_mb, twin
from bench.serving import train
from retail_tools.load import Load, LoadReport
from retail_tools.polling import wait_until

WORK = BENCH_CACHE / "big_models"
BUCKET = "retail-bench-models"
POLL = 0.2
LOAD_SECONDS = 10.0
LOAD_WORKERS = 4
# A memory limit per size that the predictor's rule admits: (limit - 192 MiB) / 5 >= the file.
MEMORY = {"3.5": "512Mi", "100": "1Gi", "250": "2Gi"}


def _version(path: Path) -> str:
    import xgboost

    from retail_serving import artifact

    return str(xgboost.Booster(model_file=str(path)).attr(artifact.ATTR_VERSION))


def _pod_processes(uid: str) -> dict[int, int]:
    """pid → parent pid of every process in the pod whose UID is ``uid`` (by its cgroup)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroup = (entry / "cgroup").read_text().replace("_", "-")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if uid in cgroup and name != "pause":
            found[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return found


def server_pid(uid: str) -> int:
    """The predictor's server: the pod's process whose parent is outside the pod."""
    processes = _pod_processes(uid)
    roots = [pid for pid, parent in processes.items() if parent not in processes]
    if len(roots) != 1:
        raise RuntimeError(f"pod {uid}: expected one server process, found {roots}")
    return roots[0]


def _window(report: LoadReport) -> dict[str, Any]:
    return {
        "requests": report.sent,
        "failed": report.failed,
        "p50_ms": report.percentile(0.5) * 1000,
        "p99_ms": report.percentile(0.99) * 1000,
    }


def start_to_ready(stack: RealPath, name: str, manifest: dict[str, Any]) -> dict[str, float]:
    """Seconds from the apply to each step of the pod's start, polled every ``POLL``."""
    applied = time.monotonic()
    stack.on_node.apply(manifest)
    marks: dict[str, float] = {}
    while "retailmodel_ready" not in marks:
        now = time.monotonic() - applied
        pods = stack.on_node.pods(NAMESPACE, name)
        if pods:
            marks.setdefault("pod_created", now)
            statuses = pods[0]["status"].get("containerStatuses") or [{}]
            if "running" in statuses[0].get("state", {}):
                marks.setdefault("container_started", now)
            if statuses[0].get("ready"):
                marks.setdefault("pod_ready", now)
        if stack.on_node.condition(NAMESPACE, name, "Ready").get("status") == "True":
            marks.setdefault("retailmodel_ready", now)
        if now > 600:
            raise TimeoutError(f"{name} not Ready after 600 s: {marks}")
        time.sleep(POLL)
    marks["container_start_to_ready"] = marks["pod_ready"] - marks["container_started"]
    return marks


def measure(stack: RealPath, size: str) -> dict[str, Any]:
    model = train(1) if size == "3.5" else big_model(float(size))
    second, new_version = twin(model), _version(twin(model))
    name = f"big-{size.replace('.', '-')}"
    key = f"models/big/{name}.ubj"
    stack.aws.put_model(BUCKET, key, model.read_bytes())
    limits = {"memory": MEMORY[size]}
    manifest = stack.on_node.retail_model(
        name, NAMESPACE, stack.tag, f"s3://{BUCKET}/{key}", replicas=1,
        resources={"requests": {"memory": "256Mi"}, "limits": limits},
    )  # fmt: skip
    try:
        start = start_to_ready(stack, name, manifest)
        step(
            f"{size} MB: apply → pod Ready {start['pod_ready']:.1f} s (container start → Ready "
            f"{start['container_start_to_ready']:.1f} s), RetailModel Ready "
            f"{start['retailmodel_ready']:.1f} s"
        )
        port = stack.on_node.expose(NAMESPACE, name)
        pid = server_pid(stack.on_node.pods(NAMESPACE, name)[0]["metadata"]["uid"])
        with Load(port, workers=LOAD_WORKERS, max_seconds=LOAD_SECONDS + 5) as load:
            time.sleep(LOAD_SECONDS)
        steady_load = _window(load.report)
        steady = steady_mb(pid)
        with Load(port, workers=LOAD_WORKERS, max_seconds=600) as load:
            time.sleep(1)
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM from now on
            sampler = Sampler(pid)
            sampler.start()
            uploaded = time.monotonic()
            stack.aws.put_model(BUCKET, key, second.read_bytes())
            wait_until(
                lambda: load.report.models.get(new_version, 0) > 0,
                timeout=300,
                interval=0.05,
                what=f"{name} answering with {new_version}",
            )
            reload_seconds = time.monotonic() - uploaded
            time.sleep(3)
        peaks = sampler.stop()
        peak = max(rss_mb(pid, "VmHWM"), peaks["server"])
        reload_load = _window(load.report)
        step(
            f"{size} MB reload under load: {reload_seconds:.1f} s, peak RSS {peak:.0f} MB "
            f"({peak / steady:.2f}x steady {steady:.0f} MB), p99 {reload_load['p99_ms']:.1f} ms "
            f"(steady {steady_load['p99_ms']:.1f} ms), failed {reload_load['failed']}"
        )
    finally:
        stack.on_node.remove(NAMESPACE, name, wait=True)
    return {
        "size": size,
        "model_bytes": model.stat().st_size,
        "memory_limit": MEMORY[size],
        "start": start,
        "steady_rss_mb": steady,
        "steady_load": steady_load,
        "reload_seconds": reload_seconds,
        "reload_peak_rss_mb": peak,
        "reload_helper_peak_mb": peaks["helper"],
        "reload_server_and_helper_peak_mb": peaks["sum"],
        "peak_over_steady": peak / steady,
        "reload_load": reload_load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3.5,100,250", help="model sizes in MB")
    args = parser.parse_args()
    if operator_running():
        raise SystemExit("an operator is already deployed in the cluster: not measuring over it")
    sizes = args.sizes.split(",")
    for size in sizes:  # trained before the stack is up (the 250 MB one takes minutes)
        if size != "3.5":
            twin(big_model(float(size)))
    WORK.mkdir(parents=True, exist_ok=True)
    stack = RealPath(WORK / "on-node")
    runs = []
    try:
        stack.build_and_push()
        stack.operator_and_namespace()
        runs = [measure(stack, size) for size in sizes]
    finally:
        stack.close()
    write_result(
        "big_models",
        {
            "settings": {"poll_seconds": POLL, "load_workers": LOAD_WORKERS, "memory": MEMORY},
            "machine": machine(),
            "runs": runs,
            "model_mb": {run["size"]: run["model_bytes"] / MB for run in runs},
        },
    )


if __name__ == "__main__":
    main()
