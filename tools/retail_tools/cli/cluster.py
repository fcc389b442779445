"""``retailctl cluster …``: build, start, stop and inspect the local control plane.

A thin edge over ``cluster.build`` and ``cluster.cluster``: it renders progress and tables, and
lets their ``BuildError``/``ClusterError`` reach ``retailctl``'s ``main``, which prints them as
one line. ``status`` also tells whether the local registry the real node pulls from answers.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Annotated

import click
import typer

from retail_tools.cli.common import (
    cluster_config,
    console,
    ensure_built,
    format_duration,
    images_config,
    refuse_unhealthy,
    show_processes,
)
from retail_tools.cluster.build import recipes

# ``cluster`` (and through it ``cryptography``) is imported inside the commands, so
# ``retailctl --help`` does not pay for it.

app = typer.Typer(
    name="cluster",
    help=(
        "A real local Kubernetes control plane (etcd, API server, controllers, scheduler, kwok)"
        " and one real node (containerd, kubelet, kube-proxy; RETAILMODEL_REAL_NODE=0: none)."
    ),
    no_args_is_help=True,
)


@app.command("build")
def build_command(
    force: Annotated[bool, typer.Option(help="Rebuild even if the cache is complete.")] = False,
) -> None:
    """Build (or reuse) etcd, the Kubernetes components and kubelet, kubectl, kwok, crictl and
    metrics-server from the Go proxy."""
    config = cluster_config()
    started = time.monotonic()
    for each in recipes(config):
        ensure_built(each, force=force)
    console.print(
        f"Binaries ready in {format_duration(time.monotonic() - started)}: {config.bin_dir}"
    )


@app.command()
def up() -> None:
    """Start the cluster and its real node (building the binaries first if needed); a no-op if
    it is running."""
    from retail_tools.cluster import cluster

    config = cluster_config()
    for each in recipes(config):
        ensure_built(each)
    started = time.monotonic()
    names = cluster.up(config, notify=lambda line: console.print(f"  {line}"))
    verb = "started" if names else "already running"
    console.print(
        f"Cluster {verb} ({format_duration(time.monotonic() - started)}). Logs: {config.log_dir}"
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

    config = cluster_config()
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

    config = cluster_config()
    components = cluster.status(config)
    show_processes(components)
    mirror = registry.status(images_config())
    answering = "answering" if mirror.answering else "not running"
    typer.echo(f"Registry (ECR's stand-in endpoint): {mirror.address} {answering}")
    refuse_unhealthy(components)
    nodes = cluster.ready_nodes(config)
    typer.echo(f"Ready nodes: {len(nodes)} ({', '.join(nodes)})")
    typer.echo(f"KUBECONFIG={config.kubeconfig}")


@app.command()
def leftovers() -> None:
    """List what a stopped real node left on this machine (processes, mounts, bridge, iptables
    chains, cgroups, files, changed sysctls); exit 1 if anything."""
    from retail_tools.cluster import cluster
    from retail_tools.cluster.leftovers import leftovers as find_leftovers

    config = cluster_config()
    found = find_leftovers(config, podman_running=cluster.podman_runs_containers())
    for line in found:
        typer.echo(line)
    if found:
        raise click.ClickException(f"{len(found)} leftover(s) of the real node")
    typer.echo("Nothing left by the real node.")


@app.command()
def kubeconfig() -> None:
    """Print the path of the cluster's admin kubeconfig."""
    config = cluster_config()
    if not config.kubeconfig.exists():
        raise click.ClickException("no kubeconfig yet: run `retailctl cluster up` first")
    typer.echo(str(config.kubeconfig))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def kubectl(context: typer.Context) -> None:
    """Run the cluster's own kubectl against it: retailctl cluster kubectl -- get nodes."""
    config = cluster_config()
    if not config.kubectl.binary.exists():
        raise click.ClickException("kubectl is not built yet: run `retailctl cluster build`")
    argv = config.kubectl.argv(*context.args)
    os.execv(argv[0], argv)
