"""Serving benchmark: RetailModel's predictor against MLServer and KServe, side by side.

``python -m bench.serving [--seconds S] [--rounds R] [--only single,batch,reload]``

* single: every server on the server core, wrk on the load core, single-row requests at 16
  and 64 connections; the same Open Inference Protocol body (an FP32 ``[1, 8]`` tensor, what
  MLServer's and KServe's XGBoost runtimes take) for all, plus RetailModel's own ``/predict``,
  the tensor with every category out of vocabulary, and v2 named inputs. All servers run at
  once (idle ones cost nothing) and are measured in turn, ``rounds`` times; each figure is the
  best round (noise on a shared machine only ever slows a run down).
* batch: ``/predict/batch`` with 1,000 rows against ``inplace_predict`` called directly on the
  same core with the same thread count.
* reload: 20 hot reloads (a new model file every ``seconds / 22``) under 16 connections of
  ``/predict``, against a steady run of the same length.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import wrk
from bench.common import (
    BENCH_CACHE,
    SERVER_CPU,
    VENV_BIN,
    machine,
    pinned,
    post_json,
    step,
    write_result,
)
from bench.servers import Server, kserve, mlserver, retailmodel

WORK = BENCH_CACHE / "serving"
TRAIN_ROWS = 50_000
BATCH_ROWS = 1_000
RELOADS = 20
CONNECTIONS = (16, 64)


def train(seed: int) -> Path:
    path = WORK / "models" / f"model-{TRAIN_ROWS}-{seed}.ubj"
    if not path.exists():
        step(f"training the benchmark model (seed {seed}, {TRAIN_ROWS:,} rows)")
        subprocess.run(
            [str(VENV_BIN / "retailctl"), "train", "--out", str(path)]
            + ["--rows", str(TRAIN_ROWS), "--seed", str(seed)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return path


def peer_copy(model_path: Path) -> Path:
    """The same trees without the feature names and types stored in the booster.

    Our model file names its features; XGBoost then refuses unnamed input (a numpy array),
    which is what MLServer's and KServe's XGBoost runtimes build from a v2 tensor. The copy
    predicts exactly the same (``check_same_answers`` proves it on every run).
    """
    import xgboost

    copy = model_path.with_name(model_path.stem + "-unnamed.ubj")
    if not copy.exists():
        booster = xgboost.Booster(model_file=str(model_path))
        booster.feature_names = None
        booster.feature_types = None
        booster.save_model(str(copy))
    return copy


def write_bodies(model_path: Path) -> dict[str, Path]:
    """The request bodies: one row four ways (a v2 tensor twice), and a 1,000-row batch."""
    from retail_serving import artifact
    from retail_serving.encoding import UNKNOWN_CODE
    from retail_serving.payloads import EXAMPLE
    from retail_training.dataset import generate

    model = artifact.read(model_path)
    encoded = model.encoder.encode_row(EXAMPLE)
    unknown = [
        float(UNKNOWN_CODE) if feature.is_categorical else value
        for feature, value in zip(model.schema.features, encoded, strict=True)
    ]
    bodies = {
        "predict": dict(EXAMPLE),
        "v2_tensor": {
            "inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP32", "data": encoded}]
        },
        # The same row with every category out of vocabulary: the unknown code, 0.
        "v2_unknown": {
            "inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP32", "data": unknown}]
        },
        "v2_named": {
            "inputs": [
                {
                    "name": name,
                    "shape": [1],
                    "datatype": "BYTES" if isinstance(value, str) else "FP64",
                    "data": [value],
                }
                for name, value in EXAMPLE.items()
            ]
        },
        "batch": list(generate(BATCH_ROWS, seed=99).rows()),
    }
    folder = WORK / "bodies"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, body in bodies.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(body))
    return paths


def _probabilities(answer: dict[str, Any]) -> list[float]:
    output = answer["outputs"][0]
    return [round(float(value), 4) for value in output["data"]][:3]


def check_same_answers(servers: list[Server], body: Path) -> dict[str, list[float]]:
    """Every server must answer the request with the same class probabilities."""
    answers = {s.name: _probabilities(post_json(s.infer_url, body.read_bytes())) for s in servers}
    reference = answers["retailmodel"]
    for name, probabilities in answers.items():
        if any(abs(a - b) > 1e-3 for a, b in zip(probabilities, reference, strict=True)):
            raise RuntimeError(f"{name} answers {probabilities}, retailmodel {reference}")
    return answers


def single_row(model: Path, bodies: dict[str, Path], seconds: float, rounds: int) -> dict[str, Any]:
    peer_model = peer_copy(model)
    servers = [
        retailmodel(model),
        mlserver(peer_model, batching=False),
        mlserver(peer_model, batching=True),
        kserve(peer_model),
    ]
    log_dir = WORK / "logs"
    try:
        for server in servers:
            server.start(log_dir)
        for server in servers:
            server.wait_ready()
            step(f"{server.name} ready on port {server.port}")
        answers = check_same_answers(servers, bodies["v2_tensor"])
        step(f"all servers agree on the probabilities: {answers['retailmodel']}")
        ours = servers[0]
        targets = [(s.name, "v2", s.infer_url, bodies["v2_tensor"]) for s in servers]
        targets += [
            ("retailmodel", "predict", f"{ours.base}/predict", bodies["predict"]),
            ("retailmodel", "v2-unknown", ours.infer_url, bodies["v2_unknown"]),
            ("retailmodel", "v2-named", ours.infer_url, bodies["v2_named"]),
        ]
        best: dict[str, dict[str, Any]] = {}
        for connections in CONNECTIONS:
            for _name, _route, url, body in targets:  # warm every server at this concurrency
                wrk.run(url, body, connections=connections, seconds=min(2.0, seconds))
            for round_number in range(1, rounds + 1):
                for name, route, url, body in targets:
                    result = wrk.run(url, body, connections=connections, seconds=seconds)
                    key = f"{name}|{route}|{connections}"
                    step(
                        f"round {round_number} c={connections} {name} {route}: "
                        f"{result.requests_per_second:,.0f} req/s, p99 {result.p99_ms:.1f} ms, "
                        f"failed {result.failed}"
                    )
                    kept = best.get(key)
                    if kept is None or result.requests_per_second > kept["requests_per_second"]:
                        best[key] = {"server": name, "route": route, **result.as_dict()}
        batch_sizes = _retail_batch_sizes(ours)
    finally:
        for server in servers:
            server.stop()
    return {"runs": list(best.values()), "answers": answers, "retail_batch_sizes": batch_sizes}


def _retail_batch_sizes(server: Server) -> dict[str, float]:
    """Mean rows per model call from RetailModel's own metrics: the micro-batcher at work."""
    with urllib.request.urlopen(f"{server.metrics_base}/metrics", timeout=10) as response:
        text = response.read().decode()
    count = re.search(r"^retail_model_call_rows_count (\S+)$", text, re.M)
    total = re.search(r"^retail_model_call_rows_sum (\S+)$", text, re.M)
    if not count or not total:
        return {}
    calls, rows = float(count.group(1)), float(total.group(1))
    return {"model_calls": calls, "rows": rows, "mean_rows_per_call": rows / calls if calls else 0}


def batch(model: Path, bodies: dict[str, Path], seconds: float, rounds: int) -> dict[str, Any]:
    server = retailmodel(model)
    best: dict[str, Any] | None = None
    ceiling: dict[str, Any] | None = None
    try:
        server.start(WORK / "logs")
        server.wait_ready()
        url = f"{server.base}/predict/batch"
        answer = post_json(url, bodies["batch"].read_bytes())
        if answer["count"] != BATCH_ROWS:
            raise RuntimeError(f"/predict/batch answered {answer['count']} rows")
        wrk.run(url, bodies["batch"], connections=2, seconds=min(2.0, seconds))
        for round_number in range(1, rounds + 1):
            result = wrk.run(url, bodies["batch"], connections=2, seconds=seconds)
            rows_per_second = result.requests_per_second * BATCH_ROWS
            step(f"round {round_number} /predict/batch: {rows_per_second:,.0f} rows/s")
            if best is None or rows_per_second > best["rows_per_second"]:
                best = {**result.as_dict(), "rows_per_second": rows_per_second}
            measured = _ceiling(model, seconds)
            step(f"round {round_number} inplace_predict: {measured['rows_per_second']:,.0f} rows/s")
            if ceiling is None or measured["rows_per_second"] > ceiling["rows_per_second"]:
                ceiling = measured
    finally:
        server.stop()
    assert best is not None and ceiling is not None
    return {"server": best, "ceiling": ceiling, "rows": BATCH_ROWS}


def _ceiling(model: Path, seconds: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.ceiling", str(model), str(BATCH_ROWS), str(seconds)]
    completed = subprocess.run(
        pinned(SERVER_CPU, [*command, "1"]), capture_output=True, text=True, check=True
    )
    measured: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return measured


def _reload_count(server: Server) -> float:
    with urllib.request.urlopen(f"{server.metrics_base}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(r'^retail_model_reloads_total\{outcome="ok"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def hot_reload(
    models: tuple[Path, Path],
    bodies: dict[str, Path],
    seconds: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Steady load, then load during ``RELOADS`` reloads; ``env`` adds predictor settings
    (``bench.provenance`` requires signatures with it, their files beside the model)."""
    served = WORK / "reload" / "model.ubj"
    served.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(models[0], served)
    server = retailmodel(served, env={"RELOAD_INTERVAL_SECONDS": "0.1", **(env or {})})
    try:
        server.start(WORK / "logs")
        server.wait_ready()
        url = f"{server.base}/predict"
        wrk.run(url, bodies["predict"], connections=16, seconds=min(2.0, seconds))
        steady = wrk.run(url, bodies["predict"], connections=16, seconds=seconds)
        step(f"steady /predict: p99 {steady.p99_ms:.1f} ms, failed {steady.failed}")
        before = _reload_count(server)

        def publish() -> None:
            time.sleep(seconds / 22)
            for number in range(RELOADS):
                staged = served.with_name("model.ubj.partial")
                shutil.copyfile(models[(number + 1) % 2], staged)
                staged.replace(served)  # atomic, as an upload replaces an object
                time.sleep(seconds / 22)

        publisher = threading.Thread(target=publish)
        publisher.start()
        loaded = wrk.run(url, bodies["predict"], connections=16, seconds=seconds)
        publisher.join()
        time.sleep(1.0)
        reloads = _reload_count(server) - before
        step(f"during {reloads:.0f} reloads: p99 {loaded.p99_ms:.1f} ms, failed {loaded.failed}")
        with urllib.request.urlopen(f"{server.metrics_base}/metrics", timeout=10) as response:
            metrics = response.read().decode()
    finally:
        server.stop()
    return {
        "steady": steady.as_dict(),
        "reloading": loaded.as_dict(),
        "reloads": reloads,
        "metrics": metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per figure")
    parser.add_argument("--only", default="single,batch,reload")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    models = (train(1), train(2))
    bodies = write_bodies(models[0])
    settings = {"seconds": args.seconds, "rounds": args.rounds, "model": str(models[0])}
    if "single" in parts:
        step("single-row requests: RetailModel, MLServer (default, batching), KServe")
        result = single_row(models[0], bodies, args.seconds, args.rounds)
        write_result("serving_single", {"settings": settings, "machine": machine(), **result})
    if "batch" in parts:
        step(f"/predict/batch with {BATCH_ROWS:,} rows against inplace_predict")
        result = batch(models[0], bodies, args.seconds, args.rounds)
        write_result("serving_batch", {"settings": settings, "machine": machine(), **result})
    if "reload" in parts:
        step(f"{RELOADS} hot reloads under load")
        result = hot_reload(models, bodies, max(args.seconds, 10.0))
        result.pop("metrics")
        write_result("serving_reload", {"settings": settings, "machine": machine(), **result})


if __name__ == "__main__":
    main()
