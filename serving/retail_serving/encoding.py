"""Deterministic feature encoding: category vocabularies and rows → float32 matrices.

Every categorical value maps to a small integer code through a vocabulary stored in the model
file, never through Python's built-in string hashing (salted per process, so two replicas would
disagree). Code 0 is reserved for "unknown": values the model never saw in training. Training
replaces a small share of known values with it (``training``), so the model has learned what to
do with an unknown value rather than falling down an arbitrary branch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from retail_serving.errors import SchemaError
from retail_serving.schema import FeatureSchema

UNKNOWN_CODE = 0

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Vocabulary:
    """Known values of one categorical feature; value ``values[i]`` has code ``i + 1``."""

    values: tuple[str, ...]
    codes: dict[str, int] = field(init=False, repr=False, compare=False)  # value → code

    def __post_init__(self) -> None:
        if len(set(self.values)) != len(self.values):
            raise SchemaError("vocabulary has duplicate values")
        codes = {value: index + 1 for index, value in enumerate(self.values)}
        object.__setattr__(self, "codes", codes)

    @classmethod
    def fit(cls, observed: Iterable[str]) -> Vocabulary:
        """A vocabulary of the distinct observed values, in sorted (so reproducible) order."""
        return cls(tuple(sorted(set(observed))))

    def code(self, value: str) -> int:
        return self.codes.get(value, UNKNOWN_CODE)

    @property
    def size(self) -> int:
        """Number of codes including the unknown code."""
        return len(self.values) + 1


@dataclass(frozen=True)
class Encoder:
    """Turns validated rows (feature name → value) into the model's float32 input matrix."""

    schema: FeatureSchema
    vocabularies: Mapping[str, Vocabulary]

    _plan: tuple[tuple[str, dict[str, int] | None], ...] = field(
        init=False, repr=False, compare=False
    )  # per column: feature name and value → code (None for numeric), for encode_row
    _limits: tuple[int | None, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for feature in self.schema.features:
            if feature.is_categorical and feature.name not in self.vocabularies:
                raise SchemaError(f"model has no vocabulary for categorical {feature.name}")
        plan = tuple(
            (f.name, self.vocabularies[f.name].codes if f.is_categorical else None)
            for f in self.schema.features
        )
        object.__setattr__(self, "_plan", plan)
        limits = tuple(
            self.vocabularies[f.name].size if f.is_categorical else None
            for f in self.schema.features
        )
        object.__setattr__(self, "_limits", limits)

    @classmethod
    def fit(cls, schema: FeatureSchema, columns: Mapping[str, Sequence[str]]) -> Encoder:
        """Vocabularies from training columns; a closed domain is taken whole, as declared."""
        vocabularies = {
            feature.name: Vocabulary(feature.domain)
            if feature.domain is not None
            else Vocabulary.fit(columns[feature.name])
            for feature in schema.features
            if feature.is_categorical
        }
        return cls(schema, vocabularies)

    def encode_row(self, row: Mapping[str, Any]) -> list[float]:
        """One row as a list of floats in schema order (the micro-batcher stacks these)."""
        return [
            float(row[name]) if codes is None else float(codes.get(row[name], UNKNOWN_CODE))
            for name, codes in self._plan
        ]

    def encode_rows(self, rows: Sequence[Mapping[str, Any]]) -> Matrix:
        """Many rows at once, gathered column by column (no per-row numpy calls)."""
        names = self.schema.names
        return self.encode_columns({name: [row[name] for row in rows] for name in names})

    def encode_columns(self, columns: Mapping[str, Sequence[Any]]) -> Matrix:
        """Column-oriented input (v2 named tensors, training data) to the input matrix."""
        lengths = {len(values) for values in columns.values()}
        if len(lengths) != 1:
            raise ValueError("columns differ in length")
        matrix = np.empty((lengths.pop(), len(self.schema.features)), dtype=np.float32)
        for column, feature in enumerate(self.schema.features):
            values = columns[feature.name]
            if feature.is_categorical:
                known = self.vocabularies[feature.name].codes
                matrix[:, column] = [known.get(value, UNKNOWN_CODE) for value in values]
            else:
                matrix[:, column] = values
        return matrix

    @property
    def code_limits(self) -> tuple[int | None, ...]:
        """Per column, the number of valid codes (None for numeric columns)."""
        return self._limits

    def vocabularies_json(self) -> str:
        return json.dumps(
            {name: list(vocab.values) for name, vocab in self.vocabularies.items()},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, schema: FeatureSchema, text: str) -> Encoder:
        try:
            raw: Any = json.loads(text)
            vocabularies = {
                str(name): Vocabulary(tuple(str(value) for value in values))
                for name, values in raw.items()
            }
        except (ValueError, AttributeError, TypeError) as error:
            raise SchemaError(f"malformed vocabularies in model: {error}") from error
        return cls(schema, vocabularies)
