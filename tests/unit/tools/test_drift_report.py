"""``retailctl model drift``'s rendering: a RetailModel's Drift condition and last window as
lines and a table a person can read."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from retail_tools import driftreport

POLICY = {"windowSeconds": 60, "minRows": 200, "maxPredictionPSI": 0.25, "maxFeaturePSI": 0.25}


def body(status: dict[str, Any] | None = None, **drift: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "prices", "namespace": "shop"},
        "spec": {"monitoring": {"drift": {**POLICY, **drift}}},
        "status": status or {},
    }


def score(name: str, psi: float, drifted: bool, moved: str, before: float, now: float) -> Any:
    return {
        "name": name,
        "psi": psi,
        "pValue": 1e-30 if drifted else 0.4,
        "drifted": drifted,
        "bin": moved,
        "referenceShare": before,
        "liveShare": now,
    }


JUDGED = {
    "conditions": [
        {
            "type": "Drift",
            "status": "True",
            "reason": "FeatureDrift",
            "message": "inputs drifted: STORE_FORMAT PSI 3.10 (XLS 15% → 100%, p 0)",
        }
    ],
    "drift": {
        "windowStart": "2026-12-05T19:00:00Z",
        "windowEnd": "2026-12-05T19:01:00Z",
        "modelVersion": "s1-n10000-abcd1234",
        "rows": 4321,
        "referenceRows": 2000,
        "pods": 2,
        "predictions": score("predictions", 0.41, True, "High", 0.3, 0.55),
        "features": [
            score("STORE_FORMAT", 3.1, True, "XLS", 0.15, 1.0),
            score("SPEND", 0.02, False, "<=4.6", 0.1, 0.12),
        ],
    },
}


def rendered(document: dict[str, Any]) -> str:
    console = Console(width=140, record=True)
    for line in driftreport.summary(document):
        console.print(line, markup=False)
    shown = driftreport.table(document)
    if shown is not None:
        console.print(shown)
    return console.export_text()


def test_a_judged_window_reads_as_a_table_with_the_drifted_feature_marked() -> None:
    text = rendered(body(JUDGED))
    assert "Drift:     True FeatureDrift" in text
    assert "4,321 rows from 2 pod(s) against 2,000 hold-out rows" in text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "XLS" in rows["STORE_FORMAT"] and "100.0%" in rows["STORE_FORMAT"]
    assert "drift" in rows["STORE_FORMAT"].split("│")[-2]
    assert rows["SPEND"].split("│")[-2].strip() == "ok"
    names = [key for key in rows if key not in ("input",)]
    assert names == ["predictions", "STORE_FORMAT", "SPEND"]


def test_before_a_window_is_judged_or_when_not_watched_it_says_so() -> None:
    waiting = body({"conditions": [{**JUDGED["conditions"][0], "status": "Unknown"}]})
    assert driftreport.table(waiting) is None
    unwatched = {"metadata": {"name": "prices", "namespace": "shop"}, "spec": {}}
    assert driftreport.summary(unwatched) == [
        "shop/prices: drift is not watched (spec.monitoring.drift is not set)"
    ]
    assert "not watched" in driftreport.summary(body(enabled=False))[0]
