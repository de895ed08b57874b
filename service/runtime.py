"""Process tuning of the service: the one place that changes how the interpreter and its libraries run.

Applied by the lifespan (service.app), never at import:

* BLAS limited to one thread (`tune_process`). Ranking is one small matrix product per request;
  more BLAS threads only fight each other and the request threads (PITFALLS: p99 1008 ms → 16 ms).
* A short interpreter switch interval (`tune_process`). Background threads (item refresh, model
  poll) can hold the GIL for the whole default interval (5 ms) while a request
  on the event loop waits for it.
* `gc.freeze` (`freeze_heap`) after start-up and after each model swap or catalog refresh, so full
  collections do not walk millions of long-lived objects; `unfreeze_heap` at shutdown.
* FastAPI's OpenTelemetry hooks off (`telemetry`) unless the environment configures OTEL_*: reco's
  metrics are Prometheus (/metrics), and the hooks look up the providers on every request.
"""

from __future__ import annotations

import gc
import os
import sys

from fastapi.telemetry import TelemetryConfig

SWITCH_INTERVAL_S = 0.0005
OTEL_OFF = TelemetryConfig(tracing=False, metrics=False, logs=False)


def tune_process() -> None:
    """One BLAS thread and a short GIL switch interval (blocking start-up work; see module docstring)."""
    from threadpoolctl import threadpool_limits

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    threadpool_limits(1)


def telemetry() -> TelemetryConfig | None:
    """FastAPI's telemetry setting: off (about 15 µs per request here) unless the environment sets OTEL_*."""
    return None if any(k.startswith("OTEL_") for k in os.environ) else OTEL_OFF


def freeze_heap() -> None:
    """Move what start-up allocated (id maps, catalog, Feast registry: millions of long-lived objects)
    out of the garbage collector's view: a full collection walking them stalls every request for
    tens of milliseconds. They are still freed when their last reference goes. Each background
    refresh and model swap freezes again (a new catalog of 50k item entries put p99 at 20 ms,
    measured); the collection first keeps cyclic garbage from being frozen for good."""
    gc.collect()
    gc.freeze()


def unfreeze_heap() -> None:
    """At shutdown: let the interpreter collect the frozen objects as usual."""
    gc.unfreeze()
