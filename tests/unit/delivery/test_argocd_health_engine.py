"""The RetailModel health check judged by Argo CD's own engine, not a Lua lookalike.

Every state of health_cases.py is written to a file and assessed by ``argocd admin settings
resource-overrides health`` with deploy/argocd/argocd-cm-health.yaml as argocd-cm: the
gopher-lua VM, the settings parser and the health code the application controller runs. The
binary comes from ``retailctl argocd build`` (``make unit`` and ``make test`` build it first).
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from retail_tools.argocd.build import is_built
from retail_tools.argocd.config import ArgocdConfig
from retail_tools.settings import current
from tests.unit.delivery.argocd_configmap import CONFIGMAP_FILE
from tests.unit.delivery.health_cases import CASES, Case

Verdict = tuple[str, str]


def assess(argocd: Path, resource: Path) -> Verdict:
    """What Argo CD prints for ``resource``: ``STATUS: …`` and ``MESSAGE: …`` lines."""
    result = subprocess.run(
        [
            str(argocd),
            "admin", "settings", "resource-overrides", "health", str(resource),
            "--argocd-cm-path", str(CONFIGMAP_FILE),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert "STATUS" in fields, f"no health from Argo CD: {result.stdout!r}"
    return fields["STATUS"], fields.get("MESSAGE", "")


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdict]:
    """Every case assessed once, in parallel (each run is a fresh process of the CLI)."""
    config = ArgocdConfig.from_settings(current())
    assert is_built(config), "Argo CD is not built: run `retailctl argocd build`"
    folder = tmp_path_factory.mktemp("retailmodels")
    files = {}
    for case in CASES:
        files[case.id] = folder / f"{case.id}.yaml"
        files[case.id].write_text(yaml.safe_dump(case.obj))
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = pool.map(lambda path: assess(config.binary(), path), files.values())
        return dict(zip(files, answers, strict=True))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_argo_cd_shows(verdicts: dict[str, Verdict], case: Case) -> None:
    assert verdicts[case.id] == (case.status, case.message)
