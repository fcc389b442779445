"""Scan findings and storage usage read from moto's ECR, through the library and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from retail_operator.errors import ImageNotFound
from retail_operator.facts import ScanState
from retail_operator.spec import Severity
from retail_tools.ecr.findings import gate, read_scan, serious, wait_for_scan
from retail_tools.ecr.usage import RepositoryNotFoundError, measure_usage
from retail_tools.standin import AwsStandIn

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

pytestmark = pytest.mark.aws

REPOSITORY = "mlops/retail-api"
RETAILCTL = str(Path(sys.executable).with_name("retailctl"))
REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def ecr(aws_env: AwsStandIn) -> ECRClient:
    client = cast("ECRClient", aws_env.client("ecr"))
    client.create_repository(repositoryName=REPOSITORY)
    client.create_repository(repositoryName="mlops/train-model")
    return client


def finding(name: str, severity: str) -> dict[str, Any]:
    return {
        "name": name,
        "severity": severity,
        "uri": f"https://nvd.nist.gov/vuln/detail/{name}",
        "attributes": [
            {"key": "package_name", "value": "openssl"},
            {"key": "package_version", "value": "3.0.1"},
        ],
    }


def scan_result(tag: str, status: str, findings: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for item in findings:
        counts[item["severity"]] = counts.get(item["severity"], 0) + 1
    return {
        "registryId": "123456789012",
        "repositoryName": REPOSITORY,
        "imageId": {"imageTag": tag},
        "imageScanStatus": {"status": status, "description": f"scan {status.lower()}"},
        "imageScanFindings": {"findings": findings, "findingSeverityCounts": counts},
    }


def retailctl(moto: AwsStandIn, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RETAILCTL, *args],
        env={**os.environ, **moto.env()},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_no_scan_yet_is_a_state_not_an_error(ecr: ECRClient, aws_env: AwsStandIn) -> None:
    digest = aws_env.push_image(REPOSITORY, "v20261129-abc1234", 1000)

    report = read_scan(ecr, REPOSITORY, "v20261129-abc1234")

    assert (report.state, report.digest, report.findings) == (ScanState.MISSING, digest, ())
    assert gate(report, Severity.NONE).reason == "ScanMissing"


def test_findings_report_counts_and_only_serious_findings(
    ecr: ECRClient, aws_env: AwsStandIn
) -> None:
    tag = "dev-abc1234"
    aws_env.push_image(REPOSITORY, tag, 1000)
    ecr.start_image_scan(repositoryName=REPOSITORY, imageId={"imageTag": tag})
    aws_env.queue_scan_result(
        scan_result(
            tag,
            "COMPLETE",
            [
                finding("CVE-2026-0003", "MEDIUM"),
                finding("CVE-2026-0002", "HIGH"),
                finding("CVE-2026-0001", "CRITICAL"),
            ],
        ),
    )

    report = read_scan(ecr, REPOSITORY, tag)

    assert report.state is ScanState.COMPLETE
    assert dict(report.severity_counts) == {"MEDIUM": 1, "HIGH": 1, "CRITICAL": 1}
    assert [(f.severity, f.name, f.package) for f in serious(report)] == [
        ("CRITICAL", "CVE-2026-0001", "openssl 3.0.1"),
        ("HIGH", "CVE-2026-0002", "openssl 3.0.1"),
    ]
    assert len(report.findings) == 3
    assert not gate(report, Severity.CRITICAL).passed
    assert "1 finding(s) at or above CRITICAL" in gate(report, Severity.CRITICAL).message
    assert "2 finding(s) at or above HIGH" in gate(report, Severity.HIGH).message
    assert not gate(report, Severity.MEDIUM).passed
    assert gate(report, Severity.CRITICAL, ["CVE-2026-0001"]).passed


def test_wait_polls_until_the_scan_settles(ecr: ECRClient, aws_env: AwsStandIn) -> None:
    tag = "feature-x-abc1234"
    aws_env.push_image(REPOSITORY, tag, 1000)
    seen: list[str] = []

    def sleep(_seconds: float) -> None:
        # The scan "finishes" while we wait: the next read must see its result.
        ecr.start_image_scan(repositoryName=REPOSITORY, imageId={"imageTag": tag})

    report = wait_for_scan(
        ecr,
        REPOSITORY,
        tag,
        timeout_seconds=60,
        progress=lambda r: seen.append(r.state),
        sleep=sleep,
        clock=lambda: 0.0,
    )

    assert seen == [ScanState.MISSING]
    assert report.state is ScanState.COMPLETE


def test_wait_gives_up_at_the_deadline(ecr: ECRClient, aws_env: AwsStandIn) -> None:
    tag = "feature-y-abc1234"
    aws_env.push_image(REPOSITORY, tag, 1000)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    report = wait_for_scan(
        ecr,
        REPOSITORY,
        tag,
        timeout_seconds=30,
        poll_seconds=10,
        sleep=sleep,
        clock=lambda: now[0],
    )

    assert report.state is ScanState.MISSING
    assert now[0] == 30


def test_missing_image_is_one_clear_error(ecr: ECRClient) -> None:
    with pytest.raises(ImageNotFound, match="mlops/retail-api:nope does not exist in ECR"):
        read_scan(ecr, REPOSITORY, "nope")


def test_usage_counts_sizes_and_prices(ecr: ECRClient, aws_env: AwsStandIn) -> None:
    gib = 1024**3
    aws_env.push_image(REPOSITORY, "v1", 3 * gib)
    aws_env.push_image(REPOSITORY, "v2", 2 * gib)
    aws_env.push_image("mlops/train-model", "v1", gib // 2)

    usages = {u.name: u for u in measure_usage(ecr)}

    assert set(usages) == {REPOSITORY, "mlops/train-model"}
    assert (usages[REPOSITORY].image_count, usages[REPOSITORY].total_bytes) == (2, 5 * gib)
    assert usages[REPOSITORY].monthly_cost == Decimal("0.50")
    assert usages["mlops/train-model"].monthly_cost == Decimal("0.05")
    (only,) = measure_usage(ecr, ["mlops/train-model"])
    assert only.image_count == 1


def test_unknown_repository_is_one_clear_error(ecr: ECRClient) -> None:
    with pytest.raises(RepositoryNotFoundError, match="no repository mlops/absent in ECR"):
        measure_usage(ecr, ["mlops/absent"])


def test_enhanced_scanning_findings_are_read_too(ecr: ECRClient, aws_env: AwsStandIn) -> None:
    tag = "v20261129-e000001"
    aws_env.push_image(REPOSITORY, tag, 1000)
    ecr.start_image_scan(repositoryName=REPOSITORY, imageId={"imageTag": tag})
    result = scan_result(tag, "ACTIVE", [])
    result["imageScanFindings"] = {
        "enhancedFindings": [
            {
                "severity": "CRITICAL",
                "title": "CVE-2026-7777 - zlib",
                "packageVulnerabilityDetails": {
                    "vulnerabilityId": "CVE-2026-7777",
                    "sourceUrl": "https://nvd.nist.gov/vuln/detail/CVE-2026-7777",
                    "vulnerablePackages": [{"name": "zlib", "version": "1.2.13"}],
                },
            }
        ],
        "findingSeverityCounts": {"CRITICAL": 1},
    }
    aws_env.queue_scan_result(result)

    report = read_scan(ecr, REPOSITORY, tag)

    assert report.state is ScanState.COMPLETE  # enhanced scanning's ACTIVE
    assert [(f.name, f.package, f.uri) for f in serious(report)] == [
        ("CVE-2026-7777", "zlib 1.2.13", "https://nvd.nist.gov/vuln/detail/CVE-2026-7777")
    ]
    assert gate(report, Severity.HIGH).reason == "VulnerabilitiesFound"


def test_cli_findings_fails_on_blocking_severity(ecr: ECRClient, aws_env: AwsStandIn) -> None:
    tag = "v20261129-def5678"
    aws_env.push_image(REPOSITORY, tag, 1000)
    ecr.start_image_scan(repositoryName=REPOSITORY, imageId={"imageTag": tag})
    aws_env.queue_scan_result(scan_result(tag, "COMPLETE", [finding("CVE-2026-0009", "HIGH")]))

    lenient = retailctl(
        aws_env,
        "ecr",
        "findings",
        "--repository",
        REPOSITORY,
        "--tag",
        tag,
        "--fail-on",
        "CRITICAL",
        "--json",
    )
    strict = retailctl(
        aws_env, "ecr", "findings", "--repository", REPOSITORY, "--tag", tag, "--fail-on", "HIGH"
    )

    assert lenient.returncode == 0, lenient.stderr
    assert json.loads(lenient.stdout)["findings"][0]["name"] == "CVE-2026-0009"
    assert strict.returncode == 1
    assert "CVE-2026-0009" in strict.stdout
    (error,) = strict.stderr.strip().splitlines()
    assert "VulnerabilitiesFound: 1 finding(s) at or above HIGH" in error
    assert error.endswith("CVE-2026-0009")
    assert "Traceback" not in strict.stderr


def test_cli_findings_refuses_an_unscanned_image_when_gating(
    ecr: ECRClient, aws_env: AwsStandIn
) -> None:
    aws_env.push_image(REPOSITORY, "dev-0000000", 1000)

    result = retailctl(
        aws_env,
        "ecr",
        "findings",
        "--repository",
        REPOSITORY,
        "--tag",
        "dev-0000000",
        "--fail-on",
        "HIGH",
    )

    assert result.returncode == 1
    assert "ScanMissing" in result.stderr


def test_cli_bootstrap_reports_then_says_no_changes(aws_env: AwsStandIn) -> None:
    first = retailctl(aws_env, "ecr", "bootstrap")
    second = retailctl(aws_env, "ecr", "bootstrap", "--config", "deploy/ecr/repositories.yaml")

    assert first.returncode == 0, first.stderr
    assert "mlops/retail-api: created; lifecycle policy set; repository policy set" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "mlops/retail-api: no changes" in second.stdout
    assert "mlops/train-model: no changes" in second.stdout


def test_cli_usage_prints_cost(ecr: ECRClient, aws_env: AwsStandIn) -> None:
    aws_env.push_image(REPOSITORY, "v1", 1024**3)

    result = retailctl(aws_env, "ecr", "usage", "--json")

    assert result.returncode == 0, result.stderr
    rows = {row["repository"]: row for row in json.loads(result.stdout)}
    assert rows[REPOSITORY] == {
        "repository": REPOSITORY,
        "imageCount": 1,
        "totalBytes": 1024**3,
        "monthlyCostUSD": "0.10",
    }


def findings_with(aws_env: AwsStandIn, tag: str, policy: Path) -> Any:
    """``retailctl ecr findings`` of the test repository's ``tag`` with ``--policy``."""
    return retailctl(
        aws_env, "ecr", "findings", "--repository", REPOSITORY, "--tag", tag,
        "--policy", str(policy),
    )  # fmt: skip


def test_cli_findings_shows_what_each_exception_covers_and_until_when(
    ecr: ECRClient, aws_env: AwsStandIn, tmp_path: Path
) -> None:
    tag = "v20261201-exc0001"
    aws_env.push_image(REPOSITORY, tag, 1000)
    ecr.start_image_scan(repositoryName=REPOSITORY, imageId={"imageTag": tag})
    findings = [finding("CVE-2026-0101", "HIGH"), finding("CVE-2026-0102", "CRITICAL")]
    aws_env.queue_scan_result(scan_result(tag, "COMPLETE", findings))
    policy = tmp_path / "retailmodel.yaml"
    policy.write_text(
        "apiVersion: mlops.retail.io/v1alpha1\nkind: RetailModel\nspec:\n  scanPolicy:\n"
        "    blockSeverity: HIGH\n    exceptions:\n"
        "      - {id: CVE-2026-0101, reason: no fix upstream yet,\n"
        "         expires: '2099-01-31T00:00:00Z'}\n"
        "      - {id: CVE-2026-0102, reason: vendor patch due, expires: '2026-01-01T00:00:00Z'}\n"
    )

    result = findings_with(aws_env, tag, policy)

    assert "↳ allowed until 2099-01-31T00:00:00Z: no fix upstream yet" in result.stdout
    assert "↳ exception EXPIRED at 2026-01-01T00:00:00Z: vendor patch due" in result.stdout
    assert result.returncode == 1  # the expired exception no longer covers the CRITICAL one
    assert "CVE-2026-0102" in result.stderr and "expired" in result.stderr


def test_cli_findings_refuses_a_malformed_policy_in_one_line(
    aws_env: AwsStandIn, tmp_path: Path
) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text("exceptions:\n  - {id: CVE-1, reason: x}\n")  # no expires
    result = retailctl(
        aws_env, "ecr", "findings", "--repository", REPOSITORY, "--tag", "any",
        "--policy", str(policy),
    )  # fmt: skip
    assert result.returncode != 0
    assert "scanPolicy.exceptions.0.expires: Field required" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_findings_applies_the_platforms_policy_too(
    ecr: ECRClient, aws_env: AwsStandIn, tmp_path: Path
) -> None:
    """CI and the cluster judge alike: a RetailModel looser than the RetailModelPolicy beside
    it fails the gate, even on a clean scan."""
    tag = "v20261205-pol0001"
    aws_env.push_image(REPOSITORY, tag, 1000)
    ecr.start_image_scan(repositoryName=REPOSITORY, imageId={"imageTag": tag})
    aws_env.queue_scan_result(scan_result(tag, "COMPLETE", []))
    repository = f"123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/{REPOSITORY}"
    files = tmp_path / "retailmodel.yaml"
    files.write_text(
        "apiVersion: mlops.retail.io/v1alpha1\nkind: RetailModel\nmetadata: {name: prices}\n"
        f"spec:\n  image: {{repository: {repository}, tag: {tag}}}\n"
        "  model: {s3Uri: 's3://models/prices/model.ubj'}\n"
        "  scanPolicy: {blockSeverity: NONE}\n"
        "---\n"
        "apiVersion: mlops.retail.io/v1alpha1\nkind: RetailModelPolicy\n"
        "metadata: {name: default}\nspec:\n  scanning: {maxBlockSeverity: HIGH}\n"
    )
    result = findings_with(aws_env, tag, files)
    assert result.returncode == 1
    assert (
        "PolicyViolation: RetailModelPolicy default: scanning.maxBlockSeverity: "
        "scanPolicy.blockSeverity NONE blocks less than HIGH"
    ) in result.stderr
    files.write_text(files.read_text().replace("blockSeverity: NONE", "blockSeverity: HIGH"))
    passed = findings_with(aws_env, tag, files)
    assert passed.returncode == 0, passed.stderr
