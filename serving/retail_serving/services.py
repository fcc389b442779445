"""The per-app objects the routes share: settings, registry, inference engine, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from retail_serving.inference import InferenceEngine
from retail_serving.metrics import ServingMetrics
from retail_serving.payloads import BatchParser
from retail_serving.registry import ModelRegistry
from retail_serving.settings import ServingSettings


@dataclass(frozen=True, eq=False)
class Services:
    settings: ServingSettings
    registry: ModelRegistry
    engine: InferenceEngine
    metrics: ServingMetrics
    batch_parser: BatchParser
