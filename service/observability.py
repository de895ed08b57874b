"""Request ids, Prometheus metrics and logging for the service.

A pure ASGI middleware (no BaseHTTPMiddleware: it costs a task and a copy per request) gives every
request an id (the caller's `X-Request-ID` when it is sane, else a new one), puts it in a context
variable that log records and error bodies read, returns it as a header, and records the latency
per route template (never the raw path: it holds customer ids).

With several workers `reco serve` sets PROMETHEUS_MULTIPROC_DIR, and /metrics aggregates the
workers' files (prometheus_client's multiprocess mode). The mode is the one prometheus_client chose
when it was first imported, not the variable's value now: `import feast` sets
PROMETHEUS_MULTIPROC_DIR for its own metrics, after this module's counters already count in memory.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_request_id: ContextVar[str] = ContextVar("request_id", default="-")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """Hide the `user:password@` of any URL in a message (MLflow and Redis errors quote their URIs)."""
    return _URL_CREDENTIALS.sub("***@", text)


LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUEST_SECONDS = Histogram(
    "reco_http_request_duration_seconds",
    "Latency of HTTP requests by route template, method and status.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
ANSWER_SOURCE = Counter(
    "reco_answers_total", "Answers by endpoint and the fallback-chain link that served them.", ["endpoint", "source"]
)
DEGRADED = Counter(
    "reco_degraded_total", "Answers given without a dependency, by endpoint and reason.", ["endpoint", "reason"]
)
FEATURE_SECONDS = Histogram(
    "reco_feature_read_seconds",
    "Online-store reads by view group and outcome.",
    ["group", "outcome"],
    buckets=LATENCY_BUCKETS,
)
STALE_FEATURES = Counter(
    "reco_stale_features_total",
    "Online rows older than their feature view's ttl, read and ignored (Feast does not enforce ttl).",
    ["view"],
)
MODEL_INFO = Gauge(
    "reco_model_info", "1 for the model version this worker serves.", ["version", "uri"], multiprocess_mode="livemax"
)
CANDIDATE_READS = Counter(
    "reco_candidates_total",
    "Home answers by what the customer's offline candidates gave: used, none (none of the served model "
    "version), filtered (too few passed the live filters; ranked on the spot).",
    ["outcome"],
)
MODEL_RELOADS = Counter("reco_model_reloads_total", "Model reload attempts by outcome.", ["outcome"])
EVENTS = Counter("reco_events_total", "Posted events by outcome (accepted, duplicate, rejected).", ["outcome"])


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@functools.cache
def labelled(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)` looked up once per label set (a `labels` call costs several µs, and
    a request makes three). Only for label values from a fixed set: the cache keeps every set."""
    return metric.labels(*values)


def current_request_id() -> str:
    """The id of the request being served ("-" outside a request)."""
    return _request_id.get()


def metrics_body() -> tuple[bytes, str]:
    """The Prometheus exposition of this process, or of every worker in multiprocess mode."""
    if _values_in_files() and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def _values_in_files() -> bool:
    """Whether prometheus_client keeps metric values in per-process files (multiprocess mode)."""
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


def set_model_info(*, version: str | None, uri: str, previous: str | None) -> None:
    """Point the model-info gauge at the served version."""
    if previous is not None:
        MODEL_INFO.labels(version=previous, uri=uri).set(0)
    if version is not None:
        MODEL_INFO.labels(version=version, uri=uri).set(1)


class RequestContextMiddleware:
    """Request id, latency histogram and the last stop of unhandled exceptions, as one plain ASGI
    middleware (every layer wraps `send` once more on every request).

    An exception no handler took is answered with `unexpected(scope, exc)` (when no response has
    started yet) and goes no further."""

    def __init__(self, app: Any, unexpected: Callable[[dict[str, Any], BaseException], Any]) -> None:
        self.app = app
        self.unexpected = unexpected

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        # An id, not a secret: the random module is reseeded in every forked worker.
        request_id = incoming if _SANE_ID.match(incoming) else f"{random.getrandbits(128):032x}"
        token = _request_id.set(request_id)
        started = time.perf_counter()
        status: int | None = None
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            response = self.unexpected(scope, exc)
            if status is None:
                await response(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"  # a client picks it
            labelled(REQUEST_SECONDS, template, method, str(status or 500)).observe(time.perf_counter() - started)
            _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str = "INFO") -> None:
    """One line per record with the request id; customer ids and keys are only logged at DEBUG."""
    logger = logging.getLogger("reco")
    if any(isinstance(f, RequestIdFilter) for h in logger.handlers for f in h.filters):
        return
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
