"""The environment variables the operator sets on predictor containers.

The predictor reads each of them as a ``ServingSettings`` field of the same name (lower case);
a unit test holds the two sides together.
"""

from __future__ import annotations

MODEL_SOURCE_FILE = "MODEL_SOURCE_FILE"  # path of the mounted model-source document
MODEL_NAME = "MODEL_NAME"  # the model's name in the v2 (Open Inference Protocol) routes
RELOAD_INTERVAL_SECONDS = "RELOAD_INTERVAL_SECONDS"  # how often to HEAD the model object
# The port of /metrics and /model/info (default ``metrics.METRICS_PORT``): not the Service's.
METRICS_PORT = "METRICS_PORT"

# The largest model object to load, when a RetailModelPolicy sets one (else the predictor's
# own rule, from its memory).
MAX_MODEL_BYTES = "MAX_MODEL_BYTES"

# "true" when every model must carry a signature by a trusted key (the keys themselves are in
# the model-source document): a pod told so refuses an unsigned model even if a document
# without keys is written.
REQUIRE_MODEL_SIGNATURE = "REQUIRE_MODEL_SIGNATURE"

PREDICTOR_ENV = (
    MODEL_SOURCE_FILE,
    MODEL_NAME,
    RELOAD_INTERVAL_SECONDS,
    METRICS_PORT,
    MAX_MODEL_BYTES,
    REQUIRE_MODEL_SIGNATURE,
)
