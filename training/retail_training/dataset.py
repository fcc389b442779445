"""Synthetic baskets in the dunnhumby "Let's Get Sort-of-Real" schema, labelled by price
sensitivity.

The data is made up, but its structure is meant to be worth learning, and it is written down
here so anyone can tell what a model trained on it should have learned:

* The product catalogue is fixed (drawn once from ``CATALOG_SEED``): ten product groups
  (``PROD_CODE_30``, ``G00001``…) of three to seven departments each (``PROD_CODE_20``,
  ``DEP00001``…); every department has a typical price per item (log-normal, ~£0.4–£10).
* Each basket has a hidden price sensitivity ``z``: the sum of a store-format effect (large
  formats draw deal hunters: SS −0.6 … XLS +0.6), a region effect (fixed per region, sd 0.45),
  a basket-type effect (a planned "Full Shop" +0.4, a "Top Up" −0.3) and personal noise.
* Basket type depends on the store format (convenience stores see small shops and top-ups),
  basket size depends on the type, and ``QUANTITY`` on the size.
* The price paid per item is the department's typical price, times a store-format markup
  (convenience +10 %, hypermarket −7 %), times ``exp(−0.45 z)``: sensitive shoppers buy the
  value range. ``SPEND`` is quantity × that price. So spend per item *relative to its
  department* is the strongest signal, which a model can only use by combining three features.
* The label is ``z`` plus label noise, cut at fixed thresholds into Low / Medium / High
  (roughly 30 / 40 / 30 %). The noise caps the achievable accuracy well below 100 %.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from retail_serving.schema import CLASSES

CATALOG_SEED = 20_241_009

STORE_FORMATS = ("SS", "MS", "LS", "XLS")
FORMAT_SHARE = (0.25, 0.30, 0.30, 0.15)
FORMAT_SENSITIVITY = (-0.6, -0.1, 0.3, 0.6)
FORMAT_PRICE_FACTOR = (1.10, 1.00, 0.97, 0.93)

BASKET_TYPES = ("Small Shop", "Top Up", "Full Shop", "XX")
TYPE_SENSITIVITY = (-0.1, -0.3, 0.4, 0.0)
# P(basket type | store format), rows in STORE_FORMATS order.
TYPE_GIVEN_FORMAT = (
    (0.50, 0.35, 0.05, 0.10),
    (0.35, 0.30, 0.25, 0.10),
    (0.20, 0.25, 0.45, 0.10),
    (0.10, 0.15, 0.65, 0.10),
)

BASKET_SIZES = ("S", "M", "L")
# P(basket size | basket type), rows in BASKET_TYPES order.
SIZE_GIVEN_TYPE = (
    (0.80, 0.18, 0.02),
    (0.45, 0.45, 0.10),
    (0.05, 0.35, 0.60),
    (0.34, 0.33, 0.33),
)
# QUANTITY = base + Poisson(mean), per basket size.
QUANTITY_BASE = (1, 4, 12)
QUANTITY_EXTRA_MEAN = (2.0, 6.0, 15.0)

REGIONS = tuple(f"{side}0{number}" for side in "ENSW" for number in (1, 2, 3))

PERSONAL_NOISE_SD = 0.6
PRICE_NOISE_SD = 0.15
LABEL_NOISE_SD = 0.3
PRICE_ELASTICITY = 0.45
CLASS_THRESHOLDS = (-0.55, 0.55)  # z below the first is Low, above the second High


@dataclass(frozen=True)
class Catalog:
    """The fixed world the baskets are drawn from."""

    departments: tuple[str, ...]
    department_group: tuple[str, ...]
    department_price: npt.NDArray[np.float64]
    region_sensitivity: npt.NDArray[np.float64]


def catalog() -> Catalog:
    """The product catalogue and region effects; identical for every seed."""
    rng = np.random.default_rng(CATALOG_SEED)
    departments: list[str] = []
    groups: list[str] = []
    for group in range(1, 11):
        for _ in range(int(rng.integers(3, 8))):
            departments.append(f"DEP{len(departments) + 1:05d}")
            groups.append(f"G{group:05d}")
    prices = np.exp(rng.normal(1.0, 0.7, size=len(departments)))
    regions = rng.normal(0.0, 0.45, size=len(REGIONS))
    return Catalog(tuple(departments), tuple(groups), prices, regions)


@dataclass(frozen=True)
class Dataset:
    """Columns by feature name (strings or floats) and labels as indexes into ``CLASSES``."""

    columns: dict[str, list[Any]]
    labels: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self) -> Iterator[dict[str, Any]]:
        """The baskets as request payloads in the seed's shape."""
        names = list(self.columns)
        for values in zip(*self.columns.values(), strict=True):
            yield dict(zip(names, values, strict=True))

    def class_shares(self) -> dict[str, float]:
        counts = np.bincount(self.labels, minlength=len(CLASSES))
        shares = counts / len(self)
        return {label: float(share) for label, share in zip(CLASSES, shares, strict=True)}


def _pick(rng: np.random.Generator, probabilities: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """One categorical draw per row, each row with its own probability vector."""
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random(len(probabilities))[:, None]
    picked: npt.NDArray[np.intp] = (draws > cumulative).sum(axis=1)
    clipped: npt.NDArray[np.intp] = np.minimum(picked, probabilities.shape[1] - 1)
    return clipped


def generate(rows: int, seed: int) -> Dataset:
    """``rows`` labelled baskets, reproducible from ``seed``."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    world = catalog()
    rng = np.random.default_rng(seed)

    store_format = rng.choice(len(STORE_FORMATS), size=rows, p=FORMAT_SHARE)
    region = rng.integers(0, len(REGIONS), size=rows)
    basket_type = _pick(rng, np.asarray(TYPE_GIVEN_FORMAT)[store_format])
    basket_size = _pick(rng, np.asarray(SIZE_GIVEN_TYPE)[basket_type])
    quantity = np.asarray(QUANTITY_BASE)[basket_size] + rng.poisson(
        np.asarray(QUANTITY_EXTRA_MEAN)[basket_size]
    )
    department = rng.integers(0, len(world.departments), size=rows)

    sensitivity = (
        np.asarray(FORMAT_SENSITIVITY)[store_format]
        + world.region_sensitivity[region]
        + np.asarray(TYPE_SENSITIVITY)[basket_type]
        + rng.normal(0.0, PERSONAL_NOISE_SD, size=rows)
    )
    unit_price = (
        world.department_price[department]
        * np.asarray(FORMAT_PRICE_FACTOR)[store_format]
        * np.exp(-PRICE_ELASTICITY * sensitivity + rng.normal(0.0, PRICE_NOISE_SD, size=rows))
    )
    spend = np.maximum(np.round(quantity * unit_price, 2), 0.01)
    observed = sensitivity + rng.normal(0.0, LABEL_NOISE_SD, size=rows)
    labels = np.digitize(observed, CLASS_THRESHOLDS).astype(np.int64)

    columns: dict[str, list[Any]] = {
        "BASKET_SIZE": [BASKET_SIZES[i] for i in basket_size],
        "BASKET_TYPE": [BASKET_TYPES[i] for i in basket_type],
        "STORE_REGION": [REGIONS[i] for i in region],
        "STORE_FORMAT": [STORE_FORMATS[i] for i in store_format],
        "SPEND": spend.tolist(),
        "QUANTITY": quantity.tolist(),
        "PROD_CODE_20": [world.departments[i] for i in department],
        "PROD_CODE_30": [world.department_group[i] for i in department],
    }
    return Dataset(columns, labels)
