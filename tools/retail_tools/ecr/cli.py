"""``retailctl ecr …`` and ``retailctl image …``: the registry and image-naming commands.

Thin: parse options, build boto3 clients from the default credential chain (IRSA, OIDC in CI,
or ``AWS_ENDPOINT_URL`` pointing at moto locally), call the modules beside this one, print.
boto3 is imported inside the commands so ``retailctl --help`` stays fast.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import click
import typer

from retail_tools.ecr.tags import TagNameError, image_tag

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

    from retail_operator.facts import ScanReport

DEFAULT_CONFIG = Path("deploy/ecr/repositories.yaml")

ecr_app = typer.Typer(help="ECR as code: bootstrap repositories, read scan findings, usage.")
image_app = typer.Typer(help="Image naming for builds.")


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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Scan status, severity counts and the HIGH/CRITICAL findings of REPOSITORY:TAG."""
    from retail_operator.errors import OperatorError
    from retail_operator.spec import Severity
    from retail_tools.ecr.findings import gate, wait_for_scan

    try:
        threshold = Severity(fail_on.upper()) if fail_on is not None else None
    except ValueError:
        choices = ", ".join(Severity)
        raise typer.BadParameter(f"use one of {choices}", param_hint="--fail-on") from None
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
        json.dumps(_report_json(repository, tag, report), indent=2)
        if as_json
        else _report_text(image, report)
    )
    if threshold is None:
        return
    decision = gate(report, threshold, ignore_cve or ())
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


@image_app.command("tag")
def tag_command(
    branch: Annotated[str, typer.Option(help="Git branch, e.g. main or feature/x.")],
    sha: Annotated[str, typer.Option(help="Git commit SHA (7 to 64 hex characters).")],
    on: Annotated[
        datetime | None,
        typer.Option(
            "--date", help="Build date for release tags (default today, UTC).", formats=["%Y-%m-%d"]
        ),
    ] = None,
) -> None:
    """Print the image tag for a build of SHA on BRANCH."""
    today: date = (on or datetime.now(UTC)).date()
    try:
        typer.echo(image_tag(branch, sha, today))
    except TagNameError as error:
        raise typer.BadParameter(str(error)) from error


def _report_json(repository: str, tag: str, report: ScanReport) -> dict[str, object]:
    from retail_tools.ecr.findings import serious

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
            for f in serious(report)
        ],
    }


def _report_text(image: str, report: ScanReport) -> str:
    from retail_tools.ecr.findings import serious

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
        f"  {f.severity:<8} {f.name:<20} {f.package:<30} {f.uri}".rstrip() for f in serious(report)
    )
    return "\n".join(lines)
