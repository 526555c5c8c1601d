"""Prometheus metrics, one registry per app (so several apps in one process never collide).

Requests are labelled by route template (``/v1/classify/{model_name}``), never by raw path, so
the label set stays bounded whatever clients send.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import Receive, Scope, Send

from app.asgi import HttpMiddleware, ResponseWatch

SHARED_DECODE = "(shared)"  # the decode_seconds label of a photo decoded once for several models
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _StateCollector(Collector):
    """Read at scrape time: queue depth and model states need no bookkeeping on the hot path."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self):  # type: ignore[no-untyped-def]
        runner, registry = self._metrics.runner, self._metrics.models
        depth = GaugeMetricFamily(
            "inference_jobs_in_flight", "decode/inference jobs admitted and not finished"
        )
        depth.add_metric([], runner.in_flight if runner else 0)
        yield depth
        waiting = GaugeMetricFamily("batch_queue_depth", "images waiting for a micro-batch", labels=["model"])
        models = GaugeMetricFamily(
            "models", "manifest entries by state (1 = in that state)", labels=["model", "state"]
        )
        for model in registry.entries() if registry else []:
            models.add_metric([model.spec.name, model.state], 1)
            if model.batcher is not None:
                waiting.add_metric([model.spec.name], model.batcher.depth)
        yield waiting
        yield models


class Metrics:
    def __init__(self) -> None:
        # What the scrape reads (``watch``): the inference runner and the model registry. Typed
        # loosely: this module sits below both.
        self.runner: Any = None
        self.models: Any = None
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "http_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "time to the full response", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.fetch_seconds = Histogram(
            "image_fetch_seconds", "img_url download time", buckets=STAGE_BUCKETS, registry=r
        )
        self.fetch_bytes = Histogram(
            "image_fetch_bytes", "img_url body size", buckets=(1e4, 1e5, 5e5, 1e6, 5e6, 2e7), registry=r
        )
        self.decode_seconds = Histogram(
            "image_decode_seconds", "decode + resize", ["model"], buckets=STAGE_BUCKETS, registry=r
        )
        self.photos_decoded = Counter(
            "photo_decodes", "photos decoded: once per photo, however many models read it", registry=r
        )
        self.inference_seconds = Histogram(
            "model_inference_seconds",
            "model call (per request)",
            ["model"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "model_batch_size", "images per micro-batched call", ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=r,
        )  # fmt: skip
        self.info = Gauge("build_info", "service version", ["version"], registry=r)
        r.register(_StateCollector(self))

    def watch(self, runner: object, models: object) -> None:
        self.runner, self.models = runner, models

    def observe_batch(self, model: str, size: int, _seconds: float) -> None:
        self.batch_size.labels(model).observe(size)

    def observe_photo(self, decode_ms: float, infer_ms: dict[str, float]) -> None:
        """One photo decoded once and read by ``infer_ms``'s models: its decode is labelled by
        the model when one read it, else as shared (/v1/identify)."""
        self.photos_decoded.inc()
        label = next(iter(infer_ms)) if len(infer_ms) == 1 else SHARED_DECODE
        self.decode_seconds.labels(label).observe(decode_ms / 1000)
        for model, ms in infer_ms.items():
            self.inference_seconds.labels(model).observe(ms / 1000)

    def observe_fetch(self, fetch_ms: float, size: int) -> None:
        self.fetch_seconds.observe(fetch_ms / 1000)
        self.fetch_bytes.observe(size)


class MetricsMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = getattr(scope["app"].state, "services", None)
        if services is None:  # the lifespan has not opened them (or failed to)
            await self.app(scope, receive, send)
            return
        metrics: Metrics = services.metrics
        started = time.perf_counter()
        response = ResponseWatch(send)
        try:
            await self.app(scope, receive, response.send)
        finally:
            status = response.status or 500  # no response started: the app failed
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            metrics.requests.labels(method, template, str(status)).inc()
            metrics.latency.labels(method, template).observe(time.perf_counter() - started)
