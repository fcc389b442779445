"""Process-group tracking and the build's failure report, with stand-in programs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from retail_tools import processes
from retail_tools.cluster import build
from retail_tools.cluster.config import ClusterConfig, Ports


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_stop_ends_the_whole_process_group_and_forgets_the_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell = "/bin/sh"
    # The shell and its child ignore TERM (inherited), so only a group-wide KILL ends both.
    argv = (shell, "-c", "trap '' TERM; sleep 300 & wait")
    pid = processes.start("stubborn", argv, tmp_path / "run", tmp_path / "logs" / "s.log")
    monkeypatch.setattr(processes, "STOP_GRACE_SECONDS", 0.5)
    assert processes.running_pid("stubborn", tmp_path / "run", shell) == pid
    assert processes.running_pid("stubborn", tmp_path / "run", "/bin/true") is None

    assert processes.stop("stubborn", tmp_path / "run", shell) is True

    assert _group_members(pid) == []
    assert processes.running_pid("stubborn", tmp_path / "run", shell) is None
    assert processes.stop("stubborn", tmp_path / "run", shell) is False


def test_a_failing_go_build_is_one_line_naming_the_step_and_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_go = tmp_path / "bin" / "go"
    fake_go.parent.mkdir()
    fake_go.write_text("#!/bin/sh\necho 'go: module lookup disabled by GOPROXY=off' >&2\nexit 1\n")
    fake_go.chmod(fake_go.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake_go.parent}{os.pathsep}{os.environ['PATH']}")
    config = ClusterConfig(
        cache_dir=tmp_path / "cache", cluster_dir=tmp_path / "c", ports=Ports(30000)
    )

    with pytest.raises(build.BuildError) as failure:
        build.build(config)

    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("kubernetes:")
    assert "GOPROXY=off" in message
    assert str(config.toolchain_dir / "build.log") in message
    assert not build.is_built(config)
