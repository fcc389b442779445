"""No credential leaves the operator: it runs with planted, distinctive AWS credentials
(``tests.support.aws``), goes through a rollout and through every AWS failure it reports, and
then nothing it wrote (its log, RetailModel status, Events, the objects it renders) contains
them. (The predictor's outputs: ``tests/integration/serving/test_security.py``.)"""

from __future__ import annotations

import json

import pytest
from tests.integration.operator.conftest import BUCKET, Scenario
from tests.support.aws import ACCESS_KEY, SECRET_KEY
from tests.support.faults import FaultProxy, ecr_error, s3_error

pytestmark = [pytest.mark.cluster, pytest.mark.aws]


def test_no_credential_in_log_status_events_or_rendered_objects(
    scenario: Scenario, faults: FaultProxy
) -> None:
    assert scenario.operator.env["AWS_ACCESS_KEY_ID"] == ACCESS_KEY
    assert scenario.operator.env["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY
    scenario.image("v1")
    scenario.apply(scenario.manifest("prices", "v1", scenario.model()))
    scenario.wait_condition("prices", "Ready", "True")

    denied_model = scenario.model("models/locked.ubj")
    faults.inject(s3_error("HEAD", f"/{BUCKET}/models/locked.ubj", "AccessDenied", 403))
    scenario.apply(scenario.manifest("locked", "v1", denied_model))
    scenario.wait_condition("locked", "ModelAvailable", "False", "AccessDenied")

    scenario.image("v2")
    faults.inject(ecr_error("DescribeImages", "AccessDeniedException"))
    scenario.apply(scenario.manifest("prices", "v2", scenario.model()))
    scenario.wait_condition("prices", "ImageScanPassed", "False", "AccessDenied")
    faults.clear()

    scenario.apply(scenario.manifest("missing", "v1", f"s3://{BUCKET}/models/none.ubj"))
    scenario.wait_condition("missing", "ModelAvailable", "False", "ModelNotFound")
    reported = {
        ("prices", "AccessDenied"),
        ("locked", "AccessDenied"),
        ("missing", "ModelNotFound"),
    }
    scenario.wait_for(
        "a Warning Event with the reason of each failure",
        lambda: (
            reported
            <= {
                (event["involvedObject"]["name"], event["reason"])
                for event in scenario.cluster.get_json("events", "-n", scenario.namespace)["items"]
                if event["type"] == "Warning"
            }
        ),
    )

    namespace = ("-n", scenario.namespace)
    outputs = {
        "operator log": scenario.operator.logs(),
        **{
            kind: json.dumps(scenario.cluster.get_json(kind, *namespace))
            for kind in ("retailmodels", "events", "deployments", "configmaps", "services")
        },
    }
    assert "AccessDenied" in outputs["retailmodels"]  # the failures were reported ...
    for name, text in outputs.items():
        for secret in (ACCESS_KEY, SECRET_KEY, "Credential=", "Signature="):
            assert secret not in text, f"{secret!r} appears in the {name}"  # ... without these
