"""The model file is XGBoost's own format with the schema inside; anything else is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost

from retail_serving import artifact
from retail_serving.errors import ModelFormatError, SchemaError
from retail_serving.model import Model
from retail_serving.payloads import EXAMPLE
from retail_training.training import TrainedModel


def test_ubj_and_json_files_load_to_the_same_predictions(
    tmp_path: Path, trained: TrainedModel, model: Model
) -> None:
    written = artifact.write(tmp_path / "m.json", trained.booster, trained.encoder, "v-json")
    assert written.lstrip().startswith(b'{"')
    from_json = artifact.read(tmp_path / "m.json")
    assert from_json.version == "v-json"
    assert from_json.sha256 == artifact.sha256_hex(written)
    matrix = model.encoder.encode_rows([EXAMPLE, {**EXAMPLE, "STORE_REGION": "unseen"}])
    np.testing.assert_allclose(
        from_json.predict_proba(matrix), model.predict_proba(matrix), rtol=1e-6
    )


def test_a_json_model_is_checked_outside_this_process(
    trained: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing a JSON document takes about eight times its size: that is the helper's memory
    (and GIL), never the server's."""
    import orjson

    data = artifact.serialise(trained.booster, trained.encoder, "v-json", as_json=True)

    def not_here(_data: object) -> None:
        raise AssertionError("a JSON model was parsed in the server process")

    monkeypatch.setattr(orjson, "loads", not_here)
    assert artifact.load(data).version == "v-json"
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        artifact.load(data[: len(data) // 2])


def test_xgboost_reads_the_model_where_it_lies_without_a_bytearray_copy(
    trained: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = artifact.serialise(trained.booster, trained.encoder, "in-place")

    def copied(*_args: object) -> None:
        raise AssertionError("the model was loaded from a copy (Booster.load_model)")

    monkeypatch.setattr(xgboost.Booster, "load_model", copied)
    assert artifact.load(data).version == "in-place"


def test_the_model_carries_schema_vocabularies_version_and_classes(
    model: Model, trained: TrainedModel
) -> None:
    assert model.version == trained.version
    assert model.classes == ("Low", "Medium", "High")
    assert model.encoder.vocabularies == trained.encoder.vocabularies


def test_probabilities_are_distributions(model: Model) -> None:
    matrix = model.encoder.encode_rows([EXAMPLE] * 3)
    probabilities = model.predict_proba(matrix)
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_a_pickle_is_refused_before_anything_parses_it() -> None:
    # The opening bytes of a protocol-5 pickle; if it were ever unpickled it would fail
    # differently (truncated), so the message proves the format check stopped it first.
    with pytest.raises(ModelFormatError, match="pickle"):
        artifact.load(b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix")


@pytest.mark.parametrize(
    "data", [b"", b"binf\x00\x00\x00\x00", b"\x78\x9c\x01\x02", b"hello world", b"{not a model"]
)
def test_other_bytes_are_a_format_error(data: bytes) -> None:
    with pytest.raises(ModelFormatError):
        artifact.load(data)


def test_a_truncated_model_is_a_format_error(model_bytes: bytes) -> None:
    with pytest.raises(ModelFormatError, match="not valid UBJSON"):
        artifact.load(model_bytes[: len(model_bytes) // 2])


def test_an_xgboost_model_without_the_embedded_schema_is_refused() -> None:
    features = np.random.default_rng(0).random((50, 8)).astype(np.float32)
    labels = np.arange(50) % 3
    plain = xgboost.train(
        {"objective": "multi:softprob", "num_class": 3},
        xgboost.DMatrix(features, label=labels),
        num_boost_round=2,
    )
    with pytest.raises(SchemaError, match="retail_schema"):
        artifact.load(bytes(plain.save_raw("ubj")))


def test_every_truncation_is_refused_without_reaching_xgboost(
    model_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # XGBoost's own UBJSON reader crashed the process on a file cut a few bytes short, so our
    # structure check must refuse each cut (its message) before a Booster is ever made.
    def xgboost_reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("the truncated file reached XGBoost's parser")

    monkeypatch.setattr(xgboost, "Booster", xgboost_reached)
    size = len(model_bytes)
    for cut in (1, 2, 9, size // 7, size // 3, size - 1000, size - 9, size - 2, size - 1):
        with pytest.raises(ModelFormatError, match="^model file is not valid UBJSON: "):
            artifact.load(model_bytes[:cut])


def test_trailing_bytes_are_refused(model_bytes: bytes) -> None:
    with pytest.raises(ModelFormatError, match="trailing"):
        artifact.load(model_bytes + b"\x00")
