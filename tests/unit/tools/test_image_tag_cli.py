"""``retailctl image tag`` as CI calls it: the tag on stdout, or one error line and exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RETAILCTL = str(Path(sys.executable).with_name("retailctl"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RETAILCTL, "image", "tag", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_prints_the_release_tag_for_the_given_date() -> None:
    result = run("--branch", "main", "--sha", "3f9c2b7e1d4a", "--date", "2026-01-02")
    assert (result.returncode, result.stdout) == (0, "v20260102-3f9c2b7\n")


def test_bad_sha_is_one_error_line_and_exit_1() -> None:
    result = run("--branch", "feature/x", "--sha", "not-a-sha")
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "not 7 to 64 hexadecimal characters" in line
