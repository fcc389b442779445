"""Two predictor processes with different PYTHONHASHSEED answer identically, unseen values too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from retail_serving.payloads import EXAMPLE

from .conftest import PredictorProcess, wait_for

UNSEEN = [
    {**EXAMPLE, "STORE_REGION": "Z99"},
    {**EXAMPLE, "PROD_CODE_20": "DEP31337", "PROD_CODE_30": "G31337"},
    {**EXAMPLE, "BASKET_TYPE": "Midnight Snack", "STORE_REGION": "Q01"},
]


def test_predictions_do_not_depend_on_the_process_hash_seed(
    tmp_path: Path,
    model_version: Callable[[str], bytes],
    start_predictor: Callable[..., PredictorProcess],
) -> None:
    path = tmp_path / "model.ubj"
    path.write_bytes(model_version("hash-seed"))
    servers = [start_predictor(str(path), {"PYTHONHASHSEED": seed}) for seed in ("1", "2024")]
    for server in servers:
        wait_for(lambda s=server: s.get("/ready").status_code == 200, "the model")  # type: ignore[misc]
    rows = [EXAMPLE, *UNSEEN]
    batches = [server.post("/predict/batch", rows).content for server in servers]
    singles = [[server.post("/predict", row).content for row in rows] for server in servers]
    assert batches[0] == batches[1]
    assert singles[0] == singles[1]
    # The unseen values really are treated as unknown, not silently mapped to a known code:
    answers = servers[0].post("/predict/batch", rows).json()["predictions"]
    assert answers[1]["probability"] != answers[0]["probability"]
