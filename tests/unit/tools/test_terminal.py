"""Output that reads well in a log: wide when not on a terminal, unless COLUMNS says."""

from __future__ import annotations

import subprocess
import sys

import pytest

from retail_tools.terminal import LOG_WIDTH, console

LOG = "/root/.cache/retailmodel/" + "cluster/" * 5 + "logs/kube-controller-manager.log"
TABLE = f"""
from rich.table import Table
from retail_tools.terminal import console
table = Table("component", "pid", "port", "health", "log")
table.add_row("kube-controller-manager", "4242", "16446", "healthy", {LOG!r})
console().print(table)
"""


def test_a_console_writing_to_a_pipe_is_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert console().width == console(stderr=True).width == LOG_WIDTH


def test_columns_wins_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert console().width == 200


def test_a_table_written_to_a_file_keeps_each_row_whole_on_one_line() -> None:
    env = {"PATH": "/usr/bin:/bin"}  # no COLUMNS, no terminal
    result = subprocess.run(
        [sys.executable, "-c", TABLE], capture_output=True, text=True, env=env, check=True
    )
    (row,) = [line for line in result.stdout.splitlines() if "4242" in line]
    assert LOG in row
