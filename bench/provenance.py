"""What signed models cost (issue 28): ``python -m bench.provenance [--seconds S] [--repeat N]``.

* verify: ``retail_provenance.modelsig.verify`` per reload, over the retail model and over
  synthetic model files of 10 and 100 MB (the time is a fixed part, the signature and the
  library's setup, plus a sha256 over the bytes); and the library's import, paid once by a
  process the first time it checks (a fresh interpreter, timed).
* operator: the operator's check before a rollout (``ModelInspector.signature``: the
  signature's GET, the model's download into memory, the check) against moto's S3 server on
  loopback, cold (a new inspector each time) and cached (the verdict cache, per version).
* image: the operator's image-signature check before a rollout (``ImageSignatures.check``:
  the ``.sig`` manifest and its payloads read from a crane registry on loopback, then
  ``cosign.verify``), cold (a new reader each time) and cached (the verdict cache, per digest
  and key set); written to ``provenance_image.json``, with its own stamp.
* reload: ``bench.serving``'s hot reloads under 16 connections of ``/predict``, without and
  with ``REQUIRE_MODEL_SIGNATURE`` (each file's signature beside it), for the p99 of requests
  while the model changes and the predictor's own check time (its histogram).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from tests.support.registry import put_small_image
from tests.support.signing import KeyPair

from bench.common import machine, step, write_result
from bench.serving import hot_reload, train, write_bodies
from retail_contract.source import signature_key
from retail_provenance import keys, modelsig


def _timed(action: Callable[[], object], repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 2),
        "repeat": repeat,
    }


async def _cached_times(check: Callable[[], Awaitable[None]], repeat: int) -> dict[str, float]:
    """``check`` once to fill a cache, then timed ``repeat`` times in one event loop."""
    await check()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await check()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 3), "repeat": repeat}


def verify_times(model: Path, team: KeyPair, repeat: int) -> dict[str, Any]:
    trusted = keys.load_keys([team.public])
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        files = {"retail model": model}
        for megabytes in (10, 100):
            path = Path(scratch) / f"{megabytes}mb.ubj"
            path.write_bytes(os.urandom(megabytes * 1024 * 1024))
            files[f"{megabytes} MB"] = path
        for label, path in files.items():
            bundle = team.sign(path.read_bytes())
            assert modelsig.verify(path, bundle, trusted).verified
            timing = _timed(partial(modelsig.verify, path, bundle, trusted), repeat)
            figures[label] = {"bytes": path.stat().st_size, **timing}
            step(f"verify {label}: median {timing['median_ms']} ms, p95 {timing['p95_ms']} ms")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import model_signing.verifying"], check=True)
    whole = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = (time.perf_counter() - started) * 1000
    figures["import_ms"] = round(whole - bare, 1)
    step(f"importing model-signing: {figures['import_ms']} ms, once per process")
    return figures


def operator_times(model: Path, team: KeyPair, repeat: int) -> dict[str, Any]:
    from moto.server import ThreadedMotoServer

    from retail_tools.ports import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        import boto3

        from retail_operator.aws.objects import ModelInspector
        from retail_operator.spec import ModelSpec

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="models")
        s3.put_bucket_versioning(Bucket="models", VersioningConfiguration={"Status": "Enabled"})
        data = model.read_bytes()
        digest = modelsig_digest(data)
        s3.put_object(Bucket="models", Key=signature_key("m.ubj", digest), Body=team.sign(data))
        s3.put_object(Bucket="models", Key="m.ubj", Body=data, Metadata={"sha256": digest})
        spec = ModelSpec(s3_uri="s3://models/m.ubj")
        trusted = (team.public,)

        async def check(inspector: ModelInspector) -> None:
            found = await inspector.head(spec)
            assert (await inspector.signature(spec, found, trusted)).verified

        cold = _timed(lambda: asyncio.run(check(ModelInspector(ttl=0))), repeat)
        warm_inspector = ModelInspector(ttl=3600)
        warm = asyncio.run(_cached_times(lambda: check(warm_inspector), repeat))
    finally:
        server.stop()
    step(f"operator check, cold: median {cold['median_ms']} ms; cached: {warm['median_ms']} ms")
    return {"bytes": len(data), "cold": cold, "cached": warm}


def image_times(team: KeyPair, repeat: int) -> dict[str, Any]:
    from retail_operator.aws.signatures import ImageSignatures
    from retail_operator.spec import ImageRef
    from retail_provenance import cosign, oci
    from retail_tools.images import registry
    from retail_tools.images.config import ImagesConfig
    from retail_tools.ports import free_port
    from retail_tools.settings import current

    repository = "mlops/retail-api"
    with tempfile.TemporaryDirectory() as scratch:
        config = ImagesConfig(current().cache, Path(scratch), free_port())
        registry.up(config, lambda _line: None)
        try:
            base = f"http://{config.registry_address}"
            digest, _ = put_small_image(config, repository, "bench")
            payload = cosign.payload(f"{config.registry_address}/{repository}", digest)
            signed = cosign.Signature(payload, cosign.sign(payload, team.private_pem))
            oci.Registry(base).attach(repository, digest, signed)
            image = ImageRef(
                repository=f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{repository}", tag="bench"
            )
            trusted = (team.public,)

            async def check(reader: ImageSignatures) -> None:
                assert (await reader.check(image, digest, trusted)).verified

            def fresh() -> ImageSignatures:
                return ImageSignatures(registry_url=base, auth="none")

            cold = _timed(lambda: asyncio.run(check(fresh())), repeat)
            cached_reader = fresh()
            cached = asyncio.run(_cached_times(lambda: check(cached_reader), repeat))
        finally:
            registry.down(config)
    step(f"image check, cold: median {cold['median_ms']} ms; cached: {cached['median_ms']} ms")
    return {"cold": cold, "cached": cached}


def modelsig_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def reload_runs(models: tuple[Path, Path], team: KeyPair, seconds: float) -> dict[str, Any]:
    bodies = write_bodies(models[0])
    plain = hot_reload(models, bodies, seconds)
    plain.pop("metrics")
    step(f"without signatures: reloading p99 {plain['reloading']['p99_ms']} ms")
    served = models[0].parent.parent / "reload" / "model.ubj"  # where hot_reload serves from
    served.parent.mkdir(parents=True, exist_ok=True)
    for model in models:
        data = model.read_bytes()
        Path(signature_key(str(served), modelsig_digest(data))).write_bytes(team.sign(data))
    env = {"REQUIRE_MODEL_SIGNATURE": "true", "MODEL_TRUSTED_KEYS": team.public}
    signed = hot_reload(models, bodies, seconds, env=env)
    text = signed.pop("metrics")
    total = re.search(r"^retail_model_signature_check_seconds_sum (\S+)$", text, re.M)
    count = re.search(r"^retail_model_signature_check_seconds_count (\S+)$", text, re.M)
    refused = re.search(
        r'^retail_model_reload_failures_total\{reason="signature"\} (\S+)$', text, re.M
    )
    checks = float(count.group(1)) if count else 0.0
    signed["signature_checks"] = checks
    signed["signature_refusals"] = float(refused.group(1)) if refused else 0.0
    signed["mean_check_ms"] = (
        round(float(total.group(1)) / checks * 1000, 2) if total and checks else None
    )
    step(
        f"with signatures: reloading p99 {signed['reloading']['p99_ms']} ms, "
        f"{checks:.0f} checks, mean {signed['mean_check_ms']} ms"
    )
    return {"without": plain, "with": signed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run")
    parser.add_argument("--repeat", type=int, default=20, help="checks timed per figure")
    parser.add_argument("--only", default="verify,operator,image,reload")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    team = KeyPair.new()
    wanted = parts & {"verify", "operator", "reload"}
    models = (train(1), train(2)) if wanted else None
    if "image" in parts:  # results of their own (provenance_image.json), with their own stamp
        figures = image_times(team, args.repeat)
        write_result("provenance_image", {"settings": vars(args), "machine": machine(), **figures})
    if models is None:
        return
    result: dict[str, Any] = {"settings": vars(args), "machine": machine()}
    if "verify" in parts:
        result["verify"] = verify_times(models[0], team, args.repeat)
    if "operator" in parts:
        result["operator"] = operator_times(models[0], team, args.repeat)
    if "reload" in parts:
        result["reload"] = reload_runs(models, team, max(args.seconds, 10.0))
    write_result("provenance", result)


if __name__ == "__main__":
    main()
