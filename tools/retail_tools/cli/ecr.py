"""``retailctl ecr …``: ECR as code, scan findings and storage usage.

Thin: parse options, build boto3 clients from the default credential chain (IRSA, OIDC in CI,
or ``AWS_ENDPOINT_URL`` pointing at moto locally), call the modules beside this one, print.
boto3 is imported inside the commands so ``retailctl --help`` stays fast.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import click
import typer

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

    from retail_operator.facts import Finding, ScanReport
    from retail_operator.spec import ScanPolicy

DEFAULT_CONFIG = Path("deploy/ecr/repositories.yaml")

ecr_app = typer.Typer(help="ECR as code: bootstrap repositories, read scan findings, usage.")


def _ecr_client() -> ECRClient:
    from retail_operator.aws import clients

    return clients.ecr()


def _account_id() -> str:
    from retail_operator.aws import clients

    return str(clients.client("sts").get_caller_identity()["Account"])


@ecr_app.command()
def bootstrap(
    config: Annotated[
        Path, typer.Option("--config", help="Repositories file.", dir_okay=False)
    ] = DEFAULT_CONFIG,
) -> None:
    """Create or correct the ECR repositories described in CONFIG (idempotent)."""
    from retail_tools.ecr.bootstrap import bootstrap as apply_config
    from retail_tools.ecr.config import load_config

    registry = load_config(config)
    account_id = _account_id()
    typer.echo(f"bootstrapping {len(registry.repositories)} repositories in account {account_id}")
    reports = apply_config(
        _ecr_client(), registry, account_id, progress=lambda line: typer.echo(f"  {line}")
    )
    for report in reports:
        done = (["created"] if report.created else []) + list(report.changes)
        typer.echo(f"{report.name}: {'; '.join(done) if done else 'no changes'}")
        for problem in report.problems:
            typer.echo(f"{report.name}: PROBLEM: {problem}", err=True)
    problems = sum(len(report.problems) for report in reports)
    if problems:
        raise click.ClickException(f"{problems} setting(s) could not be corrected; see above")


@ecr_app.command()
def findings(
    repository: Annotated[str, typer.Option(help="Repository name, e.g. mlops/retail-api.")],
    tag: Annotated[str, typer.Option(help="Image tag.")],
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for a missing or running scan.", min=0)
    ] = 0,
    fail_on: Annotated[
        str | None,
        typer.Option(
            help="Exit non-zero unless the scan completed with no finding at or above this "
            "severity: CRITICAL, HIGH, MEDIUM, LOW, … (the operator's scanPolicy rule; NONE "
            "only requires a completed scan).",
        ),
    ] = None,
    ignore_cve: Annotated[
        list[str] | None, typer.Option(help="A finding that never fails (repeatable).")
    ] = None,
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="A RetailModel manifest (or a scanPolicy YAML), with any RetailModelPolicy "
            "documents beside it: show which findings its exceptions cover and until when, and "
            "gate with its policy within the platform's (a spec outside it fails).",
            dir_okay=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Scan status, severity counts and the HIGH/CRITICAL findings of REPOSITORY:TAG."""
    from retail_operator.errors import OperatorError
    from retail_operator.spec import Severity
    from retail_tools.ecr.findings import gate, load_policy, wait_for_scan

    try:
        threshold = Severity(fail_on.upper()) if fail_on is not None else None
    except ValueError:
        choices = ", ".join(Severity)
        raise typer.BadParameter(f"use one of {choices}", param_hint="--fail-on") from None
    try:
        policies = load_policy(policy_file) if policy_file is not None else None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--policy") from None
    policy = policies.scan if policies is not None else None
    if threshold is None and policy is not None:
        threshold = policy.block_severity
    try:
        report = wait_for_scan(
            _ecr_client(),
            repository,
            tag,
            timeout_seconds=wait,
            progress=lambda r: typer.echo(
                f"scan of {repository}:{tag}: {r.state}; waiting", err=True
            ),
        )
    except OperatorError as error:
        raise click.ClickException(str(error)) from None
    image = f"{repository}:{tag}"
    typer.echo(
        json.dumps(_report_json(repository, tag, report, policy), indent=2)
        if as_json
        else _report_text(image, report, policy)
    )
    broken = policies.violations(datetime.now(UTC)) if policies is not None else []
    if broken:
        raise click.ClickException(
            f"{repository}:{tag}: PolicyViolation: " + "; ".join(map(str, broken))
        )
    if threshold is None:
        return
    decision = gate(report, threshold, ignore_cve or (), policy)
    if not decision.passed:
        raise click.ClickException(f"{repository}:{tag}: {decision.reason}: {decision.message}")


@ecr_app.command()
def usage(
    repository: Annotated[
        list[str] | None, typer.Option(help="Repository to measure (repeatable); default all.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Image count, total size and estimated monthly storage cost per repository."""
    from retail_tools.ecr.usage import PRICE_PER_GB_MONTH, measure_usage

    usages = measure_usage(_ecr_client(), repository or ())
    if as_json:
        rows = [
            {
                "repository": u.name,
                "imageCount": u.image_count,
                "totalBytes": u.total_bytes,
                "monthlyCostUSD": str(u.monthly_cost),
            }
            for u in usages
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'REPOSITORY':<32} {'IMAGES':>6} {'SIZE (MiB)':>11} {'USD/MONTH':>10}")
    for u in usages:
        mebibytes = u.total_bytes / 1024**2
        typer.echo(f"{u.name:<32} {u.image_count:>6} {mebibytes:>11.1f} {u.monthly_cost:>10}")
    total = sum((u.monthly_cost for u in usages), start=PRICE_PER_GB_MONTH * 0)
    typer.echo(f"total estimated storage cost: ${total}/month at ${PRICE_PER_GB_MONTH}/GB-month")


def _shown(report: ScanReport, policy: ScanPolicy | None) -> list[tuple[Finding, str]]:
    """The HIGH/CRITICAL findings and any finding the policy speaks of, with what it says."""
    from retail_tools.ecr.findings import allowance, serious

    now = datetime.now(UTC)
    said = {f.name: allowance(policy, f.name, now) for f in report.findings} if policy else {}
    chosen = list(serious(report))
    chosen += [f for f in report.findings if said.get(f.name) and f not in chosen]
    return [(f, said.get(f.name, "")) for f in chosen]


def _report_json(
    repository: str, tag: str, report: ScanReport, policy: ScanPolicy | None = None
) -> dict[str, object]:
    return {
        "repository": repository,
        "tag": tag,
        "digest": report.digest,
        "state": str(report.state),
        "ecrStatus": report.ecr_status,
        "description": report.description,
        "completedAt": report.completed_at or None,
        "severityCounts": dict(report.severity_counts),
        "findings": [
            {"name": f.name, "severity": f.severity, "package": f.package, "uri": f.uri}
            | ({"policy": said} if said else {})
            for f, said in _shown(report, policy)
        ],
    }


def _report_text(image: str, report: ScanReport, policy: ScanPolicy | None = None) -> str:
    counts = ", ".join(
        f"{severity}={count}" for severity, count in sorted(report.severity_counts.items()) if count
    )
    lines = [
        f"image:    {image} ({report.digest or 'digest unknown'})",
        f"scan:     {report.ecr_status}"
        + (f" ({report.description})" if report.description else ""),
        f"findings: {counts or 'none'}",
    ]
    lines.extend(
        f"  {f.severity:<8} {f.name:<20} {f.package:<30} {f.uri}".rstrip()
        + (f"\n           ↳ {said}" if said else "")
        for f, said in _shown(report, policy)
    )
    return "\n".join(lines)
