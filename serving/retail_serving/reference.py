"""The model's drift reference: where its hold-out rows fell, and the bins live rows are counted in.

``retailctl train`` records inside the model file (the booster attribute ``retail_reference``)
how many hold-out rows fell into each bin of each input feature, and how many the model
predicted as each class. The bins of a categorical feature are its codes: the unknown code
first, then the vocabulary in order, so a category the model never saw has a bin of its own. A
numeric feature's bins are the hold-out's deciles: ``edges`` are the cut points (repeated
values merged, as an integer feature repeats them), bin ``i`` holds the values ``<= edges[i]``
and the last bin the rest.

The predictor counts the rows it serves in the same bins (``Reference.count``: one vectorised
pass over the encoded matrix of a model call) and exports the counts beside the reference on
its metrics port; the operator compares the two (``retail_operator.drift``). A model without
the attribute (trained before it existed) loads as before and has no reference: nothing is
counted, and the operator says it cannot judge drift.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from retail_serving.encoding import Encoder, Matrix
from retail_serving.errors import SchemaError
from retail_serving.schema import FeatureSchema

UNKNOWN_LABEL = "<unknown>"
QUANTILES = 10

Bins = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FeatureBins:
    """One feature's bins: their labels, the numeric cut points (None for a categorical
    feature: its code is its bin) and the hold-out rows in each."""

    name: str
    labels: tuple[str, ...]
    edges: tuple[float, ...] | None
    reference: tuple[int, ...]


def _numeric_labels(edges: Sequence[float]) -> tuple[str, ...]:
    if not edges:
        return ("all",)
    return (*(f"<={edge:g}" for edge in edges), f">{edges[-1]:g}")


def _bins_of(encoder: Encoder, matrix: Matrix) -> tuple[FeatureBins, ...]:
    """Bins fitted to ``matrix`` (the hold-out, encoded), each with its counts."""
    fitted = []
    for column, feature in enumerate(encoder.schema.features):
        values = matrix[:, column]
        if feature.is_categorical:
            vocabulary = encoder.vocabularies[feature.name]
            labels = (UNKNOWN_LABEL, *vocabulary.values)
            counts = np.bincount(values.astype(np.intp), minlength=vocabulary.size)
            fitted.append(FeatureBins(feature.name, labels, None, tuple(map(int, counts))))
            continue
        cuts = np.quantile(values, np.arange(1, QUANTILES) / QUANTILES) if len(values) else ()
        edges = tuple(sorted({float(np.float32(cut)) for cut in cuts}))
        positions = np.searchsorted(np.asarray(edges, dtype=np.float32), values, side="left")
        counts = np.bincount(positions, minlength=len(edges) + 1)
        fitted.append(
            FeatureBins(feature.name, _numeric_labels(edges), edges, tuple(map(int, counts)))
        )
    return tuple(fitted)


@dataclass(frozen=True)
class Reference:
    """The hold-out's distribution (rows, predicted classes, feature bins) and the means to
    count live rows in the same bins."""

    rows: int
    predictions: Mapping[str, int]  # class → hold-out rows predicted as it
    features: tuple[FeatureBins, ...]  # in the schema's column order
    # Where each feature's bins start in one flat array of every bin (``count``'s answer).
    offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _offsets: npt.NDArray[np.intp] = field(init=False, repr=False, compare=False)
    _numeric: tuple[tuple[int, npt.NDArray[np.float32]], ...] = field(
        init=False, repr=False, compare=False
    )
    # Per column, its first bin and its cut points (None: categorical), for ``count_few``.
    _plan: tuple[tuple[int, list[float] | None], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sizes = [len(feature.labels) for feature in self.features]
        offsets = tuple(int(at) for at in np.cumsum([0, *sizes[:-1]]))
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "_offsets", np.asarray(offsets, dtype=np.intp))
        numeric = tuple(
            (i, np.asarray(f.edges, dtype=np.float32))
            for i, f in enumerate(self.features)
            if f.edges is not None
        )
        object.__setattr__(self, "_numeric", numeric)
        plan = tuple(
            (offset, None if f.edges is None else list(f.edges))
            for f, offset in zip(self.features, offsets, strict=True)
        )
        object.__setattr__(self, "_plan", plan)

    @property
    def size(self) -> int:
        """How many bins there are, over every feature."""
        return sum(len(feature.labels) for feature in self.features)

    @classmethod
    def build(cls, encoder: Encoder, matrix: Matrix, predicted: npt.NDArray[np.intp]) -> Reference:
        """The reference of hold-out rows ``matrix`` (encoded) that the model predicted as
        classes ``predicted`` (indexes into the schema's classes)."""
        classes = encoder.schema.classes
        counts = np.bincount(predicted, minlength=len(classes))
        predictions = {name: int(count) for name, count in zip(classes, counts, strict=True)}
        return cls(len(matrix), predictions, _bins_of(encoder, matrix))

    def count_few(self, matrix: Matrix, into: list[int]) -> None:
        """Add ``matrix``'s rows to ``into`` (a list over every bin, in ``offsets`` order),
        row by row in Python: for a handful of rows a fifth of ``count``'s numpy calls
        (bench/RESULTS.md has the crossover)."""
        plan = self._plan
        for row in matrix.tolist():
            for value, (offset, edges) in zip(row, plan, strict=True):
                into[offset + (int(value) if edges is None else bisect_left(edges, value))] += 1

    def count(self, matrix: Matrix) -> Bins:
        """How many of ``matrix``'s rows (encoded, as a model call gets them) fall in each
        bin: one array over every feature's bins, in ``offsets`` order. The same bins as
        ``count_few``: the float32 cut points compare with the float32 values alike."""
        positions = matrix.astype(np.intp)  # a categorical column's code is its bin already
        for column, edges in self._numeric:
            positions[:, column] = np.searchsorted(edges, matrix[:, column], side="left")
        positions += self._offsets
        return np.bincount(positions.ravel(), minlength=self.size)

    def to_json(self) -> str:
        return json.dumps(
            {
                "rows": self.rows,
                "predictions": dict(self.predictions),
                "features": [
                    {
                        "name": f.name,
                        "labels": list(f.labels),
                        "edges": None if f.edges is None else list(f.edges),
                        "counts": list(f.reference),
                    }
                    for f in self.features
                ],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, schema: FeatureSchema, encoder: Encoder, text: str) -> Reference:
        """Parse the attribute and hold it to the model's schema and vocabularies: a bin for
        every code, counts for every bin; ``SchemaError`` otherwise."""
        try:
            raw: Any = json.loads(text)
            features = tuple(
                FeatureBins(
                    str(item["name"]),
                    tuple(str(label) for label in item["labels"]),
                    None if item["edges"] is None else tuple(float(e) for e in item["edges"]),
                    tuple(int(count) for count in item["counts"]),
                )
                for item in raw["features"]
            )
            predictions = {str(name): int(count) for name, count in raw["predictions"].items()}
            reference = cls(int(raw["rows"]), predictions, features)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise SchemaError(f"malformed drift reference in model: {error}") from error
        reference._require_matches(schema, encoder)
        return reference

    def _require_matches(self, schema: FeatureSchema, encoder: Encoder) -> None:
        if tuple(f.name for f in self.features) != schema.names:
            raise SchemaError("the drift reference's features differ from the model's")
        if set(self.predictions) != set(schema.classes):
            raise SchemaError("the drift reference's classes differ from the model's")
        for feature, bins in zip(schema.features, self.features, strict=True):
            if len(bins.reference) != len(bins.labels) or min(bins.reference, default=0) < 0:
                raise SchemaError(f"the drift reference's counts for {bins.name} do not fit")
            if feature.is_categorical:
                expected = encoder.vocabularies[feature.name].size
                if bins.edges is not None or len(bins.labels) != expected:
                    raise SchemaError(f"the drift reference's bins for {bins.name} do not fit")
            elif bins.edges is None or len(bins.labels) != len(bins.edges) + 1:
                raise SchemaError(f"the drift reference's bins for {bins.name} do not fit")
            elif list(bins.edges) != sorted(set(bins.edges)):
                raise SchemaError(f"the drift reference's edges for {bins.name} are not sorted")
