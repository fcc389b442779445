"""The gate: what may run. Pure.

``choose_target`` decides what the children run: the spec's image and model when both checks
pass, otherwise what runs now (read from the live children the RetailModel owns, and only if
its image passes the gate today), so a blocked image never replaces a good one and nothing the
status says is ever applied. ``check_model`` compares the model object with the spec's pins;
``running_check`` judges the image that runs against the same policy, so findings published
after it started are noticed; it never stops it. ``check_signature`` turns a model's or an
image's signature verdict into its condition, and ``signed`` makes it part of the model's (the
image's) check, so a model no trusted key signed never rolls out (nor starts a canary), exactly
like a missing one, and an image no trusted key signed never replaces a running one, exactly
like a blocked scan.
"""

from __future__ import annotations

from retail_operator.conditions import Check
from retail_operator.facts import ModelObject
from retail_operator.rendering import Target
from retail_operator.scanpolicy import ImageDecision
from retail_operator.spec import ModelSpec
from retail_provenance.verdict import Verdict


def check_model(source: ModelSpec, found: ModelObject) -> Check:
    """Compare a found object with the spec's pinned sha256, when there is one."""
    where = source.s3_uri + (f"?versionId={found.version_id}" if found.version_id else "")
    if source.sha256:
        if not found.sha256:
            return Check(
                "False",
                "ChecksumMismatch",
                f"{where} has no sha256 metadata; the spec requires {source.sha256[:12]}…",
            )
        if found.sha256 != source.sha256:
            return Check(
                "False",
                "ChecksumMismatch",
                f"{where} has sha256 {found.sha256[:12]}…, the spec requires {source.sha256[:12]}…",
            )
    note = f", sha256 {found.sha256[:12]}…" if found.sha256 else ", no sha256 metadata"
    return Check("True", "ModelFound", f"{where} (ETag {found.etag}{note})")


def check_signature(found: Verdict, subject: str) -> Check:
    """ModelSignatureVerified or ImageSignatureVerified (``subject``: "model" or "image"):
    True, or False with the verdict's outcome as its reason (Unsigned, SignatureInvalid,
    UntrustedKey)."""
    if found.verified:
        return Check("True", found.outcome.value, found.message)
    return Check("False", found.outcome.value, f"The {subject} is refused: {found.message}")


def signed(check: Check, signature: Check | None) -> Check:
    """The model's (or the image's) check for the gate: refused when its signature is, once
    it is found, or while the signature cannot be read (Unknown)."""
    if check.passed and signature is not None and not signature.passed:
        return signature
    return check


def running_check(decision: ImageDecision, image: str) -> Check:
    """The RunningImageCompliant condition for the image that runs, from its scan decision.

    A finding that blocks is ``False`` (NewVulnerabilities: it appeared after the rollout, or
    an exception for it ended); a scan that cannot be judged now is ``Unknown``. Either way the
    pods keep running: the message says what a person can do."""
    if decision.passed:
        return Check("True", "Compliant", f"The running image passes: {decision.message}")
    if decision.reason == "VulnerabilitiesFound":
        return Check(
            "False",
            "NewVulnerabilities",
            f"The running image {image} now has {decision.message}. It keeps serving: roll out "
            "an image with the fix, or record a scanPolicy exception (id, reason, expires).",
        )
    return Check("Unknown", decision.reason, f"The running image: {decision.message}")


def choose_target(
    desired: Target | None, image: Check, model: Check, previous: Target | None
) -> Target | None:
    """The spec's target when every check passed; else the previous one (possibly none)."""
    if desired is not None and image.passed and model.passed:
        return desired
    return previous
