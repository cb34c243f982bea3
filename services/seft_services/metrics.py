"""Prometheus metrics of a service process, in a registry of its own (several servers can share
one process, as in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("seft_requests", "gRPC calls by method and status code",
                                ["method", "code"], registry=self.registry)
        self.inflight = Gauge("seft_requests_in_flight", "gRPC calls being served", ["method"],
                              registry=self.registry)
        self.latency = Histogram("seft_request_seconds", "gRPC call latency", ["method"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch = Histogram("seft_batch_items", "items per call", ["method"], buckets=BATCH_BUCKETS,
                               registry=self.registry)
        self.tokens = Counter("seft_tokens_generated", "completion tokens generated", ["method"],
                              registry=self.registry)
        self.backend_batch = Histogram("seft_backend_batch_items", "items per backend call, after dynamic batching",
                                       ["service"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.labels = Counter("seft_revision_labels", "revision labels emitted", ["label"], registry=self.registry)
