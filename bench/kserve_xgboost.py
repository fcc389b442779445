"""KServe's Python model server serving the model file the way KServe's xgbserver does.

Runs inside the ``kserve`` peer venv (not the project's): ``python kserve_xgboost.py
--model_name NAME --model_file PATH --http_port P``. Like ``xgbserver.XGBoostModel``: load
with ``xgb.Booster(params={"nthread": n}, model_file=…)``, predict through a ``DMatrix``, and
let KServe's helpers decode the v2 request and encode the response.
"""

from __future__ import annotations

import argparse
from typing import Any

import xgboost as xgb
from kserve import Model, ModelServer, model_server
from kserve.utils.utils import get_predict_input, get_predict_response


class XGBoostModel(Model):  # type: ignore[misc]
    def __init__(self, name: str, model_file: str, nthread: int) -> None:
        super().__init__(name)
        self.model_file = model_file
        self.nthread = nthread
        self.ready = False

    def load(self) -> bool:
        self._booster = xgb.Booster(params={"nthread": self.nthread}, model_file=self.model_file)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        instances = get_predict_input(payload)
        dmatrix = xgb.DMatrix(instances, nthread=self.nthread)
        result = self._booster.predict(dmatrix)
        return get_predict_response(payload, result, self.name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--nthread", type=int, default=1)
    arguments, _ = parser.parse_known_args()
    served = XGBoostModel(arguments.model_name, arguments.model_file, arguments.nthread)
    served.load()
    ModelServer().start([served])
