"""Renders deploy/argocd/argocd-cm-health.yaml from deploy/argocd/health.lua (one source of truth).

``python -m tests.unit.delivery.argocd_configmap`` rewrites the YAML after the Lua changes;
test_argocd_health.py fails while the two disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

ARGOCD_DIR = Path(__file__).resolve().parents[3] / "deploy" / "argocd"
LUA_FILE = ARGOCD_DIR / "health.lua"
CONFIGMAP_FILE = ARGOCD_DIR / "argocd-cm-health.yaml"
HEALTH_KEY = "resource.customizations.health.mlops.retail.io_RetailModel"

HEADER = """\
# Generated from health.lua by `python -m tests.unit.delivery.argocd_configmap`: edit the Lua,
# not this file (a test fails while they differ). Merge into Argo CD's argocd-cm, e.g.
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd-cm-health.yaml
# Annotation-based tracking: Argo CD claims only objects carrying its tracking annotation, so the
# operator's children (ownerReferences, own labels, never app.kubernetes.io/instance) are shown
# under their RetailModel and never pruned or reported out of sync.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
  application.resourceTrackingMethod: annotation
"""


def render(lua: str) -> str:
    body = "".join(f"    {line}".rstrip() + "\n" for line in lua.splitlines())
    return f"{HEADER}  {HEALTH_KEY}: |\n{body}"


if __name__ == "__main__":
    CONFIGMAP_FILE.write_text(render(LUA_FILE.read_text(encoding="utf-8")), encoding="utf-8")
    sys.stdout.write(f"wrote {CONFIGMAP_FILE}\n")
