"""``retailctl image …``: name, build and push the two images, and run the local registry.

Thin: options → ``images.build`` / ``images.push`` / ``images.registry``. Progress goes to
standard error, so the last line on standard output is the result scripts read: the image
reference after ``build``, the digest after ``push``. Errors reach ``retailctl``'s ``main`` as
one line.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from retail_tools.cli.common import images_config
from retail_tools.ecr.tags import TagNameError, image_tag

image_app = typer.Typer(
    help="Image tags, builds with podman, pushes to the local registry and ECR.",
    no_args_is_help=True,
)
registry_app = typer.Typer(
    help="The local OCI registry standing in for ECR's registry endpoint.", no_args_is_help=True
)
image_app.add_typer(registry_app, name="registry")

ImageName = Annotated[str, typer.Argument(help="serving or operator.", metavar="serving|operator")]
Context = Annotated[
    Path,
    typer.Option(help="The repository root the Dockerfiles build from.", file_okay=False),
]


def _progress(line: str) -> None:
    typer.echo(line, err=True)


@image_app.command("tag")
def tag_command(
    branch: Annotated[str, typer.Option(help="Git branch, e.g. main or feature/x.")],
    sha: Annotated[str, typer.Option(help="Git commit SHA (7 to 64 hex characters).")],
    on: Annotated[
        datetime | None,
        typer.Option(
            "--date", help="Build date for release tags (default today, UTC).", formats=["%Y-%m-%d"]
        ),
    ] = None,
) -> None:
    """Print the image tag for a build of SHA on BRANCH."""
    today: date = (on or datetime.now(UTC)).date()
    try:
        typer.echo(image_tag(branch, sha, today))
    except TagNameError as error:
        raise typer.BadParameter(str(error)) from error


@image_app.command("build")
def build_command(
    name: ImageName,
    tag: Annotated[
        str | None,
        typer.Option(help="Image tag (default: from the git branch and commit, as `image tag`)."),
    ] = None,
    context: Context = Path("."),
) -> None:
    """Build the serving or operator image with podman; print its local reference.

    The base (Debian bookworm + Python 3.11) is made here with debootstrap the first time and
    passed as PYTHON_IMAGE; a rebuild of unchanged sources comes from podman's layer cache
    (docs/delivery.md has the measured times).
    """
    from retail_tools.images.build import build_image, default_tag, target_named

    target = target_named(name)
    context = context.resolve()
    reference = build_image(
        images_config(),
        target,
        tag or default_tag(target, context),
        context,
        _progress,
    )
    typer.echo(reference)


@image_app.command("push")
def push_command(
    name: ImageName,
    tag: Annotated[str, typer.Option(help="The built image's tag.")],
    signing_key: Annotated[
        Path | None,
        typer.Option(
            "--signing-key",
            envvar="RETAILMODEL_IMAGE_SIGNING_KEY",
            help="Private key (PEM, ECDSA P-256; retailctl model keygen makes one) to sign the "
            "pushed digest with, cosign-compatibly (tag sha256-<hex>.sig beside the image). Its "
            "password, if any: $RETAILMODEL_SIGNING_KEY_PASSWORD.",
        ),
    ] = None,
) -> None:
    """Push a built image to the local registry and register it in ECR; print its digest.

    ECR is the one AWS_ENDPOINT_URL names (the stand-in locally); the repository must exist
    (`retailctl ecr bootstrap`) and the registry must run (`retailctl image registry up`).
    With --signing-key the digest is signed as `cosign sign --key` would sign it.
    """
    import os

    import boto3

    from retail_tools.images.build import target_named
    from retail_tools.images.push import push_image

    config, target, ecr = images_config(), target_named(name), boto3.client("ecr")
    manifest = push_image(config, target, tag, ecr, _progress)
    if signing_key is not None:
        from retail_tools.images.signing import sign_image

        password = os.environ.get("RETAILMODEL_SIGNING_KEY_PASSWORD")
        signed = sign_image(
            config,
            target.ecr_repository,
            manifest.digest,
            signing_key,
            ecr,
            password=password.encode() if password else None,
        )
        _progress(f"signed: {target.ecr_repository}:{signed}")
    typer.echo(manifest.digest)


@registry_app.command("build")
def registry_build() -> None:
    """Build crane (the registry) from the Go module proxy, once per version."""
    from retail_tools.images import registry

    typer.echo(registry.ensure_crane(images_config(), _progress))


@registry_app.command("up")
def registry_up() -> None:
    """Start the registry (building crane first if needed); a no-op when it runs."""
    from retail_tools.images import registry

    state = registry.up(images_config(), _progress)
    typer.echo(f"registry: serving on {state.address} (pid {state.pid})")


@registry_app.command("down")
def registry_down() -> None:
    """Stop the registry. Blobs stay on disk; manifests live in its memory, so push again."""
    from retail_tools.images import registry

    stopped = registry.down(images_config())
    typer.echo("registry: stopped" if stopped else "registry: was not running")


@registry_app.command("status")
def registry_status() -> None:
    """Whether the registry runs and answers."""
    from retail_tools.images import registry

    state = registry.status(images_config())
    if state.pid is None:
        typer.echo(f"registry: not running ({state.address})")
    else:
        answer = "answering" if state.answering else "NOT answering"
        typer.echo(f"registry: pid {state.pid} on {state.address}, {answer}")
