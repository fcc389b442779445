"""``retailctl argocd …``: build, start, stop and inspect the local Argo CD, and read an
Application as Argo CD's UI would show it.

A thin edge over ``argocd.build``, ``argocd.stack`` and ``argocd.apps``; their errors reach
``retailctl``'s ``main``, which prints them as one line.
"""

from __future__ import annotations

import time
from typing import Annotated

import click
import typer
from rich.table import Table

from retail_tools.argocd.build import recipe
from retail_tools.cli.common import (
    argocd_config,
    console,
    ensure_built,
    output_console,
    refuse_unhealthy,
    show_processes,
)

app = typer.Typer(
    name="argocd",
    help=(
        "A local Argo CD (redis, repo-server, application controller; no UI or API server)"
        " syncing the local cluster from git."
    ),
    no_args_is_help=True,
)


@app.command("build")
def build_command(
    force: Annotated[bool, typer.Option(help="Rebuild even if the cache is complete.")] = False,
) -> None:
    """Build (or reuse) Argo CD's binary from the Go module proxy."""
    config = argocd_config()
    ensure_built(recipe(config), force=force)
    console.print(f"Argo CD {config.version} ready: {config.binary()}")


@app.command()
def up() -> None:
    """Install Argo CD's CRDs, settings and default project in the local cluster and start its
    processes (building first if needed); a no-op if it runs."""
    from retail_tools.argocd import stack

    config = argocd_config()
    ensure_built(recipe(config))
    started = time.monotonic()
    names = stack.up(config, notify=lambda line: console.print(f"  {line}"))
    verb = "started" if names else "already running"
    console.print(f"Argo CD {verb} ({time.monotonic() - started:.1f}s). Logs: {config.log_dir}")


@app.command()
def down() -> None:
    """Stop Argo CD's processes (its objects stay in the cluster)."""
    from retail_tools.argocd import stack

    stopped = stack.down(argocd_config())
    console.print(f"Stopped: {', '.join(stopped)}" if stopped else "Nothing was running.")


@app.command()
def status() -> None:
    """Show each process, its port and health; exit 1 unless all are up."""
    from retail_tools.argocd import stack

    components = stack.status(argocd_config())
    show_processes(components)
    refuse_unhealthy(components)


@app.command("app")
def app_command(
    name: Annotated[str, typer.Argument(help="The Application's name (namespace argocd).")],
    refresh: Annotated[
        bool, typer.Option(help="Ask Argo CD to compare with git now, then show.")
    ] = False,
) -> None:
    """Show an Application: sync, revision, health, last sync and each resource's health."""
    from retail_tools.argocd import apps

    config = argocd_config()
    if refresh:
        apps.refresh(config, name)
    application = apps.get(config, name)
    if application is None:
        raise click.ClickException(f"no Application {name!r} in namespace argocd")
    shown = apps.view(application)
    typer.echo(f"Application: {shown.name}")
    typer.echo(f"Sync:        {shown.sync} to {shown.revision[:12] or '-'}")
    health = f"{shown.health}: {shown.health_message}" if shown.health_message else shown.health
    typer.echo(f"Health:      {health}")
    typer.echo(f"Last sync:   {shown.operation or '-'}")
    table = Table("kind", "namespace", "name", "sync", "health", "message")
    for item in shown.resources:
        table.add_row(item.kind, item.namespace, item.name, item.sync, item.health, item.message)
    output_console().print(table)
