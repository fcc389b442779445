"""Go programs built from the module proxy into a cache folder, once per version: the one way the
control plane (``cluster.build``) and Argo CD (``argocd.build``) are built.

A ``Recipe`` names a cache folder and the steps that fill it; ``build`` runs them: under a file
lock in the folder (so ``make`` and a test session never build at once; one that waited for the
other's build does not build again), each step timed and logged to ``<folder>/build.log``, every
binary written to ``bin.partial``, which is renamed to ``bin`` with a stamp only once every step
passed. A warm run is one look at the stamp. Each step gets a ``Build``: the go commands steps
are made of, with their output in the log, compiled packages reported as progress (``go build
-v`` names each package as it compiles it; cached ones never show up) and a failure as one
``BuildError`` line naming the step and the log. Go's own build cache makes a rebuild after a
version bump or a wiped cache fast.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypedDict

STAMP = ".complete.json"
# ``go list`` prints the packages a build compiles, leaving out the standard library's.
NON_STANDARD_PACKAGES = "{{if not .Standard}}{{.ImportPath}}{{end}}"


class BuildError(RuntimeError):
    """A build step failed; the message names the step and the log to read."""


class ModuleOrigin(TypedDict, total=False):
    Hash: str  # the git commit the version was tagged on


class ModuleInfo(TypedDict, total=False):
    """The fields of ``go mod download -json`` this module reads."""

    Info: str  # path of the proxy's .info file: the version's Time and Origin
    Dir: str
    GoMod: str
    Error: str


class VersionInfo(TypedDict, total=False):
    Time: str
    Origin: ModuleOrigin


@dataclass(frozen=True)
class Progress:
    """What a build step reports while it runs: packages compiled so far, out of at most N."""

    step: str
    compiled: int
    total: int | None


ProgressCallback = Callable[[Progress], None]
# Called with (step, None) when a step starts and (step, seconds) when it has finished.
StepCallback = Callable[[str, float | None], None]


@dataclass(frozen=True)
class Recipe:
    """One cached build: what it is called, where it goes, its steps in order, what its stamp
    records, and how to tell it is complete."""

    title: str
    folder: Path
    steps: Sequence[tuple[str, Callable[[Build, str], None]]]
    stamp: Mapping[str, object]
    is_built: Callable[[], bool]
    env: Mapping[str, str] = field(default_factory=dict)  # over ours, for every go command

    @property
    def log_path(self) -> Path:
        return self.folder / "build.log"

    @property
    def bin_dir(self) -> Path:
        return self.folder / "bin"

    @property
    def staging(self) -> Path:
        return self.folder / "bin.partial"

    @property
    def src(self) -> Path:
        """Where steps write wrapper modules or copy sources to."""
        return self.folder / "src"


def build(
    recipe: Recipe,
    *,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
    on_step: StepCallback | None = None,
) -> Path:
    """Make sure the recipe's binaries exist, building them if needed; its bin folder."""
    if recipe.is_built() and not force:
        return recipe.bin_dir
    if shutil.which("go") is None:
        raise BuildError("the Go toolchain is not installed (need `go` on PATH to build)")
    recipe.folder.mkdir(parents=True, exist_ok=True)
    with (recipe.folder / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if force or not recipe.is_built():  # else another process built it while we waited
            _run(recipe, on_progress or (lambda _: None), on_step or (lambda _s, _t: None))
    return recipe.bin_dir


def stamp_of(bin_dir: Path) -> dict[str, object]:
    """What a finished build's stamp records ({} when there is none)."""
    stamp = bin_dir / STAMP
    return dict(json.loads(stamp.read_text())) if stamp.is_file() else {}


def _run(recipe: Recipe, on_progress: ProgressCallback, on_step: StepCallback) -> None:
    shutil.rmtree(recipe.staging, ignore_errors=True)
    recipe.staging.mkdir(parents=True)
    with recipe.log_path.open("w") as log:
        build = Build(recipe, log, on_progress)
        for step, action in recipe.steps:
            started = time.monotonic()
            on_step(step, None)
            log.write(f"==> {step}\n")
            log.flush()
            action(build, step)
            on_step(step, time.monotonic() - started)
    stamp = {**recipe.stamp, "built_at": time.time()}
    (recipe.staging / STAMP).write_text(json.dumps(stamp))
    shutil.rmtree(recipe.bin_dir, ignore_errors=True)
    recipe.staging.rename(recipe.bin_dir)


class Build:
    """One run of a recipe, as its steps see it: the go commands they are made of."""

    def __init__(self, recipe: Recipe, log: IO[str], on_progress: ProgressCallback) -> None:
        self.recipe = recipe
        self.log = log
        self.on_progress = on_progress
        self.env = {**os.environ, **recipe.env}

    @property
    def staging(self) -> Path:
        return self.recipe.staging

    def download(self, step: str, module: str) -> ModuleInfo:
        """``go mod download`` of ``module@version``: where its sources and facts are."""
        args = ["mod", "download", "-json", module]
        info: ModuleInfo = json.loads(self.output(step, args, self.recipe.folder))
        if info.get("Error"):
            raise BuildError(f"{step}: cannot download {module}: {info['Error']}")
        return info

    def install(self, step: str, target: str, *flags: str) -> None:
        """``go install FLAGS TARGET`` straight into the staging bin folder."""
        args = ["install", "-v", *flags, target]
        env = {"GOBIN": str(self.staging)}
        self.go(step, args, self.recipe.folder, env=env, progress=True)

    def compile(
        self, step: str, module: Path, packages: Sequence[str], ldflags: str, out: str
    ) -> None:
        """``go build -trimpath`` of ``packages`` in ``module`` to ``out``, progress counted
        against the packages it depends on."""
        listed = self.output(
            step, ["list", "-deps", "-f", NON_STANDARD_PACKAGES, *packages], module
        )
        dependencies = {line for line in listed.splitlines() if line}
        args = ["build", "-v", "-trimpath", "-ldflags", ldflags, "-o", out, *packages]
        self.go(step, args, module, progress=True, counted=dependencies)

    def verify(self, step: str, binary: str, args: Sequence[str], version: str) -> None:
        """``binary ARGS`` must succeed and name ``version``."""
        result = subprocess.run(
            [str(self.staging / binary), *args], capture_output=True, text=True, check=False
        )
        output = (result.stdout + result.stderr).strip()
        self.log.write(f"{binary} {' '.join(args)}: {output}\n")
        if result.returncode != 0 or version not in output:
            first = output.splitlines()[0] if output else "nothing"
            raise BuildError(
                f"{step}: {binary} reports {first!r}, expected {version}; "
                f"see {self.recipe.log_path}"
            )

    def go(
        self,
        step: str,
        args: list[str],
        cwd: Path,
        env: Mapping[str, str] | None = None,
        *,
        progress: bool = False,
        counted: set[str] | None = None,
    ) -> None:
        """Run ``go ARGS``, streaming its output to the log; with ``progress``, count compiled
        packages: with ``counted``, only lines naming one of those packages, without, every
        line but go's own messages (``go: downloading …``)."""
        self.log.write(f"$ go {' '.join(args)}\n")
        self.log.flush()
        process = subprocess.Popen(
            ["go", *args],
            cwd=cwd,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdout is not None
        total = len(counted) if counted is not None else None
        compiled = 0
        last = ""
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            self.log.write(line)
            name = line.strip()
            last = name or last
            is_package = name in counted if counted is not None else not name.startswith("go: ")
            if progress and name and is_package:
                compiled += 1
                self.on_progress(Progress(step, compiled, total))
        self.log.flush()
        if process.wait() != 0:
            raise BuildError(f"{step}: `go {args[0]}` failed ({last}); see {self.recipe.log_path}")

    def output(self, step: str, args: list[str], cwd: Path) -> str:
        """Run ``go ARGS`` for its standard output (errors go to the log and the message)."""
        self.log.write(f"$ go {' '.join(args)}\n")
        result = subprocess.run(
            ["go", *args], cwd=cwd, env=self.env, capture_output=True, text=True, check=False
        )
        self.log.write(result.stderr)
        self.log.flush()
        if result.returncode != 0:
            error = (result.stderr.strip() or result.stdout.strip()).splitlines()
            detail = error[-1] if error else "no output"
            if result.stdout.startswith("{"):  # `go mod download -json` reports in its JSON
                detail = " ".join(json.loads(result.stdout).get("Error", detail).split())
            raise BuildError(
                f"{step}: `go {args[0]}` failed ({detail}); see {self.recipe.log_path}"
            )
        return result.stdout


def release_facts(info: ModuleInfo) -> tuple[str, str]:
    """The commit a downloaded version was tagged on (empty when the proxy did not say) and the
    release's own date, so the same sources give the same binary whenever they are built."""
    release: VersionInfo = json.loads(Path(info["Info"]).read_text()) if info.get("Info") else {}
    return release.get("Origin", {}).get("Hash", ""), release.get("Time", "1970-01-01T00:00:00Z")
