"""Build Argo CD's multi-call binary from the Go module proxy, once per version.

``go install`` refuses ``github.com/argoproj/argo-cd/v3`` (its go.mod replaces modules), and a
wrapper module would drop those replace directives, so the module is copied out of the module
cache (made writable: the cache is read-only), and ``./cmd`` is built there as the main module,
static (``CGO_ENABLED=0``), with the version ldflags Argo CD's own Makefile sets. The zip ships
a placeholder for the UI, so there is no UI build. The one binary acts as ``argocd`` (the CLI),
``argocd-repo-server`` and ``argocd-application-controller`` by the name it is called with:
those are symlinks beside it. Its Application and AppProject CRDs are copied to ``bin/crds``.

Everything lands in ``bin.partial`` and is renamed to ``bin`` (with a stamp) only when the
build and a ``version --client`` check passed, so a warm run is one stat of the stamp; a file
lock keeps two builds from racing; the log is ``<cache>/argocd-<version>/build.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from retail_tools.argocd.config import COMMANDS, ArgocdConfig
from retail_tools.cluster.build import (
    BuildError,
    ModuleInfo,
    Progress,
    ProgressCallback,
    StepCallback,
    build_once,
)

MODULE = "github.com/argoproj/argo-cd/v3"
STAMP = ".complete.json"
CRD_FILES = ("application-crd.yaml", "appproject-crd.yaml")
T = TypeVar("T")


def is_built(config: ArgocdConfig) -> bool:
    """True when the binary and its command names are present and the build finished."""
    if not (config.bin_dir / STAMP).is_file():
        return False
    return all(os.access(config.binary(command), os.X_OK) for command in COMMANDS)


def build(
    config: ArgocdConfig,
    *,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
    on_step: StepCallback | None = None,
) -> Path:
    """Make sure the binary exists, building it if needed; returns the bin folder."""
    builder = _Builder(config, on_progress or (lambda _: None), on_step or (lambda _s, _t: None))
    build_once(lambda: is_built(config), config.build_dir, builder.run, force=force)
    return config.bin_dir


class _Builder:
    def __init__(
        self, config: ArgocdConfig, on_progress: ProgressCallback, on_step: StepCallback
    ) -> None:
        self.config = config
        self.on_progress = on_progress
        self.on_step = on_step
        self.log_path = config.build_dir / "build.log"
        self.staging = config.build_dir / "bin.partial"
        self.src = config.build_dir / "src"
        self.env = {**os.environ, "CGO_ENABLED": "0"}

    def run(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        with self.log_path.open("w") as log:
            info = self._timed("download", log, self._download)
            self._timed("argocd", log, lambda step, log: self._compile(step, log, info))
            self._timed("verify", log, self._verify)
        (self.staging / STAMP).write_text(
            json.dumps({"version": self.config.version, "built_at": time.time()})
        )
        shutil.rmtree(self.config.bin_dir, ignore_errors=True)
        self.staging.rename(self.config.bin_dir)
        shutil.rmtree(self.src, ignore_errors=True)  # Go's build cache keeps what a rebuild needs

    def _timed(self, step: str, log: IO[str], action: Callable[[str, IO[str]], T]) -> T:
        started = time.monotonic()
        self.on_step(step, None)
        log.write(f"==> {step}\n")
        log.flush()
        result = action(step, log)
        self.on_step(step, time.monotonic() - started)
        return result

    def _download(self, step: str, log: IO[str]) -> ModuleInfo:
        target = f"{MODULE}@{self.config.version}"
        output = self._output(
            step, log, ["mod", "download", "-json", target], self.config.build_dir
        )
        info: ModuleInfo = json.loads(output)
        if info.get("Error"):
            raise BuildError(f"{step}: cannot download {target}: {info['Error']}")
        shutil.rmtree(self.src, ignore_errors=True)
        shutil.copytree(info["Dir"], self.src, symlinks=True)
        for folder, _, files in os.walk(self.src):
            for name in (folder, *(os.path.join(folder, file) for file in files)):
                os.chmod(name, os.stat(name).st_mode | stat.S_IWUSR)
        return info

    def _compile(self, step: str, log: IO[str], info: ModuleInfo) -> None:
        release = json.loads(Path(info["Info"]).read_text()) if info.get("Info") else {}
        package = f"{MODULE}/common"
        values = {
            "version": self.config.version.removeprefix("v"),
            "gitTag": self.config.version,
            "gitCommit": release.get("Origin", {}).get("Hash", ""),
            "gitTreeState": "clean",
            # The release's own date, not today's: the same sources give the same binary.
            "buildDate": release.get("Time", "1970-01-01T00:00:00Z"),
        }
        ldflags = " ".join(["-s", "-w"] + [f"-X {package}.{k}={v}" for k, v in values.items()])
        template = "{{if not .Standard}}{{.ImportPath}}{{end}}"
        listed = self._output(step, log, ["list", "-deps", "-f", template, "./cmd"], self.src)
        dependencies = {line for line in listed.splitlines() if line}
        out = self.staging / "argocd"
        args = ["build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(out), "./cmd"]
        log.write(f"$ go {' '.join(args)}\n")
        log.flush()
        process = subprocess.Popen(
            ["go", *args],
            cwd=self.src,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert process.stdout is not None
        compiled, last = 0, ""
        for line in process.stdout:
            log.write(line)
            last = line.strip() or last
            if line.strip() in dependencies:  # -v names each package as it compiles it
                compiled += 1
                self.on_progress(Progress(step, compiled, len(dependencies)))
        log.flush()
        if process.wait() != 0:
            raise BuildError(f"{step}: `go build` failed ({last}); see {self.log_path}")
        for command in COMMANDS[1:]:
            (self.staging / command).symlink_to("argocd")
        # The CRDs argocd-server's install would apply, from the same sources.
        (self.staging / "crds").mkdir()
        for name in CRD_FILES:
            shutil.copy(self.src / "manifests" / "crds" / name, self.staging / "crds" / name)

    def _verify(self, step: str, log: IO[str]) -> None:
        args = [str(self.staging / "argocd"), "version", "--client", "--short"]
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        output = (result.stdout + result.stderr).strip()
        log.write(f"argocd version --client --short: {output}\n")
        if result.returncode != 0 or self.config.version.removeprefix("v") not in output:
            first = output.splitlines()[0] if output else "nothing"
            raise BuildError(
                f"{step}: argocd reports {first!r}, expected {self.config.version}; "
                f"see {self.log_path}"
            )

    def _output(self, step: str, log: IO[str], args: list[str], cwd: Path) -> str:
        """Run ``go ARGS`` for its standard output (errors go to the log and the message)."""
        log.write(f"$ go {' '.join(args)}\n")
        result = subprocess.run(
            ["go", *args], cwd=cwd, env=self.env, capture_output=True, text=True, check=False
        )
        log.write(result.stderr)
        log.flush()
        if result.returncode != 0:
            error = (result.stderr.strip() or result.stdout.strip()).splitlines()
            detail = error[-1] if error else "no output"
            if result.stdout.startswith("{"):  # `go mod download -json` reports in its JSON
                detail = " ".join(json.loads(result.stdout).get("Error", detail).split())
            raise BuildError(f"{step}: `go {args[0]}` failed ({detail}); see {self.log_path}")
        return result.stdout
