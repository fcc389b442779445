"""``retailctl``: the one command for people: training, serving, the operator and the local stack.

The tooling's face, the top of its layers: one module per command group (``cluster``,
``argocd``, ``image``, ``ecr``, ``model``), each a thin edge over the package it drives, and
``common`` for what they share; nothing below imports them. ``serve`` and ``operator`` run the
same entry points their images run (``python -m retail_serving``, ``python -m
retail_operator``). This module mounts the groups and turns failures into one clear line and a
non-zero exit (no traceback unless ``RETAILCTL_DEBUG=1``). Command modules import their heavy
dependencies inside the commands, so ``retailctl --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from retail_tools.cli.argocd import app as argocd_app
from retail_tools.cli.cluster import app as cluster_app
from retail_tools.cli.ecr import ecr_app
from retail_tools.cli.image import image_app
from retail_tools.cli.model import model_app, register_model_commands

app = typer.Typer(
    name="retailctl",
    help="Run tabular ML models on Kubernetes: train, push, serve, operate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(ecr_app, name="ecr")
app.add_typer(image_app, name="image")
app.add_typer(cluster_app, name="cluster")
app.add_typer(argocd_app, name="argocd")
app.add_typer(model_app, name="model")
register_model_commands(app)


def main() -> None:
    """Console-script entry point."""
    try:
        # Without standalone mode, click returns the code of a `typer.Exit(code)` instead of
        # exiting; a command that returns normally gives None.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as stop:
        sys.exit(stop.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("retailctl: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:
        if os.environ.get("RETAILCTL_DEBUG"):
            raise
        print(f"retailctl: error: {error}", file=sys.stderr)
        sys.exit(1)


@app.command()
def version() -> None:
    """Print retailctl's version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("retailmodel"))


@app.command("operator")
def operator_command(
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Serve these namespaces, comma-separated (default: all namespaces, or "
            "RETAIL_OPERATOR_NAMESPACES).",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log every handler call.")
    ] = False,
) -> None:
    """Run the RetailModel operator.

    Kubernetes credentials come from the in-cluster config or KUBECONFIG; AWS from the standard
    variables and IRSA, with AWS_ENDPOINT_URL pointing at a local stand-in. When image keys are
    trusted, image signatures are read from RETAIL_OPERATOR_REGISTRY_URL (empty: the image's
    ECR registry, with RETAIL_OPERATOR_REGISTRY_AUTH=ecr credentials; none for the local
    registry). Every RETAIL_OPERATOR_* setting is listed in docs/operator.md.
    """
    from retail_operator.runner import run_operator

    run_operator(namespace, verbose=verbose)


@app.command()
def demo(
    workdir: Annotated[
        Path | None, typer.Option(help="Where models and logs go (default: ./.demo).")
    ] = None,
) -> None:
    """Run the whole story on the local cluster's real pods, step by step, then clean up.

    The cluster and its real node, the AWS stand-in, ECR as code, both images built, pushed and
    scanned, a trained model, the operator in-cluster, a RetailModel's pods, predictions, a hot
    reload, a refused image and a rolled-out one under load (failed requests counted), events
    and logs.
    """
    from retail_tools.demo import run_demo

    run_demo(workdir)
