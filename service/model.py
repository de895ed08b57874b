"""The served model: loaded from MLflow, swapped atomically, re-checked in the background.

A request reads `holder.current` once and uses that `LoadedModel` to the end, so a swap (one
reference assignment) never changes a model under a running request and nobody waits for a load:
the new bundle is downloaded, loaded and warmed in a worker thread while the old one serves.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from service.observability import MODEL_RELOADS, redact, set_model_info
from service.runtime import freeze_heap

if TYPE_CHECKING:
    from service.config import ServiceSettings
    from training.core.bundle import ModelBundle

log = logging.getLogger("reco.service.model")


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model version; `bundle` carries the live item availability."""

    bundle: ModelBundle
    version: str
    uri: str  # as configured, e.g. models:/reco@champion
    resolved_uri: str  # e.g. models:/reco/3
    loaded_at: datetime
    load_seconds: float
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
        from training.registry.loading import load_bundle, resolve_version

        started = time.perf_counter()
        with self._lock:
            previous = self.current
            prev_version = previous.version if previous else None
            try:
                name, version, resolved = resolve_version(self.settings.model_uri, settings=self.settings)
                self.last_check = datetime.now(UTC)
                if previous is not None and not force and (version is None or version == previous.version):
                    # Same version (or a plain path/run, which cannot move): nothing to do, but
                    # notice when its candidates get published.
                    if version is not None and not self.candidates_published:
                        self.candidates_published = _candidates_published(self.settings, name, version)
                    return ReloadResult(False, prev_version, prev_version, time.perf_counter() - started)
                # Load the resolved version, not the alias: the alias may move again meanwhile.
                source = resolved if version is not None else self.settings.model_uri
                bundle = load_bundle(source, settings=self.settings)
                _warm(bundle)
                floor = reason_floor(bundle, quantile=self.settings.reason_similarity_quantile)
                bundle = _with_availability(bundle, self._in_stock)
                published = None if version is None else _candidates_published(self.settings, name, version)
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
                reason_floor=floor,
            )
            self.candidates_published = published
            if published is False:
                log.warning("no candidates published for version %s yet: home is ranked per request", label)
            self.last_error = None
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
