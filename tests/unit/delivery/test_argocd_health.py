"""The Argo CD health check for RetailModel, run in Lua 5.1 (Argo CD's gopher-lua dialect).

Every state of health_cases.py, judged by health.lua in lupa: fast and without Argo CD's
binary (test_argocd_health_engine.py judges the same table with Argo CD's own engine). The last
test keeps argocd-cm-health.yaml in step with health.lua.
"""

from __future__ import annotations

from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml

from tests.unit.delivery.argocd_configmap import CONFIGMAP_FILE, HEALTH_KEY, LUA_FILE, render
from tests.unit.delivery.health_cases import CASES, Case

SCRIPT = LUA_FILE.read_text(encoding="utf-8")


def health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(SCRIPT)
    return str(result["status"]), str(result["message"])


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_health(case: Case) -> None:
    assert health(case.obj) == (case.status, case.message)


def test_configmap_embeds_exactly_the_lua_file() -> None:
    text = CONFIGMAP_FILE.read_text(encoding="utf-8")
    configmap = yaml.safe_load(text)
    assert configmap["metadata"]["name"] == "argocd-cm"
    assert configmap["data"][HEALTH_KEY] == SCRIPT
    assert text == render(SCRIPT), "regenerate: python -m tests.unit.delivery.argocd_configmap"
