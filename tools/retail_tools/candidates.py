"""Candidate model files for showing a canary rollout judge them: one as good as the stable
model, and two wrong on purpose in the ways a canary is meant to catch.

* ``retrained``: the same training on another seed, a candidate that should be promoted;
* ``one_class``: a booster trained on labels that are all one class, so it answers that class
  for every basket; it loads, passes its smoke test and answers 200, and only the prediction
  shift shows that it is wrong;
* ``failing``: a real model whose embedded schema calls ``STORE_REGION`` numeric (an export
  bug); it loads and passes its smoke test (which feeds the model numbers), then every request
  fails in the encoder, since a region code is not a number: the predictor answers 500.

Each returns the model file's bytes, made by the project's own writer
(``retail_serving.artifact.serialise``), and the model version it reports. For the end-to-end
tests and the demo, never for production.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import xgboost

from retail_serving import artifact
from retail_serving.encoding import Encoder
from retail_serving.schema import CLASSES, FeatureKind, FeatureSchema
from retail_training import dataset, training

ROWS = 10_000
TRAFFIC_SEED = 7_777  # the baskets the load sends: drawn apart from every training seed
NUMERIC_BY_MISTAKE = "STORE_REGION"


def retrained(seed: int) -> tuple[bytes, str]:
    trained = training.train(ROWS, seed=seed)
    data = artifact.serialise(
        trained.booster, trained.encoder, trained.version, reference=trained.reference
    )
    return data, trained.version


def one_class(label: str = "High") -> tuple[bytes, str]:
    """A model that answers ``label`` for everything."""
    schema = FeatureSchema()
    data = dataset.generate(ROWS, seed=1)
    encoder = Encoder.fit(schema, data.columns)
    matrix = xgboost.DMatrix(
        encoder.encode_columns(data.columns),
        label=np.full(ROWS, CLASSES.index(label)),
        feature_names=list(schema.names),
        feature_types=["c" if f.is_categorical else "q" for f in schema.features],
        enable_categorical=True,
    )
    params = {**training.PARAMS, "num_class": len(CLASSES), "seed": 1}
    booster = xgboost.train(params, matrix, num_boost_round=5)
    version = f"always-{label.lower()}"
    return artifact.serialise(booster, encoder, version), version


def failing(seed: int) -> tuple[bytes, str]:
    """A retrained model whose schema says ``STORE_REGION`` is a number."""
    trained = training.train(ROWS, seed=seed)
    features = tuple(
        replace(f, kind=FeatureKind.NUMERIC, domain=None) if f.name == NUMERIC_BY_MISTAKE else f
        for f in trained.encoder.schema.features
    )
    encoder = Encoder(
        replace(trained.encoder.schema, features=features), trained.encoder.vocabularies
    )
    version = f"{trained.version}-numeric-region"
    return artifact.serialise(trained.booster, encoder, version), version


def traffic(rows: int = 500) -> list[dict[str, object]]:
    """Baskets for the load, from the same synthetic world the models learned."""
    columns = dataset.generate(rows, seed=TRAFFIC_SEED).columns
    return [{name: values[i] for name, values in columns.items()} for i in range(rows)]
