"""What the demo's steps share: the ``Demo`` context, ``Step`` (one titled function of it)
and the few helpers every step uses.

``Demo`` carries the environment the commands run in, what the demo started (to stop it at the
end), the values one step leaves for the next (image tags and digests, the model URI, the
NodePort), and the figures measured on the way (each step's duration, each load's report).
Commands are shown as the reader would type them, and their output as they would see it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from rich.panel import Panel

from retail_tools import terminal
from retail_tools.argocd.config import ArgocdConfig
from retail_tools.argocd.gitrepo import GitRepository
from retail_tools.cluster.config import ClusterConfig
from retail_tools.images.config import ImagesConfig
from retail_tools.load import LoadReport
from retail_tools.onnode import OnNode
from retail_tools.polling import Timeout, wait_until
from retail_tools.settings import Settings, current
from retail_tools.standin import AwsStandIn

# The terminal's width, or a wide one when the demo writes to a log (`make demo > demo.log`).
console = terminal.console(highlight=False)
T = TypeVar("T")

# The names the story uses (those of deploy/samples and deploy/ecr).
NAMESPACE = "retail"
NAME = "price-sensitivity"
BUCKET = "mlops-retail-forecast-models"
MODEL_KEY = "models/retail-price-sensitivity/model.ubj"


class DemoError(RuntimeError):
    pass


def http(method: str, url: str, body: Any = None, timeout: float = 10) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


def wait(what: str, probe: Callable[[], T | None], timeout: float = 240) -> T:
    """Poll ``probe`` until it returns something true; that value. A spinner meanwhile; a probe
    that fails (a command that is not answering yet) counts as not yet."""
    try:
        with console.status(f"waiting for {what}…"):
            return wait_until(probe, timeout=timeout, what=what, interval=0.5, ignore=(Exception,))
    except Timeout:
        raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}") from None


def wait_condition(
    demo: Demo, kind: str, status: str, reason: str, timeout: float
) -> dict[str, Any]:
    """Wait for the RetailModel's condition ``kind`` to read ``status``/``reason`` for its
    current generation; the condition. On a time-out ``kubectl describe`` shows why first."""

    def reached() -> dict[str, Any]:
        found = demo.node.condition(NAMESPACE, NAME, kind)
        return found if (found.get("status"), found.get("reason")) == (status, reason) else {}

    try:
        return dict(wait(f"{kind}={status} {reason}", reached, timeout))
    except DemoError:
        demo.kubectl("describe", "rmodel", NAME, "-n", NAMESPACE, check=False)
        raise


@dataclass(frozen=True)
class Step:
    title: str
    why: str  # shown in the step's panel
    run: Callable[[Demo], None]


@dataclass
class Demo:
    workdir: Path
    retailctl: str = field(default_factory=lambda: str(Path(sys.executable).with_name("retailctl")))
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    settings: Settings = field(default_factory=current)
    cluster_started: bool = False
    registry_started: bool = False
    argocd_started: bool = False
    argocd_application: bool = False  # applied: the teardown deletes it first
    git: GitRepository | None = None  # what Argo CD syncs from
    aws: AwsStandIn | None = None
    on_node: OnNode | None = None
    step_number: int = 0
    # Left by one step for the next ones.
    tags: dict[str, str] = field(default_factory=dict)  # image ("serving") → tag as built
    digests: dict[str, str] = field(default_factory=dict)  # "serving:<tag>" → digest pushed
    model_uri: str = ""
    port: int = 0  # the NodePort on 127.0.0.1 in front of the predictor pods
    applied: list[tuple[str, str]] = field(default_factory=list)  # (kind/name, namespace)
    # Measured on the way, summed up at the end.
    durations: list[tuple[str, float]] = field(default_factory=list)
    loads: dict[str, LoadReport] = field(default_factory=dict)

    @property
    def cluster(self) -> ClusterConfig:
        return ClusterConfig.from_settings(self.settings)

    @property
    def images(self) -> ImagesConfig:
        return ImagesConfig.from_settings(self.settings)

    @property
    def argocd(self) -> ArgocdConfig:
        return ArgocdConfig.from_settings(self.settings)

    @property
    def stand_in(self) -> AwsStandIn:
        if self.aws is None:
            raise DemoError("the AWS stand-in is not running (its step did not run)")
        return self.aws

    @property
    def gitops_repo(self) -> GitRepository:
        if self.git is None:
            raise DemoError("no git repository yet (the Argo CD sync step did not run)")
        return self.git

    @property
    def node(self) -> OnNode:
        if self.on_node is None:
            raise DemoError("the real node is not set up (the AWS stand-in step did not run)")
        return self.on_node

    # -- presentation -----------------------------------------------------------------------
    def step(self, title: str, why: str) -> None:
        self.step_number += 1
        console.print()
        console.print(Panel(why, title=f"[bold]Step {self.step_number}. {title}", expand=False))

    def show(self, text: str) -> None:
        """Command output as it came, never re-wrapped (tables stay tables)."""
        console.print(text, markup=False, soft_wrap=True)

    def run(
        self, *argv: str, show: bool = True, check: bool = True, stdin: str = "", as_typed: str = ""
    ) -> str:
        """Run a command and show it as the reader would type it (``as_typed``, else argv),
        its output line by line as it comes (a cold image build takes minutes); its standard
        output. ``retailctl`` is this installation's."""
        if show:
            console.print(f"[bold cyan]$ {as_typed or shlex.join(argv)}", soft_wrap=True)
        command = [self.retailctl, *argv[1:]] if argv[0] == "retailctl" else list(argv)
        process = subprocess.Popen(
            command,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        errors: list[str] = []
        reader = threading.Thread(
            target=self._collect, args=(process.stderr, errors, show), daemon=True
        )
        reader.start()
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(stdin)
        process.stdin.close()
        output: list[str] = []
        self._collect(process.stdout, output, show)
        reader.join()
        code = process.wait()
        if check and code != 0:
            last = "".join(errors).strip().splitlines()[-1:] or [f"exit {code}"]
            raise DemoError(f"{as_typed or shlex.join(argv)} failed: {last[0]}")
        return "".join(output)

    def _collect(self, stream: IO[str] | None, lines: list[str], show: bool) -> None:
        assert stream is not None
        for line in stream:
            lines.append(line)
            if show:
                self.show(line.rstrip("\n"))

    def kubectl(self, *args: str, show: bool = True, check: bool = True, stdin: str = "") -> str:
        """The cluster's kubectl, shown and streamed as any command the demo runs."""
        argv = self.cluster.kubectl.argv(*args)
        as_typed = f"kubectl {shlex.join(args)}"
        return self.run(*argv, show=show, check=check, stdin=stdin, as_typed=as_typed)

    def measured(self, name: str, report: LoadReport) -> None:
        """Keep a load's report for the summary and show it; any failed request stops the
        demo, since the promise is none."""
        self.loads[name] = report
        console.print(f"[bold]load during {name}:[/] {report.summary()}")
        if report.failed:
            raise DemoError(f"{report.failed} requests failed during {name}: {report.summary()}")
