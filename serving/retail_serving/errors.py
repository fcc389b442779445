"""The predictor's error vocabulary, by meaning.

Loading a model: ``ModelRejected`` is permanent for the object version that caused it: the
same bytes will never load, so the reloader does not retry them until the object changes.
``SourceUnavailable`` (network, permissions, a missing object) and ``CheckInterrupted`` (the
structure check gave no verdict) are temporary: the next poll tries again. All of them keep
the current model serving; the reloader counts them under their ``reason``.

Answering a request: ``NoModel`` (nothing verified is loaded yet) and ``UnknownModel`` (a v2
route named another model). What each means over HTTP is decided in one place, ``http``.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base of the predictor's own errors; ``reason`` is a short label for metrics."""

    reason = "error"


class ModelRejected(ServingError):
    """These bytes are not a model this server will serve."""

    reason = "rejected"


class ModelFormatError(ModelRejected):
    """Not an XGBoost JSON/UBJSON model (a pickle, garbage, a truncated upload)."""

    reason = "format"


class SchemaError(ModelRejected):
    """The model's embedded schema or vocabularies are missing, malformed or incompatible."""

    reason = "schema"


class ChecksumMismatch(ModelRejected):
    """The bytes' sha256 differs from the one recorded with the object (or pinned)."""

    reason = "checksum"


class SignatureRefused(ModelRejected):
    """The pod requires signed models and this one is not a trusted key's: unsigned, signed
    with a key it does not trust, or a signature that does not hold over these bytes."""

    reason = "signature"


class ModelTooLarge(ModelRejected):
    """The object is larger than ``MAX_MODEL_BYTES``: refused before it is downloaded."""

    reason = "too_large"


class SmokeTestFailed(ModelRejected):
    """The model loaded but its test prediction was unusable."""

    reason = "smoke_test"


class SourceUnavailable(ServingError):
    """The model object could not be read right now; worth trying again later."""

    reason = "unavailable"


class CheckInterrupted(ServingError):
    """The structure check gave no verdict: its helper process died or did not answer. That
    says nothing about the bytes, so the next poll checks them again."""

    reason = "check"


class NoModel(Exception):
    """No verified model is loaded yet."""


class UnknownModel(Exception):
    """A v2 route named a model this server does not serve; the message is that name."""
