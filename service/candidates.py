"""Candidate cache: each known customer's top-N "home" list from the ranking core, per model version.

Scoring a customer against the whole catalogue costs about a millisecond at 50k items; the scores
depend only on the model version (the core ranks as of the model's reference day), so the
unfiltered top-N is computed once per customer and version: lazily on a miss, and for every
customer by a background pass after each load. A request then only applies its live filters
(excluded, just bought, out of stock) to the cached list, which gives exactly the core's answer as
long as at least k candidates survive the filters; otherwise the core ranks on the spot.

Memory: customers × N × 8 bytes (100k × 50 = 40 MB).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from training.core.bundle import ModelBundle

log = logging.getLogger("reco.service.candidates")

BATCH = 256


class CandidateTable:
    """top-N item indices and scores per customer row; `filled` marks rows computed so far."""

    def __init__(self, n_users: int, size: int) -> None:
        self.size = size
        self.items = np.full((n_users, size), -1, dtype=np.int32)
        self.scores = np.zeros((n_users, size), dtype=np.float32)
        self.filled = np.zeros(n_users, dtype=bool)
        self.lengths = np.zeros(n_users, dtype=np.int32)  # candidates per row (fewer than N: few items)
        self.precompute_seconds: float | None = None
        self._stop = threading.Event()

    @property
    def fill_ratio(self) -> float:
        return float(self.filled.mean()) if len(self.filled) else 1.0

    def stop(self) -> None:
        self._stop.set()

    def row(self, bundle: ModelBundle, user_row: int) -> tuple[np.ndarray, np.ndarray]:
        """The cached list of a customer row (item indices, scores), computing it on a miss."""
        if not self.filled[user_row]:
            self._fill(bundle, np.array([user_row]))
        n = self.lengths[user_row]
        return self.items[user_row, :n], self.scores[user_row, :n]

    def _fill(self, bundle: ModelBundle, rows: np.ndarray) -> None:
        # Customer rows of the table are the bundle's history rows (both follow bundle.user_ids).
        ids, scores = bundle.top_rows(rows, k=self.size, context="home")
        finite = np.isfinite(scores)
        self.items[rows, : ids.shape[1]] = np.where(finite, ids, -1)
        self.scores[rows, : ids.shape[1]] = np.where(finite, scores, 0.0)
        self.lengths[rows] = finite.sum(axis=1)  # the core ranks finite scores first
        self.filled[rows] = True

    def precompute(self, bundle: ModelBundle, *, pause: Callable[[], None] = lambda: None) -> None:
        """Fill every customer row in batches (background thread; stops when `stop()` is called)."""
        started = time.perf_counter()
        n = len(self.filled)
        for start in range(0, n, BATCH):
            if self._stop.is_set():
                return
            rows = np.arange(start, min(start + BATCH, n))
            rows = rows[~self.filled[rows]]
            if len(rows):
                self._fill(bundle, rows)
            pause()
        self.precompute_seconds = time.perf_counter() - started
        log.info("candidates for %d customers computed in %.1f s", n, self.precompute_seconds)


def top_from_candidates(
    bundle: ModelBundle, table: CandidateTable, *, user_row: int, k: int, excluded: Sequence[str]
) -> list[tuple[str, float]] | None:
    """The first k cached candidates that pass the live filters, or None when fewer than k survive."""
    listed, scores = table.row(bundle, user_row)
    keep = bundle.allowed_items(exclude_items=excluded)[listed]  # the one filter every list goes through
    chosen = np.flatnonzero(keep)[:k]
    if len(chosen) < k and len(listed) == table.size:
        return None  # filters ate too many of a full list: the core ranks on the spot
    # Fewer than k only when the customer's whole list is shorter than N.
    return list(zip(bundle.item_ids[listed[chosen]].tolist(), scores[chosen].tolist(), strict=True))
