"""The peers RetailModel is measured against, each in its own virtualenv outside the repo.

``ensure_venv`` creates ``<cache>/bench/venvs/<name>`` with ``python3 -m venv`` and installs
the pinned packages with pip, once (a marker file records what was installed). The peers are
never part of the project's lock: they are what a user would otherwise pick, installed the
way the user would.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.common import BENCH_CACHE, step


@dataclass(frozen=True)
class Peer:
    name: str
    packages: tuple[str, ...]

    @property
    def venv(self) -> Path:
        return BENCH_CACHE / "venvs" / self.name

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


# uvloop 0.22+ raises in asyncio.get_event_loop() without a running loop, which
# MLServer 1.7.1's inference workers call at start: pin the last uvloop it works with.
MLSERVER = Peer("mlserver", ("mlserver==1.7.1", "mlserver-xgboost==1.7.1", "uvloop<0.22"))
KSERVE = Peer("kserve", ("kserve==0.21.0", "xgboost"))
PEERS = (MLSERVER, KSERVE)


def ensure_venv(peer: Peer) -> Path:
    """The peer's venv, created and installed on first use; returns its bin folder."""
    marker = peer.venv / ".installed"
    wanted = "\n".join(peer.packages)
    if marker.exists() and marker.read_text() == wanted:
        return peer.bin
    step(f"creating the {peer.name} venv at {peer.venv} ({', '.join(peer.packages)})")
    subprocess.run(["python3", "-m", "venv", str(peer.venv)], check=True)
    pip = [str(peer.bin / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *peer.packages], check=True)
    marker.write_text(wanted)
    return peer.bin


if __name__ == "__main__":
    for each in PEERS:
        step(f"{each.name}: {ensure_venv(each)}")
