"""Purchase histories from basket events: the repurchase signal's counts and the basket-count matrix
the collaborative families are fitted on.

A basket listing an item counts once. `BasketEvents` is the part of a history no half-life changes,
built once over all lines; each split takes its baskets' events instead of sorting its lines again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from training.core.history import History, decay
from training.interactions import Interactions
from training.sorting import narrow, run_numbers, run_starts, sorted_pairs


@dataclass(frozen=True)
class BasketEvents:
    """One event per (basket, item) grouped by (customer, item) pair: the part of a history that
    does not depend on the half-life, so tuning the half-life only re-weights. Events are ordered by
    pair (within a pair, by basket index), so per-pair figures are reductions over contiguous runs."""

    n_users: int
    n_items: int
    keys: np.ndarray  # int64 sorted distinct customer * n_items + item
    pair: np.ndarray  # int32 per event (int64 beyond 2**31 pairs): index into keys (non-decreasing)
    day: np.ndarray  # float64 per event
    baskets: np.ndarray  # float32 per pair
    first_day: np.ndarray
    last_day: np.ndarray
    basket: np.ndarray  # int32 per event (sorting.narrow): its basket index

    def of_baskets(self, keep: np.ndarray) -> BasketEvents:
        """The events of the baskets where `keep` (bool per basket index) is true: what
        `basket_events` gives for the lines of those baskets, without sorting them again."""
        kept = keep[self.basket]
        pair = self.pair[kept]
        present = np.bincount(pair, minlength=len(self.keys)) > 0
        pair = (np.cumsum(present, dtype=pair.dtype) - 1)[pair]
        return _grouped(self.n_users, self.n_items, self.keys[present], pair, self.day[kept], self.basket[kept])


def _grouped(
    n_users: int, n_items: int, keys: np.ndarray, pair: np.ndarray, day: np.ndarray, basket: np.ndarray
) -> BasketEvents:
    """Per-pair figures of events ordered by pair, every pair with one event at least (`ufunc.at`
    instead of `reduceat` was 1.3 s per figure on 10 M events here)."""
    starts = run_starts(pair)
    first_day = np.minimum.reduceat(day, starts) if len(starts) else np.zeros(0)
    last_day = np.maximum.reduceat(day, starts) if len(starts) else np.zeros(0)
    baskets = np.diff(np.r_[starts, len(pair)]).astype(np.float32)
    return BasketEvents(n_users, n_items, keys, pair, day, baskets, first_day, last_day, basket)


def baskets_of(interactions: Interactions, lines: np.ndarray) -> np.ndarray:
    """Bool per basket index: the baskets of the lines where `lines` is true (for `BasketEvents.of_baskets`)."""
    keep = np.zeros(int(interactions.basket.max(initial=-1)) + 1, dtype=bool)
    keep[interactions.basket[lines]] = True
    return keep


def basket_events(interactions: Interactions) -> BasketEvents:
    """Collapse purchase lines to one event per (basket, item) and group them by (customer, item)."""
    n_items = interactions.n_items
    # One sort by (customer, item) and basket: a basket listing an item on several lines is one
    # event, on the day of its earliest line, and each pair's events come in basket order.
    pair_key = interactions.user.astype(np.int64) * n_items + interactions.item
    pair_key, basket, order, starts = sorted_pairs(pair_key, interactions.basket)
    day = np.minimum.reduceat(interactions.day[order], starts) if len(starts) else np.zeros(0)
    del order
    pair_starts = run_starts(pair_key)
    pair = run_numbers(pair_starts, len(pair_key))
    return _grouped(interactions.n_users, n_items, pair_key[pair_starts], pair, day, narrow(basket))


def build_history(
    *, interactions: Interactions, reference_day: float, half_life: float, events: BasketEvents | None = None
) -> History:
    """Per (customer, item): baskets, first and last purchase day and the decayed basket count."""
    ev = events if events is not None else basket_events(interactions)
    if not math.isfinite(half_life):  # every basket weighs 1 (see decay): the decayed count is the basket count
        decayed = ev.baskets
    else:
        weights = decay(age_days=reference_day - ev.day, half_life=half_life)
        decayed = np.bincount(ev.pair, weights=weights, minlength=len(ev.keys)).astype(np.float32)
    users = ev.keys // ev.n_items
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=ev.n_users))]).astype(np.int64)
    return History(
        indptr=indptr,
        indices=(ev.keys % ev.n_items).astype(np.int32),
        baskets=ev.baskets,
        first_day=ev.first_day,
        last_day=ev.last_day,
        decayed=decayed,
        reference_day=float(reference_day),
        half_life=float(half_life),
    )


def history_matrix(history: History, *, n_items: int) -> sp.csr_matrix:
    """Customer × item CSR of basket counts (what the collaborative models are fitted on)."""
    return sp.csr_matrix((history.baskets, history.indices, history.indptr), shape=(history.n_users, n_items))
