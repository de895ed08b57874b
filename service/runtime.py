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
* Workers run with `-O` (`optimize_workers`, called by `reco serve` before uvicorn spawns them),
  applied by the command line rather than the lifespan because it must be in place before the
  workers start.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import sys
from pathlib import Path

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


def optimize_workers() -> bool:
    """Make the worker processes that uvicorn spawns next run with `-O` (PYTHONOPTIMIZE=1, which
    they inherit); True when set. A PYTHONOPTIMIZE already in the environment is left as it is.

    Why: Feast decorates its classes with typeguard's @typechecked, which re-reads and recompiles
    their source at every import unless `-O` is on. That is most of the 4 s Feast's import takes,
    in every worker at every start. With `-O`, a worker's imports take 4.0-4.7 s instead of 9.2-9.4 s,
    and `reco serve` is ready in 7.1-8.0 s instead of 10.7-11.9 s (100k customers, 2 workers,
    alternating starts). What `-O` also turns off: `assert` statements (reco's own only narrow types
    for mypy) and `if __debug__:` blocks.

    Only with the optimized bytecode on disk (`make install` and the Dockerfile compile it). Under
    PYTHONDONTWRITEBYTECODE (set in the image) without it, every start would compile from source,
    slower than without `-O` (15-19 s measured), so nothing is set then.
    Guarded by tests/unit/service/test_runtime.py; the fault suite's servers run their workers this way."""
    if "PYTHONOPTIMIZE" in os.environ or not optimized_bytecode_present():
        return False
    os.environ["PYTHONOPTIMIZE"] = "1"
    return True


def optimized_bytecode_present() -> bool:
    """Whether Feast's feature-view module (one of those typeguard recompiles) has `-O` bytecode
    beside it. Looked up without importing Feast."""
    spec = importlib.util.find_spec("feast")
    if spec is None or spec.origin is None:
        return False
    source = Path(spec.origin).with_name("feature_view.py")
    return Path(importlib.util.cache_from_source(str(source), optimization=1)).exists()
