"""Candidate cache: each known customer's top-N "home" list from the ranking core, per model version,
and their top N/2 "discover" list (home's explore slots, RECO_HOME_EXPLORE_SHARE, come from it).

Scoring a customer against the whole catalogue costs about a millisecond at 50k items; the scores
depend only on the model version (the core ranks as of the model's reference day), so the
unfiltered top-N is computed once per customer and version: lazily on a miss, and for every
customer by a background pass after each load. A request then only applies its live filters
(excluded, just bought, out of stock) to the cached list, which gives exactly the core's answer as
long as at least k candidates survive the filters; otherwise the core ranks on the spot.

Memory: customers × 1.5 N × 8 bytes (100k × 50 = 60 MB).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from training.core.blend import explore_slots, mix_explore
from training.core.bundle import ModelBundle
from training.core.topk import top_k

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
        self.explore_size = max(1, size // 2)
        self.explore_items = np.full((n_users, self.explore_size), -1, dtype=np.int32)
        self.explore_scores = np.zeros((n_users, self.explore_size), dtype=np.float32)
        self.explore_lengths = np.zeros(n_users, dtype=np.int32)
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

    def explore_row(self, bundle: ModelBundle, user_row: int) -> tuple[np.ndarray, np.ndarray]:
        """The cached discover list of a customer row (item indices, scores), computing it on a miss."""
        if not self.filled[user_row]:
            self._fill(bundle, np.array([user_row]))
        n = self.explore_lengths[user_row]
        return self.explore_items[user_row, :n], self.explore_scores[user_row, :n]

    def _fill(self, bundle: ModelBundle, rows: np.ndarray) -> None:
        # Customer rows of the table are the bundle's history rows (both follow bundle.user_ids).
        # What bundle.top_rows gives per context, from one computation of the signals.
        in_stock = bundle.allowed_items()
        scored = bundle.score_contexts(rows=rows, contexts=("home", "discover"))
        for scores, size, items, values, lengths in (
            (scored["home"], self.size, self.items, self.scores, self.lengths),
            (scored["discover"], self.explore_size, self.explore_items, self.explore_scores, self.explore_lengths),
        ):
            scores[:, ~in_stock] = -np.inf
            ids, top = top_k(scores, k=size)
            finite = np.isfinite(top)
            items[rows, : ids.shape[1]] = np.where(finite, ids, -1)
            values[rows, : ids.shape[1]] = np.where(finite, top, 0.0)
            lengths[rows] = finite.sum(axis=1)  # the core ranks finite scores first
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
    bundle: ModelBundle,
    table: CandidateTable,
    *,
    user_row: int,
    k: int,
    excluded: Sequence[str],
    exclude_categories: Sequence[str] = (),
    explore_share: float = 0.0,
) -> list[tuple[str, float]] | None:
    """The first k cached candidates that pass the live filters, with the discover list's first in
    the explore slots (`explore_share`, core.blend.mix_explore); None when the filters leave too few."""
    listed, scores = table.row(bundle, user_row)
    # The one filter every list goes through, on the cached candidates only.
    allowed = bundle.allowed_items(exclude_items=excluded, exclude_categories=exclude_categories, among=listed)
    chosen = np.flatnonzero(allowed)[:k]
    if len(chosen) < k and len(listed) == table.size:
        return None  # filters ate too many of a full list: the core ranks on the spot
    # Fewer than k only when the customer's whole list is shorter than N.
    regular = list(zip(listed[chosen].tolist(), scores[chosen].tolist(), strict=True))
    wanted = len(explore_slots(k=k, share=explore_share))
    if wanted:
        explore_listed, explore_scores = table.explore_row(bundle, user_row)
        explore_allowed = bundle.allowed_items(
            exclude_items=excluded, exclude_categories=exclude_categories, among=explore_listed
        )
        picked = np.flatnonzero(explore_allowed)[: wanted + k]
        if len(picked) < wanted and len(explore_listed) == table.explore_size:
            return None
        explore = list(zip(explore_listed[picked].tolist(), explore_scores[picked].tolist(), strict=True))
        regular = mixed(regular, explore, k=k, share=explore_share)
    return [(str(bundle.item_ids[i]), s) for i, s in regular]


def mixed(
    regular: list[tuple[int, float]], explore: list[tuple[int, float]], *, k: int, share: float
) -> list[tuple[int, float]]:
    """`mix_explore` of two ranked (item, score) lists; each item keeps the score of the list it came from."""
    score = {**dict(explore), **dict(regular)}
    return [(i, score[i]) for i in mix_explore([i for i, _ in regular], [i for i, _ in explore], k=k, share=share)]
