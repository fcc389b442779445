"""``retailctl argocd …``: build, start, stop and inspect the local Argo CD, and read an
Application as Argo CD's UI would show it.

A thin edge over ``build``, ``stack`` and ``apps``; their errors reach ``retailctl``'s ``main``,
which prints them as one line.
"""

from __future__ import annotations

import time
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from retail_tools.argocd.config import ArgocdConfig
from retail_tools.settings import current

app = typer.Typer(
    name="argocd",
    help=(
        "A local Argo CD (redis, repo-server, application controller; no UI or API server)"
        " syncing the local cluster from git."
    ),
    no_args_is_help=True,
)
console = Console(stderr=True)


def _build(config: ArgocdConfig, force: bool) -> None:
    from retail_tools.argocd import build as builder
    from retail_tools.cluster.build import Progress as BuildProgress

    if builder.is_built(config) and not force:
        return
    console.print(f"Building Argo CD {config.version} (log: {config.build_dir / 'build.log'})")
    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("argocd", total=None)

        def on_step(step: str, elapsed: float | None) -> None:
            if elapsed is not None:
                console.print(f"  {step} done in {elapsed:.0f}s")

        def on_progress(update: BuildProgress) -> None:
            progress.update(task, completed=update.compiled, total=update.total)

        builder.build(config, force=force, on_progress=on_progress, on_step=on_step)
    console.print(f"Built in {time.monotonic() - started:.0f}s: {config.bin_dir}")


@app.command("build")
def build_command(
    force: Annotated[bool, typer.Option(help="Rebuild even if the cache is complete.")] = False,
) -> None:
    """Build (or reuse) Argo CD's binary from the Go module proxy."""
    config = ArgocdConfig.from_settings(current())
    _build(config, force)
    console.print(f"Argo CD {config.version} ready: {config.binary()}")


@app.command()
def up() -> None:
    """Install Argo CD's CRDs, settings and default project in the local cluster and start its
    processes (building first if needed); a no-op if it runs."""
    from retail_tools.argocd import stack

    config = ArgocdConfig.from_settings(current())
    _build(config, force=False)
    started = time.monotonic()
    names = stack.up(config, notify=lambda line: console.print(f"  {line}"))
    verb = "started" if names else "already running"
    console.print(f"Argo CD {verb} ({time.monotonic() - started:.1f}s). Logs: {config.log_dir}")


@app.command()
def down() -> None:
    """Stop Argo CD's processes (its objects stay in the cluster)."""
    from retail_tools.argocd import stack

    stopped = stack.down(ArgocdConfig.from_settings(current()))
    console.print(f"Stopped: {', '.join(stopped)}" if stopped else "Nothing was running.")


@app.command()
def status() -> None:
    """Show each process, its port and health; exit 1 unless all are up."""
    from retail_tools.argocd import stack

    components = stack.status(ArgocdConfig.from_settings(current()))
    table = Table("component", "pid", "port", "health", "log")
    for item in components:
        health = "healthy" if item.healthy else ("unhealthy" if item.pid else "not running")
        table.add_row(item.name, str(item.pid or "-"), str(item.port), health, str(item.log))
    Console().print(table)
    if unhealthy := [item.name for item in components if not item.healthy]:
        raise click.ClickException(f"not running or unhealthy: {', '.join(unhealthy)}")


@app.command("app")
def app_command(
    name: Annotated[str, typer.Argument(help="The Application's name (namespace argocd).")],
    refresh: Annotated[
        bool, typer.Option(help="Ask Argo CD to compare with git now, then show.")
    ] = False,
) -> None:
    """Show an Application: sync, revision, health, last sync and each resource's health."""
    from retail_tools.argocd import apps

    config = ArgocdConfig.from_settings(current())
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
    Console().print(table)
