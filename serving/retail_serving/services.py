"""The per-app objects the routes share: settings, registry, inference engine, metrics, and
``ServicesDep``, the dependency that hands them to a FastAPI route (the prediction routes are
given the same object when they are made)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from retail_serving.admission import BodyBudget
from retail_serving.errors import NoModel, UnknownModel
from retail_serving.inference import InferenceEngine
from retail_serving.metrics import ServingMetrics
from retail_serving.payloads import BatchParser
from retail_serving.registry import ModelRegistry, ServedModel
from retail_serving.settings import ServingSettings


@dataclass(frozen=True, eq=False)
class Services:
    settings: ServingSettings
    registry: ModelRegistry
    engine: InferenceEngine
    metrics: ServingMetrics
    batch_parser: BatchParser
    bodies: BodyBudget  # request body bytes held at once

    def served(self) -> ServedModel:
        """The model to answer with, taken once per request (a reload may swap it after)."""
        current = self.registry.current
        if current is None:
            raise NoModel
        return current

    def served_as(self, name: str) -> ServedModel:
        """The model a v2 route names, which must be the one this server serves."""
        if name != self.settings.model_name:
            raise UnknownModel(name)
        return self.served()


def _services_of(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(_services_of)]
