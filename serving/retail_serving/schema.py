"""The feature schema of the price-sensitivity model: names, kinds, order and classes.

This is the one place that says what a request row is. The order of ``FEATURES`` is the column
order of every encoded matrix (and of the v2 FP32 tensor); the schema travels inside each model
file so that a server always encodes exactly as the model was trained (see ``artifact``).
``payloads.PredictRequest`` spells the same row out as a TypedDict (for mypy and the OpenAPI
document); a unit test holds its fields and closed domains to ``FEATURES``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

from retail_serving.errors import SchemaError


class FeatureKind(StrEnum):
    """How a feature is given and encoded."""

    CATEGORICAL = "categorical"
    NUMERIC = "numeric"


@dataclass(frozen=True)
class Feature:
    """One input column: categorical features may declare a closed domain of allowed values."""

    name: str
    kind: FeatureKind
    domain: tuple[str, ...] | None = None

    @property
    def is_categorical(self) -> bool:
        return self.kind is FeatureKind.CATEGORICAL


# The dunnhumby "Let's Get Sort-of-Real" columns the seed's request carries, in matrix order.
FEATURES: tuple[Feature, ...] = (
    Feature("BASKET_SIZE", FeatureKind.CATEGORICAL, ("S", "M", "L")),
    Feature("BASKET_TYPE", FeatureKind.CATEGORICAL),
    Feature("STORE_REGION", FeatureKind.CATEGORICAL),
    Feature("STORE_FORMAT", FeatureKind.CATEGORICAL, ("SS", "MS", "LS", "XLS")),
    Feature("SPEND", FeatureKind.NUMERIC),
    Feature("QUANTITY", FeatureKind.NUMERIC),
    Feature("PROD_CODE_20", FeatureKind.CATEGORICAL),
    Feature("PROD_CODE_30", FeatureKind.CATEGORICAL),
)
FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)
CLASSES: tuple[str, ...] = ("Low", "Medium", "High")


@dataclass(frozen=True)
class FeatureSchema:
    """The features and classes a model was trained with; serialised into the model file."""

    features: tuple[Feature, ...] = FEATURES
    classes: tuple[str, ...] = CLASSES

    @cached_property  # asked on every v2 request
    def names(self) -> tuple[str, ...]:
        return tuple(feature.name for feature in self.features)

    def to_json(self) -> str:
        return json.dumps(
            {
                "features": [
                    {"name": f.name, "kind": f.kind.value, "domain": f.domain}
                    for f in self.features
                ],
                "classes": list(self.classes),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureSchema:
        try:
            raw: Any = json.loads(text)
            features = tuple(
                Feature(
                    name=str(item["name"]),
                    kind=FeatureKind(item["kind"]),
                    domain=None if item.get("domain") is None else tuple(item["domain"]),
                )
                for item in raw["features"]
            )
            classes = tuple(str(label) for label in raw["classes"])
        except (ValueError, KeyError, TypeError) as error:
            raise SchemaError(f"malformed feature schema in model: {error}") from error
        return cls(features=features, classes=classes)

    def require_compatible(self) -> None:
        """Refuse a model whose schema differs from the one this server's API accepts."""
        if self.names != FEATURE_NAMES:
            raise SchemaError(
                f"model expects features {list(self.names)}, "
                f"this server serves {list(FEATURE_NAMES)}"
            )
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise SchemaError(f"model declares invalid classes {list(self.classes)}")
