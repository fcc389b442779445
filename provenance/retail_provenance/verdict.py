"""What a signature check concludes, for an image or a model: one value both runtimes report
(the operator as a condition, the predictor as a refused reload)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    VERIFIED = "SignatureVerified"  # signed by a trusted key, over exactly this digest
    UNSIGNED = "Unsigned"  # no signature at all
    INVALID = "SignatureInvalid"  # a signature that does not hold: malformed, altered, or
    # made over another digest (a signature copied from another image or model)
    UNTRUSTED = "UntrustedKey"  # well formed, but no trusted key made it


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    message: str
    key: str = ""  # the trusted key's fingerprint, when verified

    @property
    def verified(self) -> bool:
        return self.outcome is Outcome.VERIFIED


def verified(message: str, key: str) -> Verdict:
    return Verdict(Outcome.VERIFIED, message, key)


def unsigned(message: str) -> Verdict:
    return Verdict(Outcome.UNSIGNED, message)


def invalid(message: str) -> Verdict:
    return Verdict(Outcome.INVALID, message)


def untrusted(message: str) -> Verdict:
    return Verdict(Outcome.UNTRUSTED, message)
