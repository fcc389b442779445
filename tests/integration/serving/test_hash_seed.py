"""Two predictor processes with different PYTHONHASHSEED answer identically, unseen values too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from retail_serving import artifact
from retail_serving.encoding import UNKNOWN_CODE
from retail_serving.payloads import EXAMPLE
from retail_serving.schema import FEATURE_NAMES

from .conftest import PredictorProcess, wait_for

UNSEEN: list[dict[str, object]] = [
    {**EXAMPLE, "STORE_REGION": "Z99"},
    {**EXAMPLE, "PROD_CODE_20": "DEP31337", "PROD_CODE_30": "G31337"},
    {**EXAMPLE, "BASKET_TYPE": "Midnight Snack", "STORE_REGION": "Q01"},
]
V2_INFER = "/v2/models/price-sensitivity/infer"


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
    # Each unseen value is encoded as the unknown code: the same answer as the encoded tensor
    # with EXAMPLE's codes and the unknown code in the unseen fields, in every process.
    encoder = artifact.load(model_version("hash-seed")).encoder
    known = encoder.encode_rows([EXAMPLE])[0].tolist()
    for row in UNSEEN:
        codes = [
            UNKNOWN_CODE if row[name] != EXAMPLE[name] else code  # type: ignore[literal-required]
            for name, code in zip(FEATURE_NAMES, known, strict=True)
        ]
        assert codes != known
        tensor = {"name": "input-0", "datatype": "FP32", "shape": [1, len(codes)], "data": codes}
        for server in servers:
            encoded = server.post(V2_INFER, {"inputs": [tensor]}).json()["outputs"][0]["data"]
            probabilities = server.post("/predict", row).json()["probability"]
            assert list(probabilities.values()) == [round(p, 6) for p in encoded], row
