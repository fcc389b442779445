"""Build the control plane's binaries from the Go module proxy, once per toolchain version.

The recipe ``retail_tools.gobuild`` runs, in four steps, each logged to
``<toolchain dir>/build.log``:

* **kubernetes**: ``go install`` refuses ``k8s.io/kubernetes`` (its go.mod replaces the staging
  modules with local folders), so a small wrapper module requires it and replaces every staging
  module with its published ``v0.Y.Z`` twin; one ``go build`` then links kube-apiserver,
  kube-controller-manager, kube-scheduler, kubectl, and the real node's kubelet and kube-proxy,
  with the version ldflags the Kubernetes release scripts set, so ``--version`` tells the truth.
* **etcd**: a wrapper module around ``go.etcd.io/etcd/server/v3`` (its main package).
* **kwok**: a plain ``go install``; its standard node and pod stages are copied from the same
  module version next to the binaries (the kwok binary ships none built in).
* **crictl**: a plain ``go install`` of cri-tools; ``down`` stops the real node's pods with it.

Then every binary's ``--version`` is checked.

metrics-server (the resource metrics API the autoscaler and ``kubectl top`` read) is a recipe of
its own, cached by its version under ``<cache>/metrics-server-<version>``: a plain ``go install``
with the version ldflags its Makefile sets (it reports client-go's version variables), then
its ``--version`` checked. ``recipes`` are both, in the order ``retailctl cluster build`` runs
them.
"""

from __future__ import annotations

import os
import re
from functools import partial
from pathlib import Path

from retail_tools import gobuild
from retail_tools.cluster.config import ClusterConfig, Toolchain
from retail_tools.gobuild import Build, BuildError, Recipe

__all__ = ["BuildError", "build", "is_built", "recipe", "recipes"]

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


METRICS_SERVER_MODULE = "sigs.k8s.io/metrics-server"


def is_built(config: ClusterConfig) -> bool:
    """True when every binary of this toolchain, metrics-server's too, is present and built."""
    return _control_plane_built(config) and _metrics_server_built(config)


def _control_plane_built(config: ClusterConfig) -> bool:
    stamp = gobuild.stamp_of(config.bin_dir)
    if not stamp or not config.kwok_stages.is_file():
        return False
    # The stamp names every version the bin folder was built from (the folder's own name
    # leaves crictl's out).
    if stamp.get("crictl") != config.toolchain.crictl:
        return False
    return all(os.access(config.binary(name), os.X_OK) for name in BINARIES)


def _metrics_server_built(config: ClusterConfig) -> bool:
    binary = config.metrics_server_binary
    stamp = gobuild.stamp_of(binary.parent)
    return stamp.get("version") == config.toolchain.metrics_server and os.access(binary, os.X_OK)


def recipes(config: ClusterConfig) -> tuple[Recipe, Recipe]:
    """The control plane's recipe and metrics-server's, in build order."""
    return recipe(config), metrics_server_recipe(config)


def recipe(config: ClusterConfig) -> Recipe:
    toolchain = config.toolchain
    return Recipe(
        title=f"the control plane {toolchain.key}",
        folder=config.toolchain_dir,
        steps=(
            ("kubernetes", partial(_kubernetes, toolchain)),
            ("etcd", partial(_etcd, toolchain)),
            ("kwok", partial(_kwok, config)),
            ("crictl", partial(_crictl, toolchain)),
            ("verify", partial(_verify, toolchain)),
        ),
        stamp={"toolchain": toolchain.key, "crictl": toolchain.crictl},
        is_built=lambda: _control_plane_built(config),
    )


def metrics_server_recipe(config: ClusterConfig) -> Recipe:
    version = config.toolchain.metrics_server
    return Recipe(
        title=f"metrics-server {version}",
        folder=config.metrics_server_dir,
        steps=(
            ("metrics-server", partial(_metrics_server, version)),
            ("verify", partial(_verify_metrics_server, version)),
        ),
        stamp={"version": version},
        is_built=lambda: _metrics_server_built(config),
    )


def build(config: ClusterConfig) -> Path:
    """Make sure every binary exists, building (quietly) what is missing; returns the control
    plane's bin folder. ``retailctl`` builds ``recipes(config)`` itself, to show progress."""
    for each in recipes(config):
        gobuild.build(each)
    return config.bin_dir


def _kubernetes(toolchain: Toolchain, build: Build, step: str) -> None:
    version = toolchain.kubernetes
    info = build.download(step, f"k8s.io/kubernetes@{version}")
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
        *(f"replace {m} => {m} {toolchain.staging_version}" for m in staging_modules),
    ]
    packages = [f"k8s.io/kubernetes/cmd/{name}" for name in KUBERNETES_COMMANDS]
    module = _wrapper_module(build, step, "kubernetes", "\n".join(lines), packages)
    major, minor, _ = version.removeprefix("v").split(".")
    commit, date = gobuild.release_facts(info)
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": commit,
        "gitTreeState": "clean",
        "buildDate": date,
    }
    ldflags = ["-s", "-w"] + [
        f"-X k8s.io/{package}.{key}={value}"
        for package in ("component-base/version", "client-go/pkg/version")
        for key, value in values.items()
    ]
    build.compile(step, module, packages, " ".join(ldflags), f"{build.staging}/")


def _etcd(toolchain: Toolchain, build: Build, step: str) -> None:
    lines = [
        "module retailmodel.local/etcdbuild",
        "",
        "go 1.26.0",
        "",
        f"require go.etcd.io/etcd/server/v3 {toolchain.etcd}",
    ]
    packages = ["go.etcd.io/etcd/server/v3"]
    module = _wrapper_module(build, step, "etcd", "\n".join(lines), packages)
    build.compile(step, module, packages, "-s -w", str(build.staging / "etcd"))


def _kwok(config: ClusterConfig, build: Build, step: str) -> None:
    kwok = config.toolchain.kwok
    build.install(step, f"sigs.k8s.io/kwok/cmd/kwok@{kwok}")
    info = build.download(step, f"sigs.k8s.io/kwok@{kwok}")
    stages = [(Path(info["Dir"]) / name).read_text() for name in KWOK_STAGE_FILES]
    partial_file = config.kwok_stages.with_suffix(".partial")
    partial_file.write_text("\n---\n".join(stage.strip() for stage in stages) + "\n")
    partial_file.rename(config.kwok_stages)


def _crictl(toolchain: Toolchain, build: Build, step: str) -> None:
    # cri-tools' release builds stamp the version; `go install` alone says "unknown".
    version = f"-X sigs.k8s.io/cri-tools/pkg/version.Version={toolchain.crictl}"
    build.install(step, f"sigs.k8s.io/cri-tools/cmd/crictl@{toolchain.crictl}", "-ldflags", version)


def _metrics_server(version: str, build: Build, step: str) -> None:
    commit, date = gobuild.release_facts(build.download(step, f"{METRICS_SERVER_MODULE}@{version}"))
    # Its Makefile's ldflags: it reports client-go's version variables. No -trimpath, so a
    # plain `go install` of the same version has already filled Go's build cache.
    package = "k8s.io/client-go/pkg/version"
    values = {"gitVersion": version, "gitCommit": commit, "buildDate": date}
    ldflags = " ".join(["-s", "-w"] + [f"-X {package}.{k}={v}" for k, v in values.items()])
    target = f"{METRICS_SERVER_MODULE}/cmd/metrics-server@{version}"
    build.install(step, target, "-ldflags", ldflags)


def _verify_metrics_server(version: str, build: Build, step: str) -> None:
    build.verify(step, "metrics-server", ["--version"], version)


def _verify(toolchain: Toolchain, build: Build, step: str) -> None:
    for name in KUBERNETES_COMMANDS:
        args = ["version", "--client"] if name == "kubectl" else ["--version"]
        build.verify(step, name, args, toolchain.kubernetes)
    build.verify(step, "etcd", ["--version"], toolchain.etcd.removeprefix("v"))
    build.verify(step, "kwok", ["--version"], toolchain.kwok)
    build.verify(step, "crictl", ["--version"], toolchain.crictl)


def _wrapper_module(build: Build, step: str, name: str, go_mod: str, packages: list[str]) -> Path:
    """A module of our own that requires what ``packages`` come from (``go install`` refuses
    modules with replace directives)."""
    module = build.recipe.src / name
    module.mkdir(parents=True, exist_ok=True)
    (module / "go.mod").write_text(go_mod + "\n")
    imports = "\n".join(f'\t_ "{package}"' for package in packages)
    (module / "tools.go").write_text(
        f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"
    )
    build.go(step, ["mod", "tidy"], module)
    return module
