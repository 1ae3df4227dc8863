"""Prometheus metrics of one app instance, in a registry of its own (tests build many apps).

Exposed at ``GET /metrics``:

- ``spp_requests_total{route, method, status, model, protocol}``: finished requests, HTTP
  (``protocol="http"``, the route template, the HTTP method and status) and gRPC
  (``protocol="grpc"``, the RPC name, method ``grpc`` and the gRPC status name); ``model`` is
  the model a model request named (empty for the others);
- ``spp_request_duration_seconds{route, model, protocol}``: latency histogram per route;
- ``spp_stage_duration_seconds{stage}``: per request stage (read, decode, proposals, queue,
  the detector's own stages, inference, render);
- ``spp_in_flight_requests``: HTTP requests being served;
- ``spp_queue_depth``: requests waiting for the inference worker;
- ``spp_admitted_requests``: model requests held (waiting or running), bounded by QUEUE_SIZE;
- ``spp_batch_size``: histogram of requests per inference batch;
- ``spp_rejected_total{reason}``: overload (503), timeout (504), out_of_memory (503);
- ``spp_model_load_seconds``, ``spp_model_ready``: of ``MODEL_NAME`` (as ``/readyz``);
- ``spp_model_info{name, version, device}``: 1 for each loaded model version;
- ``spp_model_memory_bytes{model, kind}``: memory of each loaded model, ``kind`` ``parameters``
  (its weights and buffers) or ``cuda_allocated`` (the CUDA allocator's growth while it loaded
  and warmed up; only on CUDA);
- ``spp_proposals_total{source}``: detection requests by where their windows came from
  (``selective_search``, ``client``, ``cache``);
- ``spp_proposal_cache_hits_total``, ``spp_proposal_cache_misses_total``: lookups of the
  selective-search LRU cache; ``spp_proposal_cache_entries``: results it holds.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """All metrics of the service, registered in :attr:`registry`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "spp_requests",
            "Finished requests.",
            ["route", "method", "status", "model", "protocol"],
            registry=r,
        )
        self.request_latency = Histogram(
            "spp_request_duration_seconds",
            "Request latency per route.",
            ["route", "model", "protocol"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_latency = Histogram(
            "spp_stage_duration_seconds",
            "Time spent per pipeline stage.",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("spp_in_flight_requests", "HTTP requests being served.", registry=r)
        self.queue_depth = Gauge(
            "spp_queue_depth", "Requests waiting for the inference worker.", registry=r
        )
        self.admitted = Gauge(
            "spp_admitted_requests", "Model requests held (waiting or running).", registry=r
        )
        self.batch_size = Histogram(
            "spp_batch_size", "Requests per inference batch.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.rejected = Counter(
            "spp_rejected", "Model requests refused or failed.", ["reason"], registry=r
        )
        self.model_load_seconds = Gauge(
            "spp_model_load_seconds", "Time to load and warm up the model.", registry=r
        )
        self.model_ready = Gauge(
            "spp_model_ready", "1 once the model is loaded and warm.", registry=r
        )
        self.model_info = Gauge(
            "spp_model_info", "The loaded model.", ["name", "version", "device"], registry=r
        )
        self.model_memory = Gauge(
            "spp_model_memory_bytes", "Memory of a loaded model.", ["model", "kind"], registry=r
        )
        self.proposals = Counter(
            "spp_proposals", "Requests by source of their proposals.", ["source"], registry=r
        )
        self.proposal_cache_hits = Counter(
            "spp_proposal_cache_hits", "Selective-search results read from the cache.", registry=r
        )
        self.proposal_cache_misses = Counter(
            "spp_proposal_cache_misses", "Cache lookups that ran selective search.", registry=r
        )
        self.proposal_cache_entries = Gauge(
            "spp_proposal_cache_entries", "Selective-search results in the cache.", registry=r
        )

    def observe_stages(self, timings_ms: Mapping[str, float]) -> None:
        """Record one request's stage timings (milliseconds); ``total`` is skipped."""
        for stage, ms in timings_ms.items():
            if stage != "total":
                self.stage_latency.labels(stage=stage).observe(ms / 1000.0)

    def observe_request(
        self,
        *,
        route: str,
        method: str,
        status: str,
        duration_s: float,
        model: str = "",
        protocol: str = "http",
    ) -> None:
        """Count one finished request and observe its latency."""
        self.requests.labels(
            route=route, method=method, status=status, model=model, protocol=protocol
        ).inc()
        self.request_latency.labels(route=route, model=model, protocol=protocol).observe(duration_s)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
