"""Prometheus metrics. Names and labels are a contract (docs/contracts.md): the Helm chart's
HPA scales on ``mindmirror_queue_depth`` and the Grafana dashboard reads the rest.

Each app owns a registry (not the process-global default), so several apps can live in one
process, as they do in the tests.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ENDPOINTS", "QUEUES", "SCORING_QUEUE", "Metrics"]

#: the batched endpoints; request metrics also use "model" for /v1/model
ENDPOINTS = ("predict", "explain", "evaluate")
#: the queue of scored verdicts (evaluate's scores, explain's verdict round): one decoder step
#: per row, so it never waits behind a rationale batch
SCORING_QUEUE = "verdicts"
#: every batcher's queue (the per-queue metrics' ``endpoint`` label)
QUEUES = (*ENDPOINTS, SCORING_QUEUE)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mindmirror_requests",
            "HTTP requests to the API, by endpoint and status code.",
            ["endpoint", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "mindmirror_request_latency_seconds",
            "Time from request received to response ready (queue + inference + encoding).",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "mindmirror_queue_wait_seconds",
            "Time an input waited in its endpoint's queue before its batch ran.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "mindmirror_inference_seconds",
            "Duration of one batched model call.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "mindmirror_batch_size",
            "Inputs (generations) per executed batch.",
            ["endpoint"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "mindmirror_queue_depth",
            "Inputs waiting in the endpoint's queue now.",
            ["endpoint"],
            registry=r,
        )
        self.generated_tokens = Counter(
            "mindmirror_generated_tokens",
            "Decoder tokens generated.",
            ["endpoint"],
            registry=r,
        )
        self.model_info = Gauge(
            "mindmirror_model_info",
            "The model being served (constant 1).",
            ["task", "backend", "variant", "device"],
            registry=r,
        )
        for endpoint in QUEUES:
            # Present from the start, so dashboards and the HPA see 0 rather than no data.
            self.queue_depth.labels(endpoint).set(0)
            self.generated_tokens.labels(endpoint)
            self.batch_size.labels(endpoint)

    def render(self) -> bytes:
        return generate_latest(self.registry)
