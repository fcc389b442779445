"""Build the control plane's binaries from the Go module proxy, once per toolchain version.

Three steps, each logged to ``<toolchain dir>/build.log``:

* **kubernetes**: ``go install`` refuses ``k8s.io/kubernetes`` (its go.mod replaces the staging
  modules with local folders), so a small wrapper module requires it and replaces every staging
  module with its published ``v0.Y.Z`` twin; one ``go build`` then links kube-apiserver,
  kube-controller-manager, kube-scheduler, kubectl, and the real node's kubelet and kube-proxy,
  with the version ldflags the Kubernetes release scripts set, so ``--version`` tells the truth.
* **etcd**: a wrapper module around ``go.etcd.io/etcd/server/v3`` (its main package).
* **kwok**: a plain ``go install``; its standard node and pod stages are copied from the same
  module version next to the binaries (the kwok binary ships none built in).
* **crictl**: a plain ``go install`` of cri-tools; ``down`` stops the real node's pods with it.

Binaries land in ``bin.partial`` and are renamed to ``bin`` (with a stamp) only when every step
and a ``--version`` check passed, so a warm run is one stat of the stamp. A file lock keeps two
builds (``make`` and a test session, say) from racing. Go's own build cache makes a rebuild
after a version bump or a wiped cache fast.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypedDict

from retail_tools.cluster.config import ClusterConfig, Toolchain

KUBERNETES_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "kube-proxy",
)
BINARIES = (*KUBERNETES_COMMANDS, "etcd", "kwok", "crictl")
# kwok's "fast" stages: nodes become Ready (and keep a lease), pods become Ready, Job pods
# complete, deleted pods go away.
KWOK_STAGE_FILES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)
STAMP = ".complete.json"


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


def is_built(config: ClusterConfig) -> bool:
    """True when every binary of this toolchain is present and the build finished."""
    stamp = config.bin_dir / STAMP
    if not stamp.is_file() or not config.kwok_stages.is_file():
        return False
    # The stamp names every version the bin folder was built from (the folder's own name
    # leaves crictl's out).
    if json.loads(stamp.read_text()).get("crictl") != config.toolchain.crictl:
        return False
    return all(os.access(config.binary(name), os.X_OK) for name in BINARIES)


def build(
    config: ClusterConfig,
    *,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
    on_step: StepCallback | None = None,
) -> Path:
    """Make sure the binaries exist, building them if needed; returns the bin folder."""
    builder = _Builder(config, on_progress or (lambda _: None), on_step or (lambda _s, _t: None))
    build_once(lambda: is_built(config), config.toolchain_dir, builder.run, force=force)
    return config.bin_dir


def build_once(
    built: Callable[[], bool], folder: Path, make: Callable[[], None], *, force: bool
) -> None:
    """Run ``make`` unless ``built()`` (or ``force``): with Go on PATH, one process at a time
    (a lock file in ``folder``); a process that waited for another's build does not build
    again."""
    if built() and not force:
        return
    if shutil.which("go") is None:
        raise BuildError("the Go toolchain is not installed (need `go` on PATH to build)")
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if built() and not force:  # another process built it while we waited
            return
        make()


class _Builder:
    def __init__(
        self, config: ClusterConfig, on_progress: ProgressCallback, on_step: StepCallback
    ) -> None:
        self.config = config
        self.toolchain: Toolchain = config.toolchain
        self.on_progress = on_progress
        self.on_step = on_step
        self.log_path = config.toolchain_dir / "build.log"
        self.staging = config.toolchain_dir / "bin.partial"
        self.src = config.toolchain_dir / "src"

    def run(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        with self.log_path.open("w") as log:
            self._timed("kubernetes", log, self._kubernetes)
            self._timed("etcd", log, self._etcd)
            self._timed("kwok", log, self._kwok)
            self._timed("crictl", log, self._crictl)
            self._timed("verify", log, self._verify)
        stamp = {
            "toolchain": self.toolchain.key,
            "crictl": self.toolchain.crictl,
            "built_at": time.time(),
        }
        (self.staging / STAMP).write_text(json.dumps(stamp))
        shutil.rmtree(self.config.bin_dir, ignore_errors=True)
        self.staging.rename(self.config.bin_dir)

    def _timed(self, step: str, log: IO[str], action: Callable[[str, IO[str]], None]) -> None:
        started = time.monotonic()
        self.on_step(step, None)
        log.write(f"==> {step}\n")
        log.flush()
        action(step, log)
        self.on_step(step, time.monotonic() - started)

    # -- steps -------------------------------------------------------------------------

    def _kubernetes(self, step: str, log: IO[str]) -> None:
        version = self.toolchain.kubernetes
        info = self._download(step, log, f"k8s.io/kubernetes@{version}")
        upstream = Path(info["GoMod"]).read_text()
        staging_modules = re.findall(r"^\s*(k8s\.io/\S+)\s*=>\s*\./staging/", upstream, re.M)
        go_directive = re.search(r"^go\s+(\S+)", upstream, re.M)
        lines = [
            "module retailmodel.local/k8sbuild",
            "",
            f"go {go_directive.group(1) if go_directive else '1.26.0'}",
            "",
            f"require k8s.io/kubernetes {version}",
            "",
            *(f"replace {m} => {m} {self.toolchain.staging_version}" for m in staging_modules),
        ]
        packages = [f"k8s.io/kubernetes/cmd/{name}" for name in KUBERNETES_COMMANDS]
        module = self._wrapper_module(step, log, "kubernetes", "\n".join(lines), packages)
        major, minor, _ = version.removeprefix("v").split(".")
        release: VersionInfo = json.loads(Path(info["Info"]).read_text())
        values = {
            "gitVersion": version,
            "gitMajor": major,
            "gitMinor": minor,
            # Known when the proxy reported the tag's commit; empty rather than a placeholder.
            "gitCommit": release.get("Origin", {}).get("Hash", ""),
            "gitTreeState": "clean",
            # The release's own date, not today's: the same sources give the same binary.
            "buildDate": release.get("Time", "1970-01-01T00:00:00Z"),
        }
        ldflags = ["-s", "-w"] + [
            f"-X k8s.io/{package}.{key}={value}"
            for package in ("component-base/version", "client-go/pkg/version")
            for key, value in values.items()
        ]
        self._go_build(step, log, module, packages, " ".join(ldflags), f"{self.staging}/")

    def _etcd(self, step: str, log: IO[str]) -> None:
        lines = [
            "module retailmodel.local/etcdbuild",
            "",
            "go 1.26.0",
            "",
            f"require go.etcd.io/etcd/server/v3 {self.toolchain.etcd}",
        ]
        packages = ["go.etcd.io/etcd/server/v3"]
        module = self._wrapper_module(step, log, "etcd", "\n".join(lines), packages)
        self._go_build(step, log, module, packages, "-s -w", str(self.staging / "etcd"))

    def _kwok(self, step: str, log: IO[str]) -> None:
        self._install(step, log, f"sigs.k8s.io/kwok/cmd/kwok@{self.toolchain.kwok}")
        info = self._download(step, log, f"sigs.k8s.io/kwok@{self.toolchain.kwok}")
        stages = [(Path(info["Dir"]) / name).read_text() for name in KWOK_STAGE_FILES]
        partial = self.config.kwok_stages.with_suffix(".partial")
        partial.write_text("\n---\n".join(stage.strip() for stage in stages) + "\n")
        partial.rename(self.config.kwok_stages)

    def _crictl(self, step: str, log: IO[str]) -> None:
        # cri-tools' release builds stamp the version; `go install` alone says "unknown".
        version = f"-X sigs.k8s.io/cri-tools/pkg/version.Version={self.toolchain.crictl}"
        target = f"sigs.k8s.io/cri-tools/cmd/crictl@{self.toolchain.crictl}"
        self._install(step, log, target, "-ldflags", version)

    def _verify(self, step: str, log: IO[str]) -> None:
        expected = {
            "kube-apiserver": (["--version"], self.toolchain.kubernetes),
            "kube-controller-manager": (["--version"], self.toolchain.kubernetes),
            "kube-scheduler": (["--version"], self.toolchain.kubernetes),
            "kubectl": (["version", "--client"], self.toolchain.kubernetes),
            "kubelet": (["--version"], self.toolchain.kubernetes),
            "kube-proxy": (["--version"], self.toolchain.kubernetes),
            "etcd": (["--version"], self.toolchain.etcd.removeprefix("v")),
            "kwok": (["--version"], self.toolchain.kwok),
            "crictl": (["--version"], self.toolchain.crictl),
        }
        for name, (args, version) in expected.items():
            result = subprocess.run(
                [str(self.staging / name), *args], capture_output=True, text=True, check=False
            )
            output = (result.stdout + result.stderr).strip()
            log.write(f"{name} {' '.join(args)}: {output}\n")
            if result.returncode != 0 or version not in output:
                raise BuildError(
                    f"{name} reports {output.splitlines()[0] if output else 'nothing'!r}, "
                    f"expected {version}; see {self.log_path}"
                )

    # -- go plumbing -------------------------------------------------------------------

    def _install(self, step: str, log: IO[str], target: str, *flags: str) -> None:
        """``go install FLAGS TARGET`` straight into the staging bin folder."""
        env = {**os.environ, "GOBIN": str(self.staging)}
        install = ["install", "-v", *flags, target]
        self._go(step, log, install, cwd=self.config.toolchain_dir, env=env, progress=True)

    def _download(self, step: str, log: IO[str], module: str) -> ModuleInfo:
        args = ["mod", "download", "-json", module]
        info: ModuleInfo = json.loads(self._go_output(step, log, args, self.config.toolchain_dir))
        if info.get("Error"):
            raise BuildError(f"{step}: cannot download {module}: {info['Error']}")
        return info

    def _wrapper_module(
        self, step: str, log: IO[str], name: str, go_mod: str, packages: list[str]
    ) -> Path:
        module = self.src / name
        module.mkdir(parents=True, exist_ok=True)
        (module / "go.mod").write_text(go_mod + "\n")
        imports = "\n".join(f'\t_ "{package}"' for package in packages)
        (module / "tools.go").write_text(
            f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"
        )
        self._go(step, log, ["mod", "tidy"], module)
        return module

    def _go_build(
        self, step: str, log: IO[str], module: Path, packages: list[str], ldflags: str, out: str
    ) -> None:
        template = "{{if not .Standard}}{{.ImportPath}}{{end}}"
        listed = self._go_output(step, log, ["list", "-deps", "-f", template, *packages], module)
        dependencies = {line for line in listed.splitlines() if line}
        self._go(
            step,
            log,
            ["build", "-v", "-trimpath", "-ldflags", ldflags, "-o", out, *packages],
            module,
            progress=True,
            counted=dependencies,
        )

    def _go(
        self,
        step: str,
        log: IO[str],
        args: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        *,
        progress: bool = False,
        counted: set[str] | None = None,
    ) -> None:
        """Run ``go ARGS``, streaming its output to the log; with ``progress``, count compiled
        packages (``-v`` prints each as it compiles it; cached ones never show up).

        With ``counted``, only lines naming one of those packages count; without, every line
        but go's own messages (``go: downloading …``).
        """
        log.write(f"$ go {' '.join(args)}\n")
        log.flush()
        process = subprocess.Popen(
            ["go", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert process.stdout is not None
        total = len(counted) if counted is not None else None
        compiled = 0
        last = ""
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            log.write(line)
            name = line.strip()
            last = name or last
            is_package = name in counted if counted is not None else not name.startswith("go: ")
            if progress and name and is_package:
                compiled += 1
                self.on_progress(Progress(step, compiled, total))
        log.flush()
        if process.wait() != 0:
            raise BuildError(f"{step}: `go {args[0]}` failed ({last}); see {self.log_path}")

    def _go_output(self, step: str, log: IO[str], args: list[str], cwd: Path) -> str:
        """Run ``go ARGS`` for its standard output (errors go to the log and the message)."""
        log.write(f"$ go {' '.join(args)}\n")
        result = subprocess.run(["go", *args], cwd=cwd, capture_output=True, text=True)
        log.write(result.stderr)
        log.flush()
        if result.returncode != 0:
            error = (result.stderr.strip() or result.stdout.strip()).splitlines()
            detail = error[-1] if error else "no output"
            raise BuildError(f"{step}: `go {args[0]}` failed ({detail}); see {self.log_path}")
        return result.stdout
