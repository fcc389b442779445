"""The RetailModel health check judged by Argo CD's own engine, not a Lua lookalike.

Every state of health_cases.py is written to a file and assessed by ``argocd admin settings
resource-overrides health`` with deploy/argocd/argocd-cm-health.yaml as argocd-cm: the
gopher-lua VM, the settings parser and the health code the application controller runs. The
binary comes from ``retailctl argocd build`` (``make unit`` and ``make test`` build it first).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.support.argocd_health import Verdict, argocd_binary, assess
from tests.unit.delivery.health_cases import CASES, Case


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdict]:
    """Every case assessed once, in parallel (each run is a fresh process of the CLI)."""
    argocd = argocd_binary()
    folder = tmp_path_factory.mktemp("retailmodels")
    files = {}
    for case in CASES:
        files[case.id] = folder / f"{case.id}.yaml"
        files[case.id].write_text(yaml.safe_dump(case.obj))
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = pool.map(lambda path: assess(argocd, path), files.values())
        return dict(zip(files, answers, strict=True))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_argo_cd_shows(verdicts: dict[str, Verdict], case: Case) -> None:
    assert verdicts[case.id] == (case.status, case.message)
