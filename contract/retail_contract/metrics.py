"""The predictor's Prometheus metrics that the operator reads to judge a canary.

The predictor exports them on ``GET /metrics`` on a port of its own, ``METRICS_PORT`` (with
``/model/info``), which the Service does not expose; the operator scrapes the stable and the
canary pods there by pod IP and compares the two groups (``retail_operator.canary``), and
compares the stable pods' live feature bins and classes with the model's reference, which the
pods export beside them (``retail_operator.drift``). Names
and labels are defined once here so the two sides cannot drift apart (prometheus_client adds
``_total`` to counters and ``_bucket`` to histograms when it exposes them).
"""

from __future__ import annotations

# The predictor's default metrics port (the ``METRICS_PORT`` variable in ``env`` changes it).
METRICS_PORT = 9090

# Counter: HTTP requests by route template, method and status code. A prediction request with
# a 5xx status is a failed prediction; a 4xx is the client's input, not the model's fault.
REQUESTS = "retail_http_requests"
# Histogram: request latency by route template.
LATENCY = "retail_http_request_duration_seconds"
# Counter: rows predicted, by the model's version and the predicted (arg-max) class.
PREDICTIONS = "retail_predictions"
# Counter: rows predicted, by the model's version, input feature and the feature's bin (a
# category, "<unknown>", or a numeric range such as "<=12.5"): the live side of drift.
FEATURE_ROWS = "retail_feature_rows"
# Gauges: the model's drift reference, the hold-out rows in each feature's bin and predicted as
# each class, by model version (absent for a model trained without one).
REFERENCE_FEATURE_ROWS = "retail_reference_feature_rows"
REFERENCE_PREDICTIONS = "retail_reference_predictions"
FEATURE_LABEL = "feature"
BIN_LABEL = "bin"
# Gauge: 1 for the model being served, labelled by its version and sha256: which model a
# pod's counts speak for.
MODEL_INFO = "retail_model_info"
MODEL_VERSION_LABEL = "version"
MODEL_SHA256_LABEL = "sha256"

ROUTE_LABEL = "route"
STATUS_LABEL = "status"
VERSION_LABEL = "model_version"
CLASS_LABEL = "class"

# The route templates that predict: their requests, failures and latency are the canary's.
PREDICTION_ROUTES = frozenset({"/predict", "/predict/batch", "/v2/models/{name}/infer"})
