"""The served model: loaded from MLflow, swapped atomically, re-checked in the background.

A request reads `holder.current` once and uses that `LoadedModel` to the end, so a swap (one
reference assignment) never changes a model under a running request and nobody waits for a load:
the new bundle is downloaded, loaded and warmed in a worker thread while the old one serves.

Asking the registry where the model URI points is bounded by RECO_REGISTRY_TIMEOUT_SECONDS. When
it fails with no model loaded yet (MLflow missing, corrupt or hung at start-up), the version this
RECO_HOME served last is loaded from the local model cache (`source: local-cache`, and
/health/ready says why); the next successful check puts the registry back in charge.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from service.observability import MODEL_RELOADS, redact, set_model_info
from service.runtime import freeze_heap

if TYPE_CHECKING:
    from service.config import ServiceSettings
    from training.core.bundle import ModelBundle

log = logging.getLogger("reco.service.model")
T = TypeVar("T")


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model version; `bundle` carries the live item availability."""

    bundle: ModelBundle
    version: str
    uri: str  # as configured, e.g. models:/reco@champion
    resolved_uri: str  # e.g. models:/reco/3
    loaded_at: datetime
    load_seconds: float
    source: str = "registry"  # or "local-cache": the registry did not answer at start-up
    # "Because you bought X" needs X's contribution to the item's score above this (reasons.py).
    reason_floor: float = 0.0


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did."""

    changed: bool
    version: str | None
    previous: str | None
    seconds: float


class ModelHolder:
    """Holds the current model; `reload` loads a new version beside it and swaps the reference."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.last_check: datetime | None = None
        self._lock = threading.Lock()  # one load at a time; readers never take it
        self._in_stock: dict[str, bool] = {}
        # Whether `reco candidates build` published the served version's candidates (its registry tag):
        # until then `home` is ranked per request (service.candidates). None: not a registered version.
        self.candidates_published: bool | None = None

    def reload(self, *, force: bool = False) -> ReloadResult:
        """Resolve the model URI; when it names another version (or `force`), load and swap it in."""
        from training.registry.loading import (
            cached_bundle,
            import_mlflow,
            load_bundle,
            remember_served,
            resolve_version,
            served_version,
        )

        import_mlflow()  # seconds of imports are not the registry's answer: not timed

        started = time.perf_counter()
        with self._lock:
            previous = self.current
            prev_version = previous.version if previous else None
            origin, why, uri = "registry", "", self.settings.model_uri
            published: bool | None = None
            try:
                # With a model to keep serving or a version in the local cache to fall back on, the
                # registry gets a few seconds; without either there is nothing better to serve, so
                # MLflow's own timeouts apply.
                fallback = None if previous is not None else served_version(settings=self.settings, model_uri=uri)
                try:
                    name, version, resolved = _bounded(
                        lambda: resolve_version(uri, settings=self.settings),
                        seconds=self.settings.registry_timeout_seconds if previous or fallback else None,
                    )
                except Exception as exc:
                    if fallback is None:
                        raise
                    name, version = fallback
                    resolved = f"models:/{name}/{version}"
                    bundle = cached_bundle(settings=self.settings, name=name, version=version)
                    origin, why = "local-cache", redact(f"{type(exc).__name__}: {exc}")
                    log.warning(
                        "the registry did not answer (%s): serving version %s from the local cache", why, version
                    )
                else:
                    self.last_check = datetime.now(UTC)
                    if previous is not None and not force and (version is None or version == previous.version):
                        # Same version (or a plain path/run, which cannot move): nothing to do, but
                        # notice when its candidates get published.
                        if version is not None and not self.candidates_published:
                            self.candidates_published = _candidates_published(self.settings, name, version)
                        if previous.source != "registry":
                            self.current, self.last_error = replace(previous, source="registry"), None
                        return ReloadResult(False, prev_version, prev_version, time.perf_counter() - started)
                    # Load the resolved version, not the alias: the alias may move again meanwhile.
                    bundle = load_bundle(resolved if version is not None else uri, settings=self.settings)
                    if version is not None:
                        remember_served(settings=self.settings, model_uri=uri, name=name, version=version)
                        published = _candidates_published(self.settings, name, version)
                _warm(bundle)
                floor = reason_floor(bundle, quantile=self.settings.reason_similarity_quantile)
                bundle = _with_availability(bundle, self._in_stock)
            except Exception as exc:
                self.last_error = redact(f"{type(exc).__name__}: {exc}")
                MODEL_RELOADS.labels(outcome="failed").inc()
                raise
            label = version if version is not None else bundle.version or resolved
            seconds = time.perf_counter() - started
            self.current = LoadedModel(
                bundle=bundle,
                version=str(label),
                uri=self.settings.model_uri,
                resolved_uri=resolved,
                loaded_at=datetime.now(UTC),
                load_seconds=seconds,
                source=origin,
                reason_floor=floor,
            )
            self.candidates_published = published
            if published is False:
                log.warning("no candidates published for version %s yet: home is ranked per request", label)
            self.last_error = None if origin == "registry" else f"registry unreachable at start-up: {why}"
            MODEL_RELOADS.labels(outcome="swapped").inc()
            set_model_info(version=str(label), uri=self.settings.model_uri, previous=prev_version)
            log.info("serving model version %s from %s (%.2f s)", label, resolved, seconds)
            freeze_heap()  # the new model's long-lived objects (poll, /admin/reload, start-up)
            return ReloadResult(True, str(label), prev_version, seconds)

    def set_availability(self, in_stock: dict[str, bool]) -> None:
        """Apply live availability (item_stats.in_stock; merged into what is known) to the served bundle:
        a new bundle, swapped atomically."""
        with self._lock:
            if in_stock.items() <= self._in_stock.items():
                return  # nothing changed (the usual refresh): no 50k-item pass beside requests
            self._in_stock.update(in_stock)
            current = self.current
            if current is not None:
                self.current = replace(current, bundle=_with_availability(current.bundle, self._in_stock))

    async def poll_forever(self, every: float) -> None:
        """Background task: re-resolve the alias every `every` seconds and swap when it moved."""
        while True:
            await asyncio.sleep(every)
            try:
                result = await asyncio.to_thread(self.reload)
                if result.changed:
                    log.info("alias moved: version %s → %s", result.previous, result.version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "model poll failed, keeping version %s: %s", self.current.version if self.current else None, exc
                )


def _bounded(call: Callable[[], T], *, seconds: float | None) -> T:
    """`call()` in a daemon thread, waiting at most `seconds` (None: as long as it takes): a hung
    tracking server must not hold start-up; the thread is left to finish on its own. TimeoutError
    after that."""
    if seconds is None:
        return call()
    done = threading.Event()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:
            outcome.append((False, exc))
        done.set()

    threading.Thread(target=run, name="registry", daemon=True).start()
    if not done.wait(seconds):
        raise TimeoutError(f"no answer from the registry within {seconds:g} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _candidates_published(settings: ServiceSettings, name: str, version: str) -> bool:
    """Whether the registered version carries the tag `reco candidates build` sets once published."""
    from training.registry import CANDIDATES_TAG
    from training.registry.loading import version_tags

    return CANDIDATES_TAG in version_tags(settings=settings, name=name, version=version)


def reason_floor(bundle: ModelBundle, *, quantile: float) -> float:
    """The bar a bought item's contribution must pass to be named in a reason (RECO_REASON_SIMILARITY_QUANTILE)."""
    from training.core.collaborative import contribution_floor

    cf = bundle.collaborative
    return 0.0 if cf is None else contribution_floor(cf, n_items=bundle.n_items, quantile=quantile)


def _warm(bundle: ModelBundle) -> None:
    """Build the id maps and run one ranking so the first real request pays nothing extra."""
    _ = bundle.user_index, bundle.item_index, bundle.co_buyers
    if len(bundle.user_ids):
        bundle.recommend_batch([str(bundle.user_ids[0])], k=10)


def _with_availability(bundle: ModelBundle, in_stock: dict[str, bool]) -> ModelBundle:
    """The bundle with `in_stock` overridden where the online store knows better (a shallow copy)."""
    if not in_stock:
        return bundle
    mask = bundle.in_stock.copy()
    index = bundle.item_index
    for item_id, available in in_stock.items():
        i = index.get(item_id)
        if i is not None:
            mask[i] = bool(available)
    if np.array_equal(mask, bundle.in_stock):
        return bundle
    return replace(bundle, in_stock=mask)
