"""``retailctl train``, ``retailctl serve`` and ``retailctl model push``.

Mounted on the root ``retailctl`` app by ``retail_operator.cli``. Heavy imports (xgboost,
boto3, uvicorn, the FastAPI app) happen inside the commands so ``retailctl --help`` stays fast.
Failures raise ``click.ClickException`` (or a domain error) for the root to print as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer

model_app = typer.Typer(help="Publish model files.", no_args_is_help=True)


def train(
    out: Annotated[Path, typer.Option("--out", help="Model file to write (.ubj or .json).")],
    rows: Annotated[int, typer.Option("--rows", min=100, help="Synthetic baskets to generate.")] = (
        50_000
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed for data, split and training.")] = 42,
) -> None:
    """Train the price-sensitivity model on synthetic baskets and write one model file."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from retail_serving import artifact, training

    console = Console(stderr=True)
    console.print(f"Generating {rows:,} synthetic baskets (seed {seed}) and training XGBoost…")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("validation log-loss {task.fields[loss]}"),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("boosting rounds", total=training.MAX_ROUNDS, loss="…")

        def report(round_number: int, total: int, loss: float) -> None:
            progress.update(task, completed=round_number, loss=f"{loss:.4f}")

        trained = training.train(rows, seed, report)
    data = artifact.write(out, trained.booster, trained.encoder, trained.version)
    typer.echo(f"rounds:            {trained.rounds} (early stopping)")
    typer.echo(f"hold-out rows:     {trained.holdout_rows:,}")
    typer.echo(f"hold-out accuracy: {trained.holdout_accuracy:.4f}")
    typer.echo(f"hold-out log-loss: {trained.holdout_log_loss:.4f}")
    typer.echo(f"majority baseline: {trained.majority_accuracy:.4f}")
    typer.echo(f"model version:     {trained.version}")
    typer.echo(f"wrote {out} ({len(data):,} bytes, sha256 {artifact.sha256_hex(data)})")


def serve(
    model_uri: Annotated[
        str | None,
        typer.Option("--model-uri", help="s3://bucket/key or a local path (default: $MODEL_URI)."),
    ] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
    host: Annotated[str, typer.Option("--host")] = "0.0.0.0",
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Serve predictions from a model file, reloading it when the object changes."""
    import logging
    import os

    import uvicorn
    from pydantic import ValidationError

    from retail_serving.app import create_app
    from retail_serving.settings import ServingSettings

    if model_uri is not None:
        os.environ["MODEL_URI"] = model_uri
    try:
        settings = ServingSettings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()
        )
        raise click.ClickException(f"invalid serving settings: {problems}") from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    # botocore's debug log prints each request's headers: the access key ID and the session
    # token (IRSA's temporary credentials). Credentials never reach the log, at any level.
    logging.getLogger("botocore").setLevel(max(logging.INFO, logging.getLogger().level))
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # per-request logging costs more than a prediction; see /metrics
        timeout_graceful_shutdown=10,
    )


@model_app.command("push")
def push(
    path: Annotated[Path, typer.Argument(help="Model file written by retailctl train.")],
    uri: Annotated[str, typer.Argument(help="Destination, s3://bucket/key.")],
) -> None:
    """Upload a model file to S3 with its sha256 as object metadata."""
    from retail_serving import artifact, storage

    try:
        location = storage.S3Location.parse(uri)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="URI") from None
    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file", param_hint="PATH")
    data = path.read_bytes()
    typer.echo(f"checking {path} is a servable model…")
    model = artifact.load(data)  # refuse to publish what no server would load
    typer.echo(f"uploading model {model.version} ({len(data):,} bytes) to {location.uri}…")
    content_type = "application/json" if data.lstrip()[:2] == b'{"' else "application/ubjson"
    uploaded = storage.upload(data, location, content_type=content_type)
    typer.echo(f"sha256:    {uploaded.sha256}")
    typer.echo(f"etag:      {uploaded.etag}")
    if uploaded.version_id:
        typer.echo(f"versionId: {uploaded.version_id}")
    else:
        typer.echo("versionId: (bucket is not versioned)")


def register_serving_commands(app: typer.Typer) -> None:
    """Add ``train`` and ``serve`` to the root ``retailctl`` app."""
    app.command("train")(train)
    app.command("serve")(serve)
