"""Build Argo CD's multi-call binary from the Go module proxy, once per version.

The recipe ``retail_tools.gobuild`` runs. ``go install`` refuses
``github.com/argoproj/argo-cd/v3`` (its go.mod replaces modules), and a wrapper module would drop
those replace directives, so the module is copied out of the module cache (made writable: the
cache is read-only), and ``./cmd`` is built there as the main module, static
(``CGO_ENABLED=0``), with the version ldflags Argo CD's own Makefile sets. The zip ships a
placeholder for the UI, so there is no UI build. The one binary acts as ``argocd`` (the CLI),
``argocd-repo-server`` and ``argocd-application-controller`` by the name it is called with:
those are symlinks beside it. Its Application and AppProject CRDs are copied to ``bin/crds``.
The build ends with a ``version --client`` check; the log is
``<cache>/argocd-<version>/build.log``.
"""

from __future__ import annotations

import os
import shutil
import stat
from functools import partial
from pathlib import Path

from retail_tools import gobuild
from retail_tools.argocd.config import COMMANDS, ArgocdConfig
from retail_tools.gobuild import Build, Recipe

MODULE = "github.com/argoproj/argo-cd/v3"
CRD_FILES = ("application-crd.yaml", "appproject-crd.yaml")


def is_built(config: ArgocdConfig) -> bool:
    """True when the binary and its command names are present and the build finished."""
    if not gobuild.stamp_of(config.bin_dir):
        return False
    return all(os.access(config.binary(command), os.X_OK) for command in COMMANDS)


def recipe(config: ArgocdConfig) -> Recipe:
    return Recipe(
        title=f"Argo CD {config.version}",
        folder=config.build_dir,
        steps=(
            ("download", partial(_download, config.version)),
            ("argocd", partial(_compile, config.version)),
            ("verify", partial(_verify, config.version)),
        ),
        stamp={"version": config.version},
        is_built=lambda: is_built(config),
        env={"CGO_ENABLED": "0"},
    )


def build(config: ArgocdConfig) -> Path:
    """Make sure the binary exists, building it (quietly) if needed; returns the bin folder.
    ``retailctl`` builds ``recipe(config)`` itself, to show its progress."""
    return gobuild.build(recipe(config))


def _download(version: str, build: Build, step: str) -> None:
    info = build.download(step, f"{MODULE}@{version}")
    src = build.recipe.src
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(info["Dir"], src, symlinks=True)
    for folder, _, files in os.walk(src):
        for name in (folder, *(os.path.join(folder, file) for file in files)):
            os.chmod(name, os.stat(name).st_mode | stat.S_IWUSR)


def _compile(version: str, build: Build, step: str) -> None:
    src = build.recipe.src
    # Asked again rather than passed on: the module cache answers at once.
    commit, date = gobuild.release_facts(build.download(step, f"{MODULE}@{version}"))
    package = f"{MODULE}/common"
    values = {
        "version": version.removeprefix("v"),
        "gitTag": version,
        "gitCommit": commit,
        "gitTreeState": "clean",
        "buildDate": date,
    }
    ldflags = " ".join(["-s", "-w"] + [f"-X {package}.{k}={v}" for k, v in values.items()])
    build.compile(step, src, ["./cmd"], ldflags, str(build.staging / "argocd"))
    for command in COMMANDS[1:]:
        (build.staging / command).symlink_to("argocd")
    # The CRDs argocd-server's install would apply, from the same sources.
    (build.staging / "crds").mkdir()
    for name in CRD_FILES:
        shutil.copy(src / "manifests" / "crds" / name, build.staging / "crds" / name)
    shutil.rmtree(src, ignore_errors=True)  # Go's build cache keeps what a rebuild needs


def _verify(version: str, build: Build, step: str) -> None:
    build.verify(step, "argocd", ["version", "--client", "--short"], version.removeprefix("v"))
