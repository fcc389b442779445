"""The drift reference a model carries: made from the hold-out by training, kept through the
model file, and the bins live rows are counted in (two ways, which must agree)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from retail_serving import artifact
from retail_serving.errors import SchemaError
from retail_serving.model import Model
from retail_serving.reference import UNKNOWN_LABEL, Reference
from retail_training import dataset, training


def test_training_records_the_holdout_in_every_features_bins(
    trained: training.TrainedModel,
) -> None:
    reference = trained.reference
    assert reference.rows == trained.holdout_rows
    assert sum(reference.predictions.values()) == reference.rows
    for bins in reference.features:
        assert sum(bins.reference) == reference.rows, bins.name
        if bins.edges is None:
            assert bins.labels[0] == UNKNOWN_LABEL
    spend = next(b for b in reference.features if b.name == "SPEND")
    assert len(spend.labels) == 10  # deciles of a continuous feature: a tenth each
    assert all(abs(count / reference.rows - 0.1) < 0.02 for count in spend.reference)


def test_the_reference_travels_in_the_model_file(
    trained: training.TrainedModel, model: Model
) -> None:
    assert model.reference == trained.reference


def test_a_model_without_a_reference_still_loads(trained: training.TrainedModel) -> None:
    """Models trained before the reference existed keep loading, with none."""
    old = artifact.load(artifact.serialise(trained.booster, trained.encoder, "old"))
    assert old.reference is None and old.version == "old"


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: {**r, "features": r["features"][:-1]},
        lambda r: {**r, "predictions": {"Low": 1}},
        lambda r: {
            **r,
            "features": [{**f, "counts": f["counts"][:-1]} for f in r["features"]],
        },
        lambda r: {**r, "features": [{**f, "labels": f["labels"][1:]} for f in r["features"]]},
        lambda r: {
            **r,
            "features": [
                {**f, "edges": list(reversed(f["edges"]))} if f["edges"] else f
                for f in r["features"]
            ],
        },
        lambda r: {**r, "rows": "many"},
    ],
    ids=["a feature missing", "classes", "counts", "bins", "edges", "rows"],
)
def test_a_reference_that_does_not_fit_the_model_is_refused(
    trained: training.TrainedModel, damage: object
) -> None:
    raw = json.loads(trained.reference.to_json())
    text = json.dumps(damage(raw))  # type: ignore[operator]
    with pytest.raises(SchemaError, match="drift reference"):
        Reference.from_json(trained.encoder.schema, trained.encoder, text)


def test_few_rows_and_many_rows_fall_in_the_same_bins(trained: training.TrainedModel) -> None:
    encoder, reference = trained.encoder, trained.reference
    matrix = encoder.encode_columns(dataset.generate(300, seed=5).columns)
    matrix[::7, 1] = 0  # some unknown basket types
    spend = next(b for b in reference.features if b.name == "SPEND")
    assert spend.edges is not None
    matrix[:10, 4] = spend.edges[3]  # values on a cut point belong to the bin below it
    few = [0] * reference.size
    reference.count_few(matrix, few)
    many = reference.count(matrix)
    assert few == many.tolist()
    assert many.sum() == len(matrix) * len(reference.features)
    assert many[reference.offsets[4] + 3] >= 10


def test_a_rows_bins_are_where_its_values_say(trained: training.TrainedModel) -> None:
    reference = trained.reference
    row = next(dataset.generate(1, seed=9).rows())
    row["STORE_FORMAT"], row["SPEND"] = "XLS", 1e6
    counts = reference.count(trained.encoder.encode_rows([row]))
    for bins, offset in zip(reference.features, reference.offsets, strict=True):
        hit = [label for at, label in enumerate(bins.labels) if counts[offset + at]]
        if bins.name == "STORE_FORMAT":
            assert hit == ["XLS"]
        elif bins.name == "SPEND":
            assert hit == [bins.labels[-1]] and hit[0].startswith(">")
        elif bins.edges is None:
            assert hit == [str(row[bins.name])]


def test_no_rows_count_nothing(trained: training.TrainedModel) -> None:
    reference = trained.reference
    empty = np.empty((0, len(reference.features)), dtype=np.float32)
    assert reference.count(empty).sum() == 0
    assert replace(reference).size == reference.size
