"""The demo's drift part: the stable model watched against its own hold-out, first on baskets
like the ones it learned from (NoDrift), then on baskets all from hypermarkets (FeatureDrift
naming STORE_FORMAT), each under load through the NodePort, with ``retailctl model drift``'s
report and Argo CD's health, which stays Healthy with the drift in its message.

``STEPS`` go after the canary (the stable model is then the promoted one, trained by
``retailctl train`` and so carrying its drift reference).
"""

from __future__ import annotations

import time
from typing import Any

from retail_tools import candidates
from retail_tools.argocd import apps
from retail_tools.demo import gitops
from retail_tools.demo.context import NAME, NAMESPACE, Demo, Step, console, wait, wait_condition
from retail_tools.load import Load

WINDOW = 30  # seconds: the CRD's shortest, so the demo sees a verdict or two quickly
DRIFT = {"drift": {"windowSeconds": WINDOW, "minRows": 200}}
VERDICT_SECONDS = 3 * WINDOW + 30
# Thousands of distinct baskets like the training data's (a few hundred sent over and over
# would differ from the population by chance in the fifty departments).
LIKE_TRAINING = 5_000


def drift_watched(demo: Demo) -> None:
    baskets = candidates.traffic(LIKE_TRAINING)
    with Load(demo.port, workers=2, max_seconds=VERDICT_SECONDS + 60, baskets=baskets) as load:
        gitops.commit_spec(demo, "Watch the model for drift", lambda s: s.update(monitoring=DRIFT))
        condition = wait_drift(demo, "False", "NoDrift")
    demo.measured("drift watched, baskets like the training's", load.report)
    console.print(f"no drift: {condition['message']}")
    demo.run("retailctl", "model", "drift", NAME, "-n", NAMESPACE)


def drift_found(demo: Demo) -> None:
    baskets = [{**b, "STORE_FORMAT": "XLS"} for b in candidates.traffic(LIKE_TRAINING)]
    console.print("[dim]every basket from now on comes from a hypermarket (STORE_FORMAT XLS)")
    with Load(demo.port, workers=2, max_seconds=VERDICT_SECONDS + 60, baskets=baskets) as load:
        started = time.monotonic()
        condition = wait_drift(demo, "True", "FeatureDrift")
        seconds = time.monotonic() - started
    demo.durations.append(("drift: shift → FeatureDrift", seconds))
    demo.measured("the shifted store mix", load.report)
    console.print(f"FeatureDrift {seconds:.1f}s after the shift: {condition['message']}")
    demo.run("retailctl", "model", "drift", NAME, "-n", NAMESPACE)
    demo.kubectl(
        "get", "events", "-n", NAMESPACE, "--field-selector",
        f"involvedObject.name={NAME},reason=FeatureDrift",
    )  # fmt: skip
    # Argo CD: Healthy, with the drift in the RetailModel's health message. A status change
    # that keeps a resource Healthy does not make Argo CD v3 compare again (it ignores
    # resource updates that keep the health status), so the new message shows at its next
    # periodic compare (every 2-3 min) or, as here, on a refresh.
    wait(
        "Argo CD to show the drift as a message on a Healthy app", lambda: healthy_with_drift(demo)
    )
    gitops.show_application(demo)


def healthy_with_drift(demo: Demo) -> bool:
    view = gitops.application_view(demo)
    if view is None:
        return False
    if view.health == "Healthy" and any("FeatureDrift" in r.message for r in view.resources):
        return True
    if not view.refresh_pending:
        apps.refresh(demo.argocd, gitops.APPLICATION)
    return False


def wait_drift(demo: Demo, status: str, reason: str) -> dict[str, Any]:
    return wait_condition(demo, "Drift", status, reason, VERDICT_SECONDS)


STEPS: tuple[Step, ...] = (
    Step(
        "Drift watched",
        "spec.monitoring.drift: every 30 s window, the operator compares the classes the "
        "stable pods predict and the inputs they see, bin by bin, with the hold-out the model "
        "file carries (PSI, with a chi-squared test so a few rows never alarm). Baskets like "
        "the training's: NoDrift.",
        drift_watched,
    ),
    Step(
        "A model goes stale, and says so",
        "Every basket now comes from a hypermarket: within a window the Drift condition turns "
        "FeatureDrift naming STORE_FORMAT, with a Warning Event. Nothing that runs changes, "
        "and Argo CD stays Healthy with the drift in its message: a stale model still serves.",
        drift_found,
    ),
)
