"""A local git repository for Argo CD to sync from: a bare repository (what Argo CD reads, as
``file://``) and a working copy where commits are made, as a team's CI or a person would.

``create`` copies this project's own manifests in (``SYNCED_FOLDERS``: what
``deploy/overlays/local`` builds from), so Argo CD syncs the real overlay, not a hand-made copy
of it. The caller adds its own kustomization beside them.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from retail_tools.argocd.stack import REPO_ROOT

SYNCED_FOLDERS = (
    "crds",
    "deploy/base",
    "deploy/predictor",
    "deploy/irsa",
    "deploy/overlays/local",
)


class GitError(RuntimeError):
    """A git command failed; the message names it and git's own words."""


@dataclass(frozen=True)
class GitRepository:
    bare: Path
    work: Path

    @classmethod
    def create(cls, folder: Path, author: str) -> GitRepository:
        """A new repository under ``folder`` (replacing one an earlier run left) holding
        ``SYNCED_FOLDERS``; nothing committed yet."""
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        repo = cls(folder / "retailmodel.git", folder / "work")
        _git("init", "--quiet", "--bare", "-b", "main", str(repo.bare))
        _git("clone", "--quiet", str(repo.bare), str(repo.work))
        repo.git("config", "user.email", f"{author}@retailmodel.invalid")
        repo.git("config", "user.name", author)
        for name in SYNCED_FOLDERS:
            shutil.copytree(REPO_ROOT / name, repo.work / name)
        return repo

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def git(self, *args: str) -> str:
        return _git("-C", str(self.work), *args)

    def commit(self, message: str) -> str:
        """Commit everything and push; returns the new revision."""
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", message)
        return self.push()

    def revert(self) -> str:
        """Revert the last commit and push; returns the new revision."""
        self.git("revert", "--no-edit", "HEAD")
        return self.push()

    def push(self) -> str:
        self.git("push", "--quiet", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD")

    def write_yaml(self, path: str, document: dict[str, Any]) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(document, sort_keys=False))

    def read_yaml(self, path: str) -> dict[str, Any]:
        return dict(yaml.safe_load((self.work / path).read_text()))


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])} failed: {result.stderr.strip()}")
    return result.stdout.strip()
