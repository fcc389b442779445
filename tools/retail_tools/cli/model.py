"""``retailctl train``, ``retailctl serve``, ``retailctl model push`` and ``retailctl model
drift`` and ``retailctl model keygen``: the model commands.

Mounted on the root ``retailctl`` app (``retail_tools.cli``). ``serve`` runs the predictor
exactly as its image does (``retail_serving.server``). Heavy imports (xgboost, boto3, uvicorn,
the FastAPI app) happen inside the commands so ``retailctl --help`` stays fast.
Failures raise ``click.ClickException`` (or a domain error) for the root to print as one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import click
import typer

from retail_tools.cli.common import console as progress_console

model_app = typer.Typer(
    help="Publish model files, and read a RetailModel's drift report.", no_args_is_help=True
)


def train(
    out: Annotated[Path, typer.Option("--out", help="Model file to write (.ubj or .json).")],
    rows: Annotated[int, typer.Option("--rows", min=100, help="Synthetic baskets to generate.")] = (
        50_000
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed for data, split and training.")] = 42,
) -> None:
    """Train the price-sensitivity model on synthetic baskets and write one model file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from retail_serving import artifact
    from retail_training import training

    console = progress_console
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
    data = artifact.write(out, trained.booster, trained.encoder, trained.version, trained.reference)
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
    """Serve predictions from a model file, reloading it when the object changes.

    The same process the serving image runs (``python -m retail_serving``).
    """
    from retail_serving import server

    try:
        settings = server.load_settings(model_uri)
    except server.SettingsError as error:
        raise click.ClickException(str(error)) from None
    server.run(settings, host=host, port=port, log_level=log_level)


PASSWORD_ENV = "RETAILMODEL_SIGNING_KEY_PASSWORD"  # a private key's password, never an option


def _password() -> str | None:
    return os.environ.get(PASSWORD_ENV) or None


@model_app.command("keygen")
def keygen(
    private_key: Annotated[Path, typer.Argument(help="Private key to write (PEM, mode 0600).")],
    public_key: Annotated[Path, typer.Argument(help="Public key to write (PEM), to trust.")],
) -> None:
    """Make an ECDSA P-256 key pair to sign models with (encrypted with
    $RETAILMODEL_SIGNING_KEY_PASSWORD when set). The public key goes into a RetailModelPolicy's
    models.trustedKeys; the private key stays with the pipeline that pushes models."""
    from retail_provenance import keys

    for path in (private_key, public_key):
        if path.exists():
            raise typer.BadParameter(f"{path} exists; not overwriting a key")
    password = _password()
    private_pem, public_pem = keys.generate(password.encode() if password else None)
    descriptor = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(private_pem)
    public_key.write_bytes(public_pem)
    fingerprint = keys.load_key(public_pem).fingerprint
    typer.echo(f"wrote {private_key} (private, 0600) and {public_key} (sha256:{fingerprint})")


@model_app.command("push")
def push(
    path: Annotated[Path, typer.Argument(help="Model file written by retailctl train.")],
    uri: Annotated[str, typer.Argument(help="Destination, s3://bucket/key.")],
    signing_key: Annotated[
        Path | None,
        typer.Option(
            "--signing-key",
            envvar="RETAILMODEL_SIGNING_KEY",
            help="Private key (PEM, retailctl model keygen) to sign the model with; the "
            "signature is stored beside it as KEY.sha256-<digest>.sig. Its password, if any: "
            f"${PASSWORD_ENV}.",
        ),
    ] = None,
) -> None:
    """Upload a model file to S3 with its sha256 as object metadata, signed (OpenSSF model
    signing) when a signing key is given."""
    from retail_contract.source import S3Uri
    from retail_serving import artifact, storage

    try:
        location = S3Uri.parse(uri)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="URI") from None
    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file", param_hint="PATH")
    data = path.read_bytes()
    typer.echo(f"checking {path} is a servable model…")
    model = artifact.load(data)  # refuse to publish what no server would load
    typer.echo(f"uploading model {model.version} ({len(data):,} bytes) to {location.uri}…")
    content_type = "application/json" if data.lstrip()[:2] == b'{"' else "application/ubjson"
    if signing_key is not None:
        from retail_provenance import modelsig

        try:
            bundle = modelsig.sign(path, signing_key, password=_password())
        except (OSError, ValueError, TypeError) as error:
            raise click.ClickException(f"cannot sign with {signing_key}: {error}") from None
        # The signature first: named by the digest it signs, it is in place before any
        # predictor can see the model it belongs to.
        where = storage.upload_signature(bundle, location, model.sha256)
        typer.echo(f"signature: {where}")
    uploaded = storage.upload(data, location, content_type=content_type)
    typer.echo(f"sha256:    {uploaded.sha256}")
    typer.echo(f"etag:      {uploaded.etag}")
    if uploaded.version_id:
        typer.echo(f"versionId: {uploaded.version_id}")
    else:
        typer.echo("versionId: (bucket is not versioned)")


@model_app.command("drift")
def drift(
    name: Annotated[str, typer.Argument(help="The RetailModel's name.")],
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="The RetailModel's namespace.")
    ] = "default",
) -> None:
    """Show a RetailModel's drift report: its Drift condition and the last window's scores,
    read from the local cluster."""
    from retail_tools import driftreport
    from retail_tools.cli.common import cluster_config, output_console

    kubectl = cluster_config().kubectl
    found = kubectl("get", "retailmodel", name, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        raise click.ClickException(found.stderr.strip() or f"no RetailModel {namespace}/{name}")
    body = json.loads(found.stdout)
    for line in driftreport.summary(body):
        typer.echo(line)
    scores = driftreport.table(body)
    if scores is None:
        typer.echo("No drift window has been judged yet.")
    else:
        output_console().print(scores)


def register_model_commands(app: typer.Typer) -> None:
    """Add ``train`` and ``serve`` to the root ``retailctl`` app."""
    app.command("train")(train)
    app.command("serve")(serve)
