"""Turns ``bench/results/*.json`` into ``bench/RESULTS.md`` and one PNG chart per benchmark.

``python -m bench.report``. Every target of issue 7 is stated with the measured ratio and a
verdict computed from the figures; ``bench/notes.md`` (written by hand after a run: why a
target is missed and what would meet it) is appended as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.common import RESULTS_DIR, ROOT, read_result  # noqa: E402

BENCH = ROOT / "bench"
PEERS = ("mlserver", "mlserver-batching", "kserve")


@dataclass(frozen=True)
class Target:
    what: str
    wanted: str
    measured: str
    met: bool | None  # None: not measured in this run


def _run(runs: list[dict[str, Any]], server: str, route: str, connections: int) -> dict[str, Any]:
    for run in runs:
        if (run["server"], run["route"], run["connections"]) == (server, route, connections):
            return run
    raise KeyError((server, route, connections))


def _succeeded_per_second(run: dict[str, Any]) -> float:
    """Requests/s counting only answers that succeeded: a failed request is no throughput."""
    return float(run["requests"] - run["failed"]) / float(run["seconds"])


def _p99(run: dict[str, Any]) -> float:
    """The p99 in ms, with a failed request counted as slower than any answer: a run with
    failures has no p99 to its credit (wrk's p99 covers the answered requests only)."""
    return float("inf") if run["failed"] else float(run["p99_ms"])


def _ms(value: float) -> str:
    return "∞ (failed requests)" if value == float("inf") else f"{value:.1f} ms"


def _peers(runs: list[dict[str, Any]], connections: int) -> list[dict[str, Any]]:
    return [_run(runs, name, "v2", connections) for name in PEERS]


# Which of our routes is compared with the peers' one route (v2 infer, an FP32 [1, 8] tensor
# of already-encoded features), and how alike the two requests are.
OUR_ROUTES = (
    ("v2", "`/v2/models/{name}/infer` with the same FP32 [1, 8] tensor body (like for like)"),
    (
        "predict",
        "`/predict` with one JSON row of raw values, validated and encoded by our server "
        "(more work per request than the peers' pre-encoded tensor)",
    ),
)

# The two tensors our v2 route is held to /predict with.
TENSORS = (
    ("v2", "valid encoded features"),
    ("v2-unknown", "every category out of vocabulary, code 0"),
)


def serving_single(result: dict[str, Any]) -> tuple[list[str], list[Target]]:
    runs = result["runs"]
    lines = [
        "### Single-row requests (server on one core, wrk on the other)",
        "",
        "The peers (MLServer, KServe) have one route, `/v2/models/{name}/infer`, sent an FP32 "
        "`[1, 8]` tensor of encoded features. Our `v2` rows send that same body to our v2 "
        "route; `v2-unknown` sends our v2 route the same row with every category out of "
        "vocabulary (the unknown code, 0); `predict` is our `/predict` with one JSON row of raw "
        "values; `v2-named` our v2 route with one named input per feature (raw values).",
        "",
        "| server | route | connections | requests/s | p50 ms | p99 ms | failed |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in sorted(runs, key=lambda r: (r["connections"], r["server"] != "retailmodel")):
        lines.append(
            f"| {run['server']} | {run['route']} | {run['connections']} | "
            f"{run['requests_per_second']:,.0f} | {run['p50_ms']:.1f} | {run['p99_ms']:.1f} | "
            f"{run['failed']} |"
        )
    sizes = result.get("retail_batch_sizes") or {}
    if sizes:
        lines += [
            "",
            f"RetailModel's micro-batcher: {sizes['model_calls']:,.0f} model calls for "
            f"{sizes['rows']:,.0f} rows over the whole run "
            f"({sizes['mean_rows_per_call']:.1f} rows per call on average).",
        ]
    targets = []
    for connections, wanted in ((16, 5.0), (64, 8.0)):
        peers = _peers(runs, connections)
        fastest = max(peers, key=_succeeded_per_second)
        quickest = min(peers, key=_p99)
        note = " (micro-batching on by default)" if connections == 64 else ""
        for route, compared in OUR_ROUTES:
            ours = _run(runs, "retailmodel", route, connections)
            ratio = _succeeded_per_second(ours) / _succeeded_per_second(fastest)
            targets += [
                Target(
                    f"single-row at {connections} connections{note}: successful requests/s, "
                    f"our {compared} vs the fastest peer ({fastest['server']})",
                    f"≥ {wanted:g}×",
                    f"{ratio:.2f}× ({_succeeded_per_second(ours):,.0f} vs "
                    f"{_succeeded_per_second(fastest):,.0f})",
                    ratio >= wanted,
                ),
                Target(
                    f"single-row at {connections} connections: p99 of our {compared} vs the "
                    f"lowest peer p99 ({quickest['server']})",
                    "no worse",
                    f"{_ms(_p99(ours))} vs {_ms(_p99(quickest))}",
                    _p99(ours) <= _p99(quickest),
                ),
            ]
        row = _run(runs, "retailmodel", "predict", connections)
        for route, values in TENSORS:
            tensor = _run(runs, "retailmodel", route, connections)
            targets.append(
                Target(
                    f"single-row at {connections} connections: our v2 FP32 tensor route "
                    f"({values}) vs our `/predict` (successful requests/s)",
                    "≥ 1×",
                    f"{_succeeded_per_second(tensor) / _succeeded_per_second(row):.2f}× "
                    f"({_succeeded_per_second(tensor):,.0f} vs "
                    f"{_succeeded_per_second(row):,.0f})",
                    _succeeded_per_second(tensor) >= _succeeded_per_second(row),
                )
            )
    chart_single(runs)
    return lines, targets


def chart_single(runs: list[dict[str, Any]]) -> None:
    labels = ["retailmodel /predict", "retailmodel v2", "mlserver", "mlserver-batching", "kserve"]
    keys = [("retailmodel", "predict")] + [("retailmodel", "v2")] + [(p, "v2") for p in PEERS]
    figure, axes = plt.subplots(figsize=(9, 4.5))
    width = 0.38
    for offset, connections in ((-width / 2, 16), (width / 2, 64)):
        values = [_run(runs, s, r, connections)["requests_per_second"] for s, r in keys]
        bars = axes.bar(
            [i + offset for i in range(len(keys))], values, width, label=f"c={connections}"
        )
        axes.bar_label(bars, fmt="{:,.0f}", fontsize=7)
    axes.set_xticks(range(len(keys)), labels, fontsize=8)
    axes.set_ylabel("single-row requests/s (one server core)")
    axes.set_title("Single-row inference: RetailModel vs MLServer and KServe (same run)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(BENCH / "serving_single.png", dpi=110)
    plt.close(figure)


def serving_batch(result: dict[str, Any]) -> tuple[list[str], list[Target]]:
    server, ceiling = result["server"], result["ceiling"]
    ratio = server["rows_per_second"] / ceiling["rows_per_second"]
    lines = [
        f"### /predict/batch with {result['rows']:,} rows",
        "",
        "| what | rows/s | notes |",
        "|---|---:|---|",
        f"| `/predict/batch` over HTTP (wrk, 2 connections) | {server['rows_per_second']:,.0f} | "
        f"p99 {server['p99_ms']:.1f} ms per request |",
        f"| `inplace_predict` in-process, {ceiling['threads']} thread | "
        f"{ceiling['rows_per_second']:,.0f} | {ceiling['us_per_call'] / 1000:.1f} ms per call |",
    ]
    figure, axes = plt.subplots(figsize=(6, 4))
    bars = axes.bar(
        ["/predict/batch (HTTP)", "inplace_predict (in-process)"],
        [server["rows_per_second"], ceiling["rows_per_second"]],
        color=["tab:blue", "tab:gray"],
    )
    axes.bar_label(bars, fmt="{:,.0f}")
    axes.set_ylabel("rows/s (one core)")
    axes.set_title(f"Batches of {result['rows']:,} rows: {ratio:.0%} of the ceiling")
    figure.tight_layout()
    figure.savefig(BENCH / "serving_batch.png", dpi=110)
    plt.close(figure)
    return lines, [
        Target(
            f"`/predict/batch` with {result['rows']:,} rows: rows/s vs in-process "
            "`inplace_predict` (same thread count)",
            "≥ 75%",
            f"{ratio:.0%}",
            ratio >= 0.75,
        )
    ]


def serving_reload(result: dict[str, Any]) -> tuple[list[str], list[Target]]:
    steady, loaded = result["steady"], result["reloading"]
    ratio = _p99(loaded) / _p99(steady)
    lines = [
        "### Hot reloads under load (`/predict`, 16 connections)",
        "",
        "| run | reloads | requests | requests/s | p50 ms | p99 ms | failed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, run, reloads in (("steady", steady, 0), ("reloading", loaded, result["reloads"])):
        lines.append(
            f"| {label} | {reloads:.0f} | {run['requests']:,} | "
            f"{run['requests_per_second']:,.0f} | {run['p50_ms']:.1f} | "
            f"{run['p99_ms']:.1f} | {run['failed']} |"
        )
    figure, axes = plt.subplots(figsize=(6, 4))
    names = ["p50", "p90", "p99"]
    for offset, label, run in ((-0.2, "steady", steady), (0.2, "20 reloads", loaded)):
        values = [run[f"{n}_ms"] for n in names]
        axes.bar([i + offset for i in range(3)], values, 0.4, label=label)
    axes.set_xticks(range(3), names)
    axes.set_ylabel("latency, ms")
    axes.set_title(f"Hot reloads under load: {loaded['failed']} failed requests")
    axes.legend()
    figure.tight_layout()
    figure.savefig(BENCH / "serving_reload.png", dpi=110)
    plt.close(figure)
    return lines, [
        Target(
            f"{result['reloads']:.0f} hot reloads under load: failed requests",
            "0",
            str(loaded["failed"]),
            loaded["failed"] == 0 and result["reloads"] >= 20,
        ),
        Target(
            "hot reloads under load: p99 vs steady p99",
            "≤ 2×",
            f"{ratio:.2f}× ({_ms(_p99(loaded))} vs {_ms(_p99(steady))})",
            ratio <= 2.0,
        ),
    ]


def operator_scale_results() -> dict[str, Any] | None:
    """Every scale's result (``operator_scale-<count>.json``, one file each, so a run at one
    scale keeps the others), merged in one; a labelled run (``operator_scale-<count>-<label>
    .json``: the code before a change, say) is shown beside them in the storm table, never
    judged. Without per-scale files, the older ``operator_scale.json`` with every scale."""
    files = sorted(RESULTS_DIR.glob("operator_scale-*.json"))
    if not files:
        return read_result("operator_scale")
    loaded = [json.loads(path.read_text()) for path in files]
    scales: list[dict[str, Any]] = []
    labelled: list[dict[str, Any]] = []
    for result in loaded:
        for scale in result["scales"]:
            scale = {**scale, "commit": result.get("commit", "?"), "label": result.get("label")}
            (labelled if scale["label"] else scales).append(scale)
    current = [r for r in loaded if not r.get("label")] or loaded
    newest = max(current, key=lambda r: r["finished_at"])
    scales.sort(key=lambda s: s["count"])
    return {
        **newest,
        "scales": scales,
        "labelled": sorted(labelled, key=lambda s: (s["count"], s["label"])),
        "commit": ", ".join(f"{s['commit']} ({s['count']:,})" for s in scales),
    }


def operator_scale(result: dict[str, Any]) -> tuple[list[str], list[Target]]:
    settings = result["settings"]
    lines = [
        "### Operator at scale (local control plane, moto as AWS, "
        f"{settings['images']} distinct images)",
        "",
        "| RetailModels | baseline: objects created s | operator: Deployments applied + status "
        "written s | ratio | baseline: all Available s | operator: all Ready s | ratio | "
        "peak RSS MB | Kubernetes calls | ECR calls | S3 calls | single apply→Deployment p95 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    targets: list[Target] = []
    for scale in result["scales"]:
        base, ours = scale["baseline"], scale["operator"]
        converge = ours["converged_seconds"] / base["created_seconds"]
        ready = ours["ready_seconds"] / base["available_seconds"]
        calls = ours["calls"]
        lines.append(
            f"| {scale['count']:,} | {base['created_seconds']:.1f} | "
            f"{ours['converged_seconds']:.1f} | {converge:.2f}× | "
            f"{base['available_seconds']:.1f} | {ours['ready_seconds']:.1f} | {ready:.2f}× | "
            f"{ours['peak_rss_mb']:.0f} | {calls['kubernetes']:,} | {calls['ecr']:,} | "
            f"{calls['s3']:,} | {ours['single_latency_p95'] * 1000:.0f} |"
        )
        targets += [
            Target(
                f"{scale['count']:,} RetailModels: converge (Deployments applied, status "
                "written) vs baseline creating the same objects",
                "≤ 2×",
                f"{converge:.2f}×",
                converge <= 2.0,
            ),
            Target(
                f"{scale['count']:,} RetailModels: all Ready vs baseline all Available",
                "≤ 2×",
                f"{ready:.2f}×",
                ready <= 2.0,
            ),
            Target(
                f"{scale['count']:,} RetailModels: operator peak RSS",
                f"≤ {_rss_ceiling(scale['count'])} MB",
                f"{_peak_rss(ours):.0f} MB",
                _peak_rss(ours) <= _rss_ceiling(scale["count"]),
            ),
            Target(
                f"{scale['count']:,} RetailModels: a single apply → Deployment created (p95, "
                f"{len(ours['single_latencies'])} applies on a loaded operator)",
                "≤ 1 s",
                f"{ours['single_latency_p95'] * 1000:.0f} ms",
                ours["single_latency_p95"] <= 1.0,
            ),
            Target(
                f"{scale['count']:,} RetailModels: ECR look-ups scale with distinct digests, "
                "not RetailModels",
                "per digest (and tag TTL), ≪ 1 per RetailModel",
                f"{calls['ecr']} ECR calls for {scale['count'] + 20:,} RetailModels and "
                f"{settings['images']} digests over "
                f"{ours['ready_seconds'] + 11:.0f} s or more",
                calls["ecr"] * 10 <= scale["count"],
            ),
        ]
        targets += _storm_targets(scale, settings["images"])
    lines += _storms(result.get("labelled", []) + result["scales"], settings["images"])
    largest = max(result["scales"], key=lambda s: s["count"])
    lines += _where_time_went(largest)
    lines += [
        "",
        f"Settings: the baseline keeps {settings['concurrency']} requests in flight; the "
        f"operator runs {settings.get('operator_concurrency', 32)} reconciles at once "
        "(`RETAIL_OPERATOR_CONCURRENCY`). Control plane: controller-manager and scheduler "
        f"client QPS {settings['control_plane_client_qps']}, burst "
        f"{settings['control_plane_client_burst']} (`tools/retail_tools/cluster/components.py`).",
    ]
    chart_operator(result)
    return lines, targets


def _rss_ceiling(count: int) -> int:
    """Issue 7's ceiling up to 1,000 RetailModels, issue 27's for 10,000."""
    return 300 if count <= 1000 else 500


def _peak_rss(ours: dict[str, Any]) -> float:
    """The higher of the two operator processes' peaks (converging, then the storm)."""
    return float(max(ours["peak_rss_mb"], ours.get("storm", {}).get("peak_rss_mb", 0.0)))


def _each_storm(scale: dict[str, Any]) -> list[dict[str, Any]]:
    """The storms of one run: one per resync since they were several, else the one."""
    ours = scale["operator"]
    return list(ours.get("storms") or ([ours["storm"]] if "storm" in ours else []))


def _storm_targets(scale: dict[str, Any], images: int) -> list[Target]:
    return [t for storm in _each_storm(scale) for t in _storm_target(scale, storm, images)]


def _late(storm: dict[str, Any]) -> str:
    """A "≥" before a storm's latencies when some new RetailModels were never reconciled within
    the benchmark's wait (their latency is then the wait, a lower bound)."""
    missed = storm.get("unreconciled", 0)
    return f"≥ ({missed} of {storm['new']} never) " if missed else ""


def _storm_target(scale: dict[str, Any], storm: dict[str, Any], images: int) -> list[Target]:
    ecr = storm["calls"]["ecr"]
    return [
        Target(
            f"{scale['count']:,} RetailModels: a new RetailModel's first reconcile (status "
            f"written, p95 of {storm['new']}) during a resync storm (resync "
            f"{storm['resync_seconds']:.0f} s, a median {storm['backlog_median']:,.0f} looks due)",
            "≤ 5 s",
            f"{_late(storm)}{storm['to_status_p95']:.2f} s (Deployment created "
            f"{storm['to_deployment_p95']:.2f} s)",
            storm["to_status_p95"] <= 5.0 and not storm.get("unreconciled"),
        ),
        Target(
            f"{scale['count']:,} RetailModels: ECR calls per distinct digest over the storm "
            f"({storm['reconciles']:,.0f} reconciles in {storm['seconds']:.0f} s)",
            "about constant, not per RetailModel",
            f"{ecr / images:.1f} per digest ({ecr} calls, {images} digests)",
            ecr * 10 <= storm["reconciles"],
        ),
    ]


def _storms(scales: list[dict[str, Any]], images: int) -> list[str]:
    storms = [(scale, storm) for scale in scales for storm in _each_storm(scale)]
    if not storms:
        return []
    lines = [
        "",
        "Resync storm: the operator restarted with a short resync (every RetailModel due at "
        "once, and again that long after each look), and new RetailModels applied one every "
        f"{storms[0][1]['spacing_seconds']:g} s while the looks were due "
        "(`bench.operator_scale`, phase 3). Rows with a label are other code, run for "
        "comparison (`--label`):",
        "",
        "| RetailModels | code | resync s | looks due (median at each apply) | reconciles/s | "
        "new RetailModels | apply → Deployment p50 / p95 s | apply → status written p50 / p95 "
        "s | operator API calls per look | peak RSS MB | ECR calls per digest |",
        "|---:|---|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for scale, storm in storms:
        code = f"{scale['label']} ({scale['commit']})" if scale.get("label") else scale["commit"]
        verbs = storm.get("kubernetes_calls")
        per_look = f"{sum(verbs.values()) / storm['reconciles']:.2f}" if verbs else "–"
        lines.append(
            f"| {scale['count']:,} | {code} | {storm['resync_seconds']:.0f} | "
            f"{storm['backlog_median']:,.0f} | {storm['reconciles_per_second']:.0f} | "
            f"{storm['new']} | "
            f"{storm['to_deployment_p50']:.2f} / {storm['to_deployment_p95']:.2f} | "
            f"{_late(storm)}{storm['to_status_p50']:.2f} / {storm['to_status_p95']:.2f} | "
            f"{per_look} | "
            f"{storm['peak_rss_mb']:.0f} | {storm['calls']['ecr'] / images:.1f} |"
        )
    return lines


def canary_rollback(result: dict[str, Any]) -> tuple[list[str], list[Target]]:
    rounds, summary = result["rounds"], result["summary"]
    lines = [
        "### Upload → rollback of a broken canary on real pods (`bench.canary_rollback`)",
        "",
        f"{len(rounds)} rounds on the real node, each uploading a candidate whose every request "
        "fails, under steady load; seconds after the upload, polled every "
        f"{result['settings']['poll_seconds']} s:",
        "",
        "| step | p50 s | p95 s | max s |",
        "|---|---:|---:|---:|",
    ]
    names = {
        "canary_created": "the canary's Deployment made (the model watch noticed)",
        "canary_ready": "the canary pod Ready",
        "rolled_back": "RolledBack for this upload",
        "canary_gone": "the canary gone",
    }
    for mark, label in names.items():
        figures = summary.get(mark)
        if figures:
            lines.append(
                f"| {label} | {figures['p50']:.1f} | {figures['p95']:.1f} | {figures['max']:.1f} |"
            )
    load = result["load"]
    lines += [
        "",
        f"Load: {load['requests']:,} requests through the Service, {load['failed']:,} failed: "
        "each candidate fails every request it is sent, by design, from its pod's start to its "
        "rollback (the load counts failures by status, not by pod).",
    ]
    p95 = summary["rolled_back"]["p95"]
    what = (
        f"upload → rollback of a broken canary on real pods (p95 of {len(rounds)} rounds; "
        f"p50 {summary['rolled_back']['p50']:.1f} s)"
    )
    return lines, [Target(what, "≤ 20 s", f"{p95:.1f} s", p95 <= 20.0)]


def big_models(result: dict[str, Any]) -> tuple[list[str], list[Target]]:
    runs = result["runs"]
    lines = [
        "### Big models on the real node (`bench.big_models`)",
        "",
        "One pod per model, served from the AWS stand-in on the node's bridge; the reload is a "
        "twin of the model (same trees, another version) uploaded under load, picked up by the "
        "pod's own poll (every 5 s).",
        "",
        "| model MB | memory limit | apply → pod Ready s | container start → Ready s | apply → "
        "RetailModel Ready s | steady RSS MB | reload s | reload peak RSS MB | peak / steady | "
        "peak / model | steady p99 ms | reload p99 ms | failed during reload |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    targets = []
    for run in runs:
        mb = run["model_bytes"] / 1e6
        start = run["start"]
        lines.append(
            f"| {mb:.1f} | {run['memory_limit']} | {start['pod_ready']:.1f} | "
            f"{start['container_start_to_ready']:.1f} | {start['retailmodel_ready']:.1f} | "
            f"{run['steady_rss_mb']:.0f} | {run['reload_seconds']:.1f} | "
            f"{run['reload_peak_rss_mb']:.0f} | {run['peak_over_steady']:.2f}× | "
            f"{run['reload_peak_rss_mb'] / mb:.1f}× | {run['steady_load']['p99_ms']:.1f} | "
            f"{run['reload_load']['p99_ms']:.1f} | {run['reload_load']['failed']} |"
        )
        if run["size"] == "100":
            targets.append(
                Target(
                    f"a {mb:.0f} MB model from the local stand-in: pod start → Ready (apply → "
                    f"pod Ready; RetailModel Ready {start['retailmodel_ready']:.1f} s)",
                    "≤ 10 s",
                    f"{start['pod_ready']:.1f} s",
                    start["pod_ready"] <= 10.0,
                )
            )
        targets.append(
            Target(
                f"a {mb:.0f} MB model: peak RSS during a hot reload under load vs steady",
                "≤ 2×",
                f"{run['peak_over_steady']:.2f}× ({run['reload_peak_rss_mb']:.0f} vs "
                f"{run['steady_rss_mb']:.0f} MB)",
                run["peak_over_steady"] <= 2.0,
            )
        )
    return lines, targets


def _where_time_went(scale: dict[str, Any]) -> list[str]:
    base, ours = scale["baseline"], scale["operator"]
    if "cpu_seconds" not in base or "cpu_by_process" not in ours:
        return []
    names = sorted(set(base["cpu_seconds"]) | set(ours["cpu_by_process"]))
    lines = [
        "",
        f"Where the CPU went at {scale['count']:,} RetailModels (CPU seconds per process "
        "during each phase; the operator phase includes the 20 single applies):",
        "",
        "| process | baseline phase | operator phase |",
        "|---|---:|---:|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {base['cpu_seconds'].get(name, 0):.1f} | "
            f"{ours['cpu_by_process'].get(name, 0):.1f} |"
        )
    totals = sum(base["cpu_seconds"].values()), sum(ours["cpu_by_process"].values())
    lines.append(f"| **total** | **{totals[0]:.1f}** | **{totals[1]:.1f}** |")
    requests = sorted(  # most first; equal counts by name, so a rerun orders them alike
        set(base["server_requests"]) | set(ours["server_requests"]),
        key=lambda k: (-(ours["server_requests"].get(k, 0)), k),
    )
    lines += [
        "",
        "API server requests during each phase (all clients: controllers, scheduler, kwok, "
        "the operator, the benchmark's own client and watches):",
        "",
        "| request | baseline phase | operator phase |",
        "|---|---:|---:|",
    ]
    for key in requests[:16]:
        lines.append(
            f"| {key} | {base['server_requests'].get(key, 0):,} | "
            f"{ours['server_requests'].get(key, 0):,} |"
        )
    return lines


def chart_operator(result: dict[str, Any]) -> None:
    scales = result["scales"]
    counts = [s["count"] for s in scales]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    series = (
        ("baseline: objects created", [s["baseline"]["created_seconds"] for s in scales], "--"),
        ("operator: applied + status", [s["operator"]["converged_seconds"] for s in scales], "-"),
        ("baseline: all Available", [s["baseline"]["available_seconds"] for s in scales], "--"),
        ("operator: all Ready", [s["operator"]["ready_seconds"] for s in scales], "-"),
    )
    for label, values, style in series:
        left.plot(counts, values, style, marker="o", label=label)
    left.set_xlabel("RetailModels")
    left.set_ylabel("seconds from first apply")
    left.set_title("Convergence vs a plain client (same cluster)")
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    right.plot(counts, [s["operator"]["peak_rss_mb"] for s in scales], marker="o")
    right.axhline(300, color="tab:red", linestyle=":", label="target 300 MB")
    right.set_xlabel("RetailModels")
    right.set_ylabel("operator peak RSS, MB")
    right.set_ylim(bottom=0)
    right.set_title("Operator memory")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(BENCH / "operator_scale.png", dpi=110)
    plt.close(figure)


def real_path(result: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """Through the Service's NodePort to two pods on the real node; no targets of its own."""
    lines = [
        "### The real path: `/predict` through the Service to 2 pods on the real node",
        "",
        "wrk keeps its connections (kube-proxy's NAT picks a pod per connection); `Load` opens "
        "one per request. CPU seconds over each run, from /proc (per process, pods by their "
        "cgroup) and /proc/stat (softirq: the Service's NAT and the bridge, charged to "
        "whoever runs).",
        "",
        "| client | connections | requests/s | p50 ms | p99 ms | failed | predictor pods | "
        "kube-proxy | kubelet | containerd | operator pods | load generator | everything "
        "else | softirq | machine busy | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        cpu = run["cpu"]["cpu_seconds"]
        shares = " | ".join(
            f"{cpu.get(k, 0.0):.1f}"
            for k in (
                "predictor pods",
                "kube-proxy",
                "kubelet",
                "containerd",
                "operator pods",
                "load generator",
                "everything else",
            )
        )
        connections = run.get("connections", f"{run.get('workers')} (new each request)")
        lines.append(
            f"| {run['client']} | {connections} | {run['requests_per_second']:,.0f} | "
            f"{run['p50_ms']:.1f} | {run['p99_ms']:.1f} | {run['failed']} | {shares} | "
            f"{run['cpu']['softirq_seconds']:.1f} | {run['cpu']['machine_busy_seconds']:.1f} | "
            f"{run['cpu']['seconds']:.0f} |"
        )
    rollout = result["rollout"]
    lines += [
        "",
        f"Rolling image update under `Load` ({rollout['workers']} threads, a connection per "
        f"request): apply → two Ready pods on the new digest in "
        f"{rollout['duration_seconds']:.1f} s; {rollout['requests']:,} requests, "
        f"{rollout['failed']} failed, p50 {rollout['p50_ms']:.1f} ms, p99 "
        f"{rollout['p99_ms']:.1f} ms.",
    ]
    return lines, [
        Target(
            "real path: a rolling image update under load, failed requests",
            "0",
            str(rollout["failed"]),
            rollout["failed"] == 0,
        )
    ]


def _rate(hits: int, runs: int) -> str:
    return f"{hits / runs:.2%} ({hits:,} of {runs:,})"


def _spread(figures: dict[str, float] | None, unit: str) -> str:
    if figures is None:
        return "—"
    return f"{figures['median']:,.0f} / {figures['p95']:,.0f}{unit}"


def _rolled_back(
    what: str, scenario: dict[str, Any], at_most: float | None = None, at_least: float = 0.0
) -> Target:
    """A target on the share of a scenario's runs rolled back, met when its whole 95 %
    interval is within the bound: ``at_most`` for candidates that should pass, else
    ``at_least``."""
    low, high = scenario["rolled_back_interval"]
    measured = _rate(scenario["rolled_back"], scenario["runs"])
    if at_most is not None:
        return Target(
            f"canary judge: {what}",
            f"≤ {at_most * 100:g} %",
            f"{measured}, 95 % interval up to {high:.2%}",
            high <= at_most,
        )
    return Target(
        f"canary judge: {what}",
        f"≥ {at_least * 100:g} %",
        f"{measured}, 95 % interval from {low:.2%}",
        low >= at_least,
    )


def canary_judge(result: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """The real judge on simulated traffic (issue 22's stated error rates)."""
    settings, scenarios = result["settings"], {s["name"]: s for s in result["scenarios"]}
    policy = settings["policy"]
    shares = ", ".join(f"{name} {share:.1%}" for name, share in settings["stable_shares"].items())
    lines = [
        "### The canary judge on simulated traffic (`bench.canary_judge`)",
        "",
        "The operator's own `judge`, called every "
        f"{settings['look_seconds']} s on both groups' totals, on simulated traffic: one "
        "canary pod beside two stable ones (each request goes to the canary with probability "
        "1/3), Poisson arrivals at the rate shown, one row per request. The stable model's "
        f"predicted classes are those of `retail_training`'s model on fresh baskets ({shares}); "
        "both groups fail 0.5 % of requests unless said otherwise; latency is log-normal like "
        "the real path's (p50 3.6 ms, p99 11 ms), counted in the predictor's buckets. Default "
        f"analysis (durationSeconds {policy['durationSeconds']}, minRequests "
        f"{policy['minRequests']}, maxErrorRate {policy['maxErrorRate']}, maxLatencyRatio "
        f"{policy['maxLatencyRatio']}, maxPredictionShift {policy['maxPredictionShift']}, "
        f"deadline {settings['deadline_seconds']} s); *watched* runs are never promoted "
        "early, so every look up to the deadline can roll them back. Seed "
        f"{settings['seed']}: a rerun gives the same figures. Rolled-back intervals are 95 % "
        "Wilson intervals; verdict times are over the runs that reached the expected verdict.",
        "",
        "| scenario | req/s | runs | promoted | rolled back (by rule) | rolled back, 95 % "
        "interval | verdict s, median / p95 | candidate requests at verdict, median / p95 |",
        "|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for s in scenarios.values():
        rules = ", ".join(f"{rule} {n}" for rule, n in s["rolled_back_by_rule"].items())
        low, high = s["rolled_back_interval"]
        lines.append(
            f"| {s['what']} | {s['rate']} | {s['runs']:,} | {s['promoted']:,} | "
            f"{s['rolled_back']:,}{f' ({rules})' if rules else ''} | {low:.2%}–{high:.2%} | "
            f"{_spread(s['verdict_seconds'], '')} | {_spread(s['verdict_canary_requests'], '')} |"
        )
    curves = [
        s for s in scenarios.values() if s["expected"] == "RollBack" or "retrained" in s["name"]
    ]
    sizes = list(curves[0]["rolled_back_by_canary_requests"])
    lines += [
        "",
        "Share of runs rolled back by the look at which the candidate had at most this many "
        "requests (looks come every 5 s, so at 300 req/s every 500 candidate requests):",
        "",
        "| scenario | req/s | " + " | ".join(f"{int(n):,}" for n in sizes) + " |",
        "|---|---:|" + "---:|" * len(sizes),
    ]
    for s in curves:
        shares_by_size = s["rolled_back_by_canary_requests"]
        lines.append(
            f"| {s['what']} | {s['rate']} | "
            + " | ".join(f"{shares_by_size[n]:.1%}" for n in sizes)
            + " |"
        )
    deadline, sample = settings["deadline_seconds"], settings["sample_size"]
    targets = [
        _rolled_back(
            "same-model (A/A) candidates rolled back by any rule, watched to the "
            f"{deadline} s deadline, {scenarios[name]['rate']} req/s",
            scenarios[name],
            at_most=0.01,
        )
        for name in ("aa-busy-watched", "aa-quiet-watched")
    ]
    targets += [
        _rolled_back(
            f"{scenarios[name]['what']} rolled back before promotion, with about {sample:,} "
            f"candidate rows at the promotion look ({scenarios[name]['rate']} req/s)",
            scenarios[name],
            at_least=0.95,
        )
        for name in ("shift-down-moderate", "shift-up-moderate")
    ]
    errors = ("errors-busy", "errors-from-zero-busy", "errors-quiet", "errors-quiet-longer")
    targets += [
        _rolled_back(
            f"{scenarios[name]['what']} rolled back before promotion "
            f"({scenarios[name]['rate']} req/s; median / p95 verdict "
            f"{_spread(scenarios[name]['verdict_seconds'], ' s')})",
            scenarios[name],
            at_least=0.95,
        )
        for name in (*errors, "errors-from-zero-quiet")
    ]
    return lines, targets


def drift_counting(result: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """What counting rows in the drift reference's bins adds to a model call."""
    lines = [
        "### Counting drift bins (`bench.drift_counting`)",
        "",
        "`InferenceEngine.predict_matrix` on one model loaded twice, with its drift reference "
        "and without (a model trained before it): the same booster and rows, so the difference "
        "is the feature-bin count alone. CPU time of the calling thread per call, median of "
        f"{result['blocks']} alternating blocks. Calls of up to {result['few_rows']} rows are "
        "counted row by row in Python, larger ones with numpy.",
        "",
        "| rows per call | without µs | with µs | added µs | added per row µs | added |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for call in result["calls"]:
        lines.append(
            f"| {call['rows']:,} | {call['without_us']:,.1f} | {call['with_us']:,.1f} | "
            f"{call['added_us']:,.1f} | {call['added_per_row_us']:,.2f} | "
            f"{call['added_us'] / call['without_us']:+.1%} |"
        )
    return lines, []


def _image_check(image: dict[str, Any] | None) -> list[str]:
    if image is None:
        return []
    return [
        "The operator's image-signature check before a rollout (the `.sig` manifest and its "
        "payload read from a crane registry on loopback, the ECDSA check): median "
        f"{image['cold']['median_ms']} ms, p95 {image['cold']['p95_ms']} ms cold; "
        f"{image['cached']['median_ms']} ms once its verdict is cached (per digest and key set); "
        f"{image['settings']['repeat']} checks each, commit {image['commit']}, "
        f"{image['finished_at'][:19]} UTC, load average {image['machine']['load_average'][0]:.1f}.",
        "",
    ]


def provenance(result: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """What signed models cost (issue 28, ``bench.provenance``); no targets of its own."""
    verify, operator, reload = result["verify"], result["operator"], result["reload"]
    lines = [
        "### Signed models: the cost of checking (`bench.provenance`)",
        "",
        "One check (`modelsig.verify`: the signature, and a sha256 over the file), timed "
        f"{result['settings']['repeat']} times per file:",
        "",
        "| model file | bytes | median ms | p95 ms |",
        "|---|---:|---:|---:|",
        *[
            f"| {label} | {figures['bytes']:,} | {figures['median_ms']} | {figures['p95_ms']} |"
            for label, figures in verify.items()
            if isinstance(figures, dict)
        ],
        "",
        f"Importing model-signing (and Sigstore's client with it), once per process at its "
        f"first check: {verify['import_ms']:.0f} ms.",
        "",
        f"The operator's check before a rollout (the signature's GET, the model's download "
        f"into memory, the check; moto's S3 on loopback), for the retail model "
        f"({operator['bytes']:,} bytes): median {operator['cold']['median_ms']} ms, p95 "
        f"{operator['cold']['p95_ms']} ms cold; {operator['cached']['median_ms']} ms once its "
        "verdict is cached (per object version and key set).",
        "",
        *_image_check(read_result("provenance_image")),
        "Hot reloads under load (`/predict`, 16 connections, 20 reloads), without and with "
        "`REQUIRE_MODEL_SIGNATURE`:",
        "",
        "| signatures | steady p99 ms | reloading p50 ms | reloading p99 ms | requests | "
        "reloads | failed | checks | mean check ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in ("without", "with"):
        run = reload[label]
        loaded = run["reloading"]
        lines.append(
            f"| {label} | {run['steady']['p99_ms']:.1f} | {loaded['p50_ms']:.1f} | "
            f"{loaded['p99_ms']:.1f} | {loaded['requests']:,} | {run['reloads']:.0f} | "
            f"{loaded['failed']} | {run.get('signature_checks', 0):.0f} | "
            f"{run.get('mean_check_ms') or '-'} |"
        )
    return lines, []


def drift_judge(result: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """The drift judge's false alarms and its power, over simulated windows."""
    lines = [
        "### The drift judge on simulated windows (`bench.drift_judge`)",
        "",
        "The operator's own drift `judge` on windows of rows drawn (with replacement) from "
        f"{result['pool']:,} fresh baskets of the training generator, predicted and binned by "
        "the model as a predictor bins them; the reference is the model's own hold-out. "
        f"maxPredictionPSI {result['max_psi']:g} and maxFeaturePSI as shown (default "
        f"{result['max_psi']:g}), minRows the smaller of the window's rows and 1,000; the "
        f"chi-squared guard at {result['alpha']:g} per window over all its tests. Seed "
        f"{result['seed']}. Alarms are FeatureDrift or PredictionDrift; intervals are 95 % "
        "Wilson intervals.",
        "",
        "| traffic | training rows (hold-out) | rows per window | maxFeaturePSI | windows | "
        "alarms | 95 % interval | named first |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    targets = []
    for run in result["runs"]:
        low, high = run["alarm_interval"]
        named = ", ".join(f"{k} {v}" for k, v in sorted(run["top_feature"].items())) or "—"
        lines.append(
            f"| {run['scenario']} | {run['training_rows']:,} ({run['reference_rows']:,}) | "
            f"{run['rows']:,} | {run['max_feature_psi']:g} | {run['windows']:,} | "
            f"{run['alarms']:,} | "
            f"{low:.2%}–{high:.2%} | {named} |"
        )
        measured = f"{_rate(run['alarms'], run['windows'])}, 95 % interval {low:.2%}–{high:.2%}"
        what = (
            f"drift judge: {run['scenario']}, {run['rows']:,} rows per window, "
            f"hold-out {run['reference_rows']:,}"
        )
        if run["scenario"] == "same distribution":
            targets.append(Target(what, "≤ 1 % false alarms", measured, high <= 0.01))
        elif run["scenario"] == "every basket XLS":
            targets.append(Target(what, "≥ 95 % found", measured, low >= 0.95))
    return lines, targets


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


CHARTED = ("serving_single", "serving_batch", "serving_reload", "operator_scale")


def main() -> None:
    sections: list[str] = []
    targets: list[Target] = []
    machines: list[str] = []
    for name, render in (
        ("serving_single", serving_single),
        ("serving_batch", serving_batch),
        ("serving_reload", serving_reload),
        ("operator_scale", operator_scale),
        ("real_path", real_path),
        ("canary_judge", canary_judge),
        ("canary_rollback", canary_rollback),
        ("big_models", big_models),
        ("drift_counting", drift_counting),
        ("drift_judge", drift_judge),
        ("provenance", provenance),
    ):
        result = operator_scale_results() if name == "operator_scale" else read_result(name)
        if result is None:
            sections += [f"### {name}", "", "Not run yet.", ""]
            continue
        lines, found = render(result)
        sections += [
            *lines,
            "",
            ("" if name not in CHARTED else f"Chart: `bench/{name}.png`. ")
            + f"Commit {result.get('commit', '?')}, finished "
            f"{result['finished_at'][:19]} UTC.",
            "",
        ]
        targets += found
        load = result["machine"]["load_average"]
        machines.append(f"{name}: load average {load[0]:.1f} at the end")
    text = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench.report`); do not edit by hand — the analysis",
        "lives in `bench/notes.md`, appended below. Every comparison is a ratio measured in",
        "the same run on the same machine (2 shared cores: servers on core 0, load generators",
        "on core 1).",
        "",
        "## Targets (issues 7, 15, 22, 27 and 29)",
        "",
        "A verdict for every measured scale and concurrency. Throughput ratios count successful",
        "requests only; a p99 is compared with the lowest peer p99, and a run with any failed",
        "request has no p99 to its credit (∞). Each serving target names which of our routes",
        "is compared with the peers' v2 tensor route. The canary and drift judges' targets are",
        "rates over seeded simulated runs (`bench.canary_judge`, `bench.drift_judge`, not run by",
        "`make bench`), met when their 95 % interval clears the target.",
        "",
        "| target | wanted | measured | verdict |",
        "|---|---|---|---|",
        *[f"| {t.what} | {t.wanted} | {t.measured} | {_verdict(t.met)} |" for t in targets],
        "",
        "## Measurements",
        "",
        *sections,
        "Machine: " + "; ".join(machines) + ".",
        "",
    ]
    notes = BENCH / "notes.md"
    if notes.exists():
        text += [notes.read_text()]
    (BENCH / "RESULTS.md").write_text("\n".join(text))
    print("\n".join(text[: 12 + len(targets)]))


if __name__ == "__main__":
    main()
