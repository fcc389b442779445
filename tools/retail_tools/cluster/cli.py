"""``retailctl cluster …``: build, start, stop and inspect the local control plane.

A thin edge over ``build`` and ``cluster``: it renders progress and tables, and lets their
``BuildError``/``ClusterError`` reach ``retailctl``'s ``main``, which prints them as one line.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from retail_tools.cluster.config import ClusterConfig
from retail_tools.settings import current

# ``build`` and ``cluster`` (and through them ``cryptography``) are imported inside the
# commands, so ``retailctl --help`` does not pay for them.

app = typer.Typer(
    name="cluster",
    help=(
        "A real local Kubernetes control plane (etcd, API server, controllers, scheduler, kwok)"
        " and one real node (containerd, kubelet, kube-proxy; RETAILMODEL_REAL_NODE=0: none)."
    ),
    no_args_is_help=True,
)
console = Console(stderr=True)
HEARTBEAT_SECONDS = 30.0


def _format_duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{seconds:.1f}s"


def _build(config: ClusterConfig, force: bool) -> None:
    from retail_tools.cluster import build as builder

    if builder.is_built(config) and not force:
        return
    console.print(
        f"Building the control plane {config.toolchain.key} (log: "
        f"{config.toolchain_dir / 'build.log'})"
    )
    started = time.monotonic()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks: dict[str, TaskID] = {}
        last_heartbeat = time.monotonic()

        def on_step(step: str, elapsed: float | None) -> None:
            if elapsed is None:
                tasks[step] = progress.add_task(step, total=None)
                if not console.is_terminal:
                    console.print(f"==> {step}")
            else:
                task = progress.tasks[tasks[step]]
                progress.update(
                    tasks[step], total=task.completed or 1, completed=task.completed or 1
                )
                progress.update(tasks[step], description=f"{step} ✓ {_format_duration(elapsed)}")
                if not console.is_terminal:
                    console.print(f"    {step} done in {_format_duration(elapsed)}")

        def on_progress(update: builder.Progress) -> None:
            nonlocal last_heartbeat
            progress.update(tasks[update.step], completed=update.compiled, total=update.total)
            if not console.is_terminal and time.monotonic() - last_heartbeat > HEARTBEAT_SECONDS:
                last_heartbeat = time.monotonic()
                of = f" of at most {update.total}" if update.total else ""
                console.print(f"    {update.step}: {update.compiled}{of} packages compiled")

        builder.build(config, force=force, on_progress=on_progress, on_step=on_step)
    console.print(f"Built in {_format_duration(time.monotonic() - started)}: {config.bin_dir}")


@app.command("build")
def build_command(
    force: Annotated[bool, typer.Option(help="Rebuild even if the cache is complete.")] = False,
) -> None:
    """Build (or reuse) etcd, the Kubernetes components and kubelet, kubectl, kwok and crictl
    from the Go proxy."""
    config = ClusterConfig.from_settings(current())
    started = time.monotonic()
    _build(config, force)
    console.print(
        f"Binaries ready in {_format_duration(time.monotonic() - started)}: {config.bin_dir}"
    )


@app.command()
def up() -> None:
    """Start the cluster and its real node (building the binaries first if needed); a no-op if
    it is running."""
    from retail_tools.cluster import cluster

    config = ClusterConfig.from_settings(current())
    _build(config, force=False)
    started = time.monotonic()
    names = cluster.up(config, notify=lambda line: console.print(f"  {line}"))
    verb = "started" if names else "already running"
    console.print(
        f"Cluster {verb} ({_format_duration(time.monotonic() - started)}). Logs: {config.log_dir}"
    )
    console.print(f"  export KUBECONFIG={config.kubeconfig}")
    console.print("  retailctl cluster kubectl -- get nodes")


@app.command()
def down(
    purge: Annotated[
        bool,
        typer.Option(
            help="Also delete the cluster's data, certificates and logs, and the node's images."
        ),
    ] = False,
) -> None:
    """Stop every process of the cluster and its node, and undo what the node changed on the
    host (its data is kept unless --purge)."""
    from retail_tools.cluster import cluster

    config = ClusterConfig.from_settings(current())
    stopped = cluster.down(config)
    console.print(f"Stopped: {', '.join(stopped)}" if stopped else "Nothing was running.")
    if purge:
        shutil.rmtree(config.cluster_dir, ignore_errors=True)
        console.print(f"Deleted {config.cluster_dir}")
        if "containerd" in stopped:
            shutil.rmtree(config.node.root, ignore_errors=True)
            console.print(f"Deleted {config.node.root}")


@app.command()
def status() -> None:
    """Show each component's process, port and health, the nodes and the local registry; exit 1
    unless all are up."""
    from retail_tools.cluster import cluster
    from retail_tools.images import registry
    from retail_tools.images.config import ImagesConfig

    config = ClusterConfig.from_settings(current())
    components = cluster.status(config)
    table = Table("component", "pid", "port", "health", "log")
    for item in components:
        health = "healthy" if item.healthy else ("unhealthy" if item.pid else "not running")
        port = str(item.port) if item.port is not None else "-"
        table.add_row(item.name, str(item.pid or "-"), port, health, str(item.log))
    Console().print(table)
    mirror = registry.status(ImagesConfig.from_settings(current()))
    answering = "answering" if mirror.answering else "not running"
    typer.echo(f"Registry (ECR's stand-in endpoint): {mirror.address} {answering}")
    if unhealthy := [item.name for item in components if not item.healthy]:
        raise click.ClickException(f"not running or unhealthy: {', '.join(unhealthy)}")
    nodes = cluster.ready_nodes(config)
    typer.echo(f"Ready nodes: {len(nodes)} ({', '.join(nodes)})")
    typer.echo(f"KUBECONFIG={config.kubeconfig}")


@app.command()
def leftovers() -> None:
    """List what a stopped real node left on this machine (processes, mounts, bridge, iptables
    chains, cgroups, files, changed sysctls); exit 1 if anything."""
    from retail_tools.cluster import cluster
    from retail_tools.cluster.leftovers import leftovers as find_leftovers

    config = ClusterConfig.from_settings(current())
    found = find_leftovers(config, podman_running=cluster.podman_runs_containers())
    for line in found:
        typer.echo(line)
    if found:
        raise click.ClickException(f"{len(found)} leftover(s) of the real node")
    typer.echo("Nothing left by the real node.")


@app.command()
def kubeconfig() -> None:
    """Print the path of the cluster's admin kubeconfig."""
    config = ClusterConfig.from_settings(current())
    if not config.kubeconfig.exists():
        raise click.ClickException("no kubeconfig yet: run `retailctl cluster up` first")
    typer.echo(str(config.kubeconfig))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def kubectl(context: typer.Context) -> None:
    """Run the cluster's own kubectl against it: retailctl cluster kubectl -- get nodes."""
    config = ClusterConfig.from_settings(current())
    binary = config.binary("kubectl")
    if not binary.exists():
        raise click.ClickException("kubectl is not built yet: run `retailctl cluster build`")
    argv = [str(binary), f"--kubeconfig={config.kubeconfig}", *context.args]
    os.execv(binary, argv)
