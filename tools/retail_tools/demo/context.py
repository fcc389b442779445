"""What the demo's steps share: the ``Demo`` context and the few helpers every step uses.

``Demo`` carries the environment the commands run in, what was started (to stop it at the
end), and the values one step leaves for the next (the image tag and digest, the model URI,
the predictor's address). Commands are shown as the reader would type them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel

from retail_tools.standin import AwsStandIn

console = Console(highlight=False)


class DemoError(RuntimeError):
    pass


def http(method: str, url: str, body: Any = None, timeout: float = 10) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


def wait(what: str, probe: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    with console.status(f"waiting for {what}…"):
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                result = probe()
                if result:
                    return result
            time.sleep(0.5)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Demo:
    workdir: Path
    retailctl: str = field(default_factory=lambda: str(Path(sys.executable).with_name("retailctl")))
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    cluster_started: bool = False
    aws: AwsStandIn | None = None
    step_number: int = 0
    # Left by one step for the next ones.
    image_tag: str = ""
    good_digest: str = ""
    model_uri: str = ""
    predictor_url: str = ""

    @property
    def stand_in(self) -> AwsStandIn:
        if self.aws is None:
            raise DemoError("the AWS stand-in is not running (its step did not run)")
        return self.aws

    # -- presentation -----------------------------------------------------------------------
    def step(self, title: str, why: str) -> None:
        self.step_number += 1
        console.print()
        console.print(Panel(why, title=f"[bold]Step {self.step_number}. {title}", expand=False))

    def run(
        self, *argv: str, show: bool = True, check: bool = True, stdin: str = "", as_typed: str = ""
    ) -> str:
        """Run a command and show it as the reader would type it (``as_typed``, else argv);
        ``retailctl`` is this installation's."""
        if show:
            console.print(f"[bold cyan]$ {as_typed or ' '.join(argv)}")
        command = [self.retailctl, *argv[1:]] if argv[0] == "retailctl" else list(argv)
        result = subprocess.run(
            command,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        output = (result.stdout + result.stderr).rstrip()
        if show and output:
            console.print(output, markup=False)
        if check and result.returncode != 0:
            last = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
            raise DemoError(f"{as_typed or ' '.join(argv)} failed: {last[0]}")
        return result.stdout

    def kubectl(self, *args: str, show: bool = True, check: bool = True, stdin: str = "") -> str:
        return self.run(
            "retailctl",
            "cluster",
            "kubectl",
            "--",
            *args,
            show=show,
            check=check,
            stdin=stdin,
            as_typed=f"kubectl {' '.join(args)}",
        )

    def background(self, name: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        console.print(f"[bold cyan]$ {' '.join(argv)} &[/]  [dim](log: {log})")
        command = [self.retailctl, *argv[1:]] if argv[0] == "retailctl" else argv
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append((name, process))
        return process
