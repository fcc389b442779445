"""The model file: XGBoost's own JSON/UBJSON format with the schema inside (docs/serving.md).

One file carries the booster and, as booster attributes, the feature schema, the category
vocabularies, the model version and (optionally) the hold-out's distribution for drift
monitoring (``reference``), so a single PUT replaces a model atomically and no side
file can drift. Loading refuses anything that is not an XGBoost JSON/UBJSON document up front
(a pickle or joblib file is rejected without ever being unpickled: unpickling runs code), and
checks the document's structure before XGBoost parses it, because XGBoost's parser can crash
the process on a truncated file. The check, UBJSON or JSON, runs in a helper process
(``checker.check_apart``), so that a hot reload neither holds the serving process's GIL nor
puts a JSON parse in its memory; XGBoost then parses the bytes in place (``ModelBytes``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from retail_serving import checker
from retail_serving.encoding import Encoder
from retail_serving.errors import ModelFormatError, SchemaError
from retail_serving.model import Model, load_booster
from retail_serving.modelbytes import ModelBytes
from retail_serving.reference import Reference
from retail_serving.schema import FeatureSchema

FORMAT_VERSION = "1"
ATTR_FORMAT = "retail_format"
ATTR_SCHEMA = "retail_schema"
ATTR_VOCABULARIES = "retail_vocabularies"
ATTR_VERSION = "retail_version"
# Optional: the hold-out's distribution (``reference``); models trained before it load without.
ATTR_REFERENCE = "retail_reference"

PICKLE_PROTOCOL_MARKER = 0x80
ZLIB_MARKER = 0x78  # joblib's default compression


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def serialise(
    booster: Any,
    encoder: Encoder,
    version: str,
    *,
    reference: Reference | None = None,
    as_json: bool = False,
) -> bytes:
    """The model file's bytes: ``booster`` with schema, vocabularies, version and (when
    given) the drift reference attached."""
    booster.set_attr(
        **{
            ATTR_FORMAT: FORMAT_VERSION,
            ATTR_SCHEMA: encoder.schema.to_json(),
            ATTR_VOCABULARIES: encoder.vocabularies_json(),
            ATTR_VERSION: version,
            ATTR_REFERENCE: reference.to_json() if reference is not None else None,
        }
    )
    return bytes(booster.save_raw("json" if as_json else "ubj"))


def write(
    path: Path, booster: Any, encoder: Encoder, version: str, reference: Reference | None = None
) -> bytes:
    """Write the model file; a ``.json`` suffix selects JSON, anything else UBJSON."""
    as_json = path.suffix.lower() == ".json"
    data = serialise(booster, encoder, version, reference=reference, as_json=as_json)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_bytes(data)
    temporary.replace(path)
    return data


def _refuse_foreign_formats(data: memoryview) -> None:
    if not data:
        raise ModelFormatError("model file is empty")
    first = data[0]
    if first == PICKLE_PROTOCOL_MARKER:
        raise ModelFormatError(
            "model file is a Python pickle; refusing to load it (unpickling runs code). "
            "Save models with Booster.save_model('model.ubj') or retailctl train"
        )
    if first == ZLIB_MARKER:
        raise ModelFormatError("model file looks like a compressed joblib/pickle; refusing it")
    # Both UBJSON and JSON models are one top-level object, so they open with '{' (possibly
    # after whitespace for JSON). XGBoost's legacy binary format and everything else do not.
    if bytes(data[:4096]).lstrip()[:1] != b"{":
        raise ModelFormatError("model file is not an XGBoost JSON or UBJSON model")


def load(data: bytes | ModelBytes, *, nthread: int = 1, sha256: str | None = None) -> Model:
    """Parse and validate model bytes; raises ``ModelRejected`` subclasses on any problem.

    A reload passes the ``ModelBytes`` it downloaded into, read in place; plain bytes (the
    CLI, tests) are copied into one first. ``sha256`` is the bytes' digest when the caller
    has already computed it (a reload verifies it first), so that they are not hashed twice."""
    if isinstance(data, bytes):
        with ModelBytes.of(data) as held:
            return load(held, nthread=nthread, sha256=sha256)
    # Refuse malformed documents before XGBoost's parser sees them (it can crash on them).
    _refuse_foreign_formats(data.view)
    checker.check_apart(data)
    import xgboost

    try:
        booster = load_booster(data.view)
    except xgboost.core.XGBoostError as error:
        summary = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise ModelFormatError(f"XGBoost cannot read the model: {summary}") from error
    attributes: dict[str, str] = {
        key: value for key, value in booster.attributes().items() if value is not None
    }
    missing = [
        key
        for key in (ATTR_FORMAT, ATTR_SCHEMA, ATTR_VOCABULARIES, ATTR_VERSION)
        if key not in attributes
    ]
    if missing:
        raise SchemaError(f"model lacks the embedded attributes {missing} (not made by retailctl?)")
    if attributes[ATTR_FORMAT] != FORMAT_VERSION:
        raise SchemaError(f"model file format {attributes[ATTR_FORMAT]!r} is not supported")
    schema = FeatureSchema.from_json(attributes[ATTR_SCHEMA])
    schema.require_compatible()
    encoder = Encoder.from_json(schema, attributes[ATTR_VOCABULARIES])
    reference = (
        Reference.from_json(schema, encoder, attributes[ATTR_REFERENCE])
        if ATTR_REFERENCE in attributes
        else None
    )
    booster.set_param({"nthread": nthread})
    digest = sha256 or sha256_hex(data.view)
    model = Model(booster, schema, encoder, attributes[ATTR_VERSION], digest, reference)
    model.smoke_test()
    return model


def read(path: Path, *, nthread: int = 1) -> Model:
    return load(path.read_bytes(), nthread=nthread)
