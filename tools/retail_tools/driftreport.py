"""A RetailModel's drift report for people: its Drift condition and the last window's figures
(``status.drift``, written by the operator's ``drift.watch``) as a summary and a table.

Pure: a RetailModel body in, lines and a rich ``Table`` out; ``retailctl model drift`` reads
the body and prints them. The predictions come first, then the input features from the
highest PSI down, each with the bin that moved most and its share in the hold-out and now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table


def _condition(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = body.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c.get("type") == "Drift"), None)


def summary(body: Mapping[str, Any]) -> list[str]:
    """What the Drift condition says, the window and the thresholds, in a few lines."""
    meta, spec = body.get("metadata", {}), body.get("spec", {})
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    policy = spec.get("monitoring", {}).get("drift")
    if policy is None or policy.get("enabled") is False:
        return [f"{name}: drift is not watched (spec.monitoring.drift is not set)"]
    lines = [f"RetailModel {name}"]
    condition = _condition(body)
    if condition is None:
        lines.append("Drift:     not reported yet")
    else:
        lines.append(f"Drift:     {condition.get('status')} {condition.get('reason')}")
        lines.append(f"           {condition.get('message', '')}")
    lines.append(
        f"Policy:    windows of {policy.get('windowSeconds')} s, at least "
        f"{policy.get('minRows')} rows, max PSI {policy.get('maxPredictionPSI')} (predictions) "
        f"and {policy.get('maxFeaturePSI')} (each feature)"
    )
    window = body.get("status", {}).get("drift")
    if window:
        lines.append(
            f"Window:    {window.get('windowStart')} to {window.get('windowEnd')}, "
            f"{window.get('rows', 0):,} rows from {window.get('pods', 0)} pod(s) against "
            f"{window.get('referenceRows', 0):,} hold-out rows, model "
            f"{window.get('modelVersion') or '?'}"
        )
    return lines


def table(body: Mapping[str, Any]) -> Table | None:
    """The last judged window's scores, or None when no window has been judged."""
    window = body.get("status", {}).get("drift")
    if not window or not window.get("features"):
        return None
    shown = Table(
        "input", "PSI", "p-value", "moved most", "hold-out", "now", "verdict", title="Last window"
    )
    scores = [window["predictions"]] if window.get("predictions") else []
    for score in [*scores, *window["features"]]:
        shown.add_row(
            score.get("name", ""),
            f"{score.get('psi', 0.0):.3f}",
            f"{score.get('pValue', 1.0):.2g}",
            score.get("bin", ""),
            f"{score.get('referenceShare', 0.0):.1%}",
            f"{score.get('liveShare', 0.0):.1%}",
            "[bold red]drift[/]" if score.get("drifted") else "ok",
        )
    return shown
