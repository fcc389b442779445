"""What every ``retailctl`` command group shares: the settings, the consoles, how a Go build
shows its progress, and the table of a stack's processes.

The settings are read on a command's first use of them (or of a config made from them), not
when the command groups are mounted, so ``retailctl --help`` does not pay for pydantic.
Progress and tables go through ``retail_tools.terminal`` consoles: the terminal's width, or a
wide one in a log.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click
from rich.console import Console

from retail_tools import terminal
from retail_tools.argocd.config import ArgocdConfig
from retail_tools.cluster.config import ClusterConfig
from retail_tools.images.config import ImagesConfig

if TYPE_CHECKING:
    from retail_tools.gobuild import Progress, Recipe
    from retail_tools.processes import Status
    from retail_tools.settings import Settings

HEARTBEAT_SECONDS = 30.0
# Progress, notes and errors: standard output stays for what scripts read.
console = terminal.console(stderr=True)


def settings() -> Settings:
    from retail_tools.settings import current

    return current()


def cluster_config() -> ClusterConfig:
    return ClusterConfig.from_settings(settings())


def images_config() -> ImagesConfig:
    return ImagesConfig.from_settings(settings())


def argocd_config() -> ArgocdConfig:
    return ArgocdConfig.from_settings(settings())


def output_console() -> Console:
    """A console for tables on standard output."""
    return terminal.console()


def show_processes(statuses: Iterable[Status]) -> None:
    """A table of processes, their ports and health on standard output."""
    from rich.table import Table

    table = Table("component", "pid", "port", "health", "log")
    for item in statuses:
        health = "healthy" if item.healthy else ("unhealthy" if item.pid else "not running")
        port = str(item.port) if item.port is not None else "-"
        table.add_row(item.name, str(item.pid or "-"), port, health, str(item.log))
    output_console().print(table)


def refuse_unhealthy(statuses: Iterable[Status]) -> None:
    if unhealthy := [item.name for item in statuses if not item.healthy]:
        raise click.ClickException(f"not running or unhealthy: {', '.join(unhealthy)}")


def format_duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{seconds:.1f}s"


def ensure_built(recipe: Recipe, *, force: bool = False) -> None:
    """Build ``recipe`` unless it is built (or ``force``), with a progress bar per step
    (packages compiled, out of at most N) and its time. In a log, where bars do not redraw,
    each step's start and end and a heartbeat every ``HEARTBEAT_SECONDS`` are lines instead."""
    from retail_tools import gobuild

    if recipe.is_built() and not force:
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as Bars

    console.print(f"Building {recipe.title} (log: {recipe.log_path})")
    started = time.monotonic()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn())
    with Bars(*columns, MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bars:
        tasks: dict[str, TaskID] = {}
        last_heartbeat = time.monotonic()

        def on_step(step: str, elapsed: float | None) -> None:
            if elapsed is None:
                tasks[step] = bars.add_task(step, total=None)
                if not console.is_terminal:
                    console.print(f"==> {step}")
                return
            done = bars.tasks[tasks[step]].completed or 1
            bars.update(tasks[step], total=done, completed=done)
            bars.update(tasks[step], description=f"{step} ✓ {format_duration(elapsed)}")
            if not console.is_terminal:
                console.print(f"    {step} done in {format_duration(elapsed)}")

        def on_progress(update: Progress) -> None:
            nonlocal last_heartbeat
            bars.update(tasks[update.step], completed=update.compiled, total=update.total)
            if not console.is_terminal and time.monotonic() - last_heartbeat > HEARTBEAT_SECONDS:
                last_heartbeat = time.monotonic()
                of = f" of at most {update.total}" if update.total else ""
                console.print(f"    {update.step}: {update.compiled}{of} packages compiled")

        gobuild.build(recipe, force=force, on_progress=on_progress, on_step=on_step)
    console.print(f"Built in {format_duration(time.monotonic() - started)}: {recipe.bin_dir}")
