"""Background processes that outlive the command that started them, tracked by pid files: the
control plane's components, the local registry and Argo CD's processes all run this way.

Each one runs in its own session (so its own process group), with output appended to a
log file, and its pid written to ``<run dir>/<name>.pid``. A pid is only trusted while
``/proc/<pid>/exe`` still is the binary we started, so a recycled pid is never signalled.
Stopping signals the whole process group: TERM, then KILL if it lingers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from retail_tools.polling import Timeout, wait_until

STOP_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class Status:
    """One tracked process as ``status`` commands show it."""

    name: str
    pid: int | None
    port: int | None  # the loopback port it listens on, if any
    healthy: bool
    log: Path


def start(name: str, argv: tuple[str, ...], run_dir: Path, log_path: Path) -> int:
    """Start ``argv`` detached from this process and remember its pid under ``name``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n==> {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting {name}\n".encode())
        log.flush()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=run_dir,
        )
    _pid_file(run_dir, name).write_text(f"{process.pid}\n")
    return process.pid


def running_pid(name: str, run_dir: Path, binary: str) -> int | None:
    """The pid of ``name`` if it is alive and still runs ``binary``, else None."""
    try:
        pid = int(_pid_file(run_dir, name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if runs(pid, binary) else None


def command_line(pid: int) -> tuple[str, ...]:
    """The argv ``pid`` runs with (empty once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ()
    return tuple(raw.decode(errors="replace").split("\0")[:-1])


def exit_status(pid: int) -> int | None:
    """Reap ``pid`` if it is our own exited child; its exit code, or None if unknown."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if reaped else None


def stop(name: str, run_dir: Path, binary: str) -> bool:
    """Stop ``name``'s whole process group; True if something was running."""
    pid = running_pid(name, run_dir, binary)
    if pid is not None:
        _signal_group(pid, signal.SIGTERM)
        try:
            wait_until(lambda: not _group_alive(pid), timeout=STOP_GRACE_SECONDS, interval=0.1)
        except Timeout:
            _signal_group(pid, signal.SIGKILL)
            while _group_alive(pid):
                time.sleep(0.05)
    _pid_file(run_dir, name).unlink(missing_ok=True)
    return pid is not None


def port_listening(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def last_line(log: Path) -> str:
    """The last thing a process wrote to its log: what a failed start is told by."""
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "no output"


def _pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def runs(pid: int, binary: str) -> bool:
    """True if ``pid`` is alive and runs ``binary`` (or a since-rebuilt copy of it)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")  # unreadable for zombies: not running
    except OSError:
        return False
    # A rebuilt binary leaves the running process pointing at "<path> (deleted)".
    return exe.removesuffix(" (deleted)") == os.path.realpath(binary)


def alive(pid: int) -> bool:
    """True while a process with ``pid`` exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """True while any process of the group is still running (zombies reaped if ours)."""
    exit_status(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Only zombies left (their parent has not reaped them yet) count as gone.
    return any(_runs_in_group(pid, pgid) for pid in _pids())


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _runs_in_group(pid: int, pgid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    state, group = fields[0], int(fields[2])
    return group == pgid and state not in ("Z", "X")
