"""Prometheus metrics. With several workers, `serve` sets
PROMETHEUS_MULTIPROC_DIR before the workers start and /metrics aggregates
every process's values.
"""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

LIKE_ATTEMPTS = Counter("likes_like_attempts_total", "Like and unlike requests, by op and result.", ["op", "result"])
RATE_LIMIT_HITS = Counter("likes_rate_limit_hits_total", "Requests refused with 429, by kind.", ["kind"])
DATABASE_ERRORS = Counter("likes_database_errors_total", "Requests that failed on the database.")
CACHE_HITS = Counter("likes_cache_hits_total", "Counts served from the Redis cache.")
CACHE_MISSES = Counter("likes_cache_misses_total", "Counts not in the Redis cache.")
REQUEST_DURATION = Histogram("likes_request_duration_seconds", "Request duration, by route and status.",
                             ["route", "status"],
                             buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST

# Export the labelled series at zero from the start, so dashboards and alerts see them.
for _kind in ("write", "read"):
    RATE_LIMIT_HITS.labels(_kind)
