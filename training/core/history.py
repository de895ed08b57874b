"""Purchase histories and the time-based signals read from them.

`History` holds, per (customer, item) pair, how many baskets held the item, its first and last
purchase day and the recency-weighted basket count. Two formulas live here and nowhere else:
`rebuy_interval` (a customer's usual days between two purchases of an item) and `due_boost` (how
"due" an item is, from the days since its last purchase against that interval). The service's
reasons and recipe carts read the same interval the model ranks with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

DUE_WIDTH = 0.6  # log-scale width of the "due" bump around the customer's usual interval


@dataclass(frozen=True)
class History:
    """Customer × item purchase history in CSR form with parallel per-pair arrays."""

    indptr: np.ndarray  # int64, n_users + 1
    indices: np.ndarray  # int32 item index per pair
    baskets: np.ndarray  # float32: baskets containing the item
    first_day: np.ndarray  # float64: first purchase, days since epoch
    last_day: np.ndarray  # float64: last purchase
    decayed: np.ndarray  # float32: Σ 0.5^((reference_day − day) / half_life) over the baskets
    reference_day: float
    half_life: float

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def row(self, user: int) -> slice:
        """The pair positions of one customer row."""
        return slice(int(self.indptr[user]), int(self.indptr[user + 1]))

    def positions(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row number within `rows`, position in the pair arrays) for every pair of those rows."""
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        total = int(lengths.sum())
        row_of = np.repeat(np.arange(len(rows)), lengths)
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return row_of, offsets + np.arange(total)

    def buyers_since(self, day: float, *, n_items: int) -> np.ndarray:
        """Per item, how many customers bought it on `day` or later (their last purchase of it is)."""
        return np.bincount(self.indices[self.last_day >= day], minlength=n_items)

    def interval(self, pos: int) -> float:
        """The customer's usual days between purchases of the item at pair position `pos`."""
        return float(
            rebuy_interval(first_day=self.first_day[pos], last_day=self.last_day[pos], baskets=self.baskets[pos])
        )


@dataclass(frozen=True)
class CoBuyers:
    """The history by item: which customers bought each item, to count the customers who bought two
    items (the co-purchase evidence a reason quotes)."""

    indptr: np.ndarray  # int64, n_items + 1
    customers: np.ndarray  # int32 customer rows, ascending within each item
    n_customers: int  # customers with a history

    @classmethod
    def of(cls, history: History, *, n_items: int) -> CoBuyers:
        """Transpose a history: its pairs as a CSC matrix, whose rows are ascending within each item."""
        pairs = (np.ones(len(history.indices), dtype=bool), history.indices, history.indptr)
        bought = sp.csr_array(pairs, shape=(history.n_users, n_items)).tocsc()
        return cls(
            indptr=bought.indptr.astype(np.int64),
            customers=bought.indices.astype(np.int32),
            n_customers=int((np.diff(history.indptr) > 0).sum()),
        )

    def buyers(self, item: int) -> int:
        """How many customers bought the item."""
        return int(self.indptr[item + 1] - self.indptr[item])

    def together(self, anchor: int, items: np.ndarray) -> np.ndarray:
        """Per item of `items`, how many customers bought both it and `anchor`."""
        of_anchor = self.customers[self.indptr[anchor] : self.indptr[anchor + 1]]
        counts = np.zeros(len(items), dtype=np.int64)
        for n, item in enumerate(np.asarray(items).tolist()):
            of_item = self.customers[self.indptr[item] : self.indptr[item + 1]]
            small, large = (of_item, of_anchor) if len(of_item) < len(of_anchor) else (of_anchor, of_item)
            if len(small):
                at = np.minimum(np.searchsorted(large, small), max(len(large) - 1, 0))
                counts[n] = int((large[at] == small).sum()) if len(large) else 0
        return counts


def rebuy_interval(*, first_day: np.ndarray, last_day: np.ndarray, baskets: np.ndarray) -> np.ndarray:
    """Mean days between consecutive purchases: the span from first to last over (baskets − 1);
    the span itself when there was one basket (arrays or scalars)."""
    return (last_day - first_day) / np.maximum(baskets - 1, 1)


def due_boost(*, interval: np.ndarray, since: np.ndarray, baskets: np.ndarray) -> np.ndarray:
    """1 when the days since the last purchase equal the usual interval, falling off on a log scale
    (a Gaussian of width DUE_WIDTH); 0 for items bought once or at intervals under half a day."""
    ratio = np.log(np.maximum(since, 1e-3) / np.maximum(interval, 1e-3))
    return np.where((baskets >= 2) & (interval > 0.5), np.exp(-0.5 * (ratio / DUE_WIDTH) ** 2), 0.0)


# Items with few buyers borrow this many buyers' worth of the average repeat rate; the odds of a
# customer's repeat share are taken with this much added to both sides (a new customer's are 1).
REPEAT_RATE_PRIOR_BUYERS = 5.0
REPEAT_ODDS_SMOOTHING = 0.05


def item_repeat_rates(history: History, *, n_items: int) -> np.ndarray:
    """Per item, the share of its buyers who bought it in two baskets or more, shrunk towards the
    share over all items by REPEAT_RATE_PRIOR_BUYERS (float64; the average for items nobody bought)."""
    buyers = np.bincount(history.indices, minlength=n_items).astype(np.float64)
    repeaters = np.bincount(history.indices[history.baskets >= 2], minlength=n_items).astype(np.float64)
    overall = repeaters.sum() / buyers.sum() if buyers.sum() else 0.0
    return (repeaters + REPEAT_RATE_PRIOR_BUYERS * overall) / (buyers + REPEAT_RATE_PRIOR_BUYERS)


def repeat_odds(*, baskets: np.ndarray, row_of: np.ndarray, rows: int) -> np.ndarray:
    """Per row, the odds that one of the customer's purchases repeats an earlier one: their repeat share
    (1 − items / item-baskets) over the rest, smoothed by REPEAT_ODDS_SMOOTHING. `baskets` are the
    customers' pairs' basket counts and `row_of` each pair's row."""
    total = np.bincount(row_of, weights=baskets, minlength=rows)
    distinct = np.bincount(row_of, minlength=rows)
    share = np.divide(total - distinct, total, out=np.zeros(rows), where=total > 0)
    return (share + REPEAT_ODDS_SMOOTHING) / (1.0 - share + REPEAT_ODDS_SMOOTHING)


@dataclass(frozen=True)
class PopularityTimeline:
    """Recency-weighted popularity as of past days, from snapshots (each scaled to max 1).

    Evaluation ranks each held-out basket with the popularity of its own day, counting only lines
    before it, as production does at serving time. Popularity as of the end of the data would tell
    an early customer what became popular after their basket, and misses what was popular then."""

    days: np.ndarray  # float64, ascending: snapshot k counts the lines before days[k]
    values: np.ndarray  # float32, snapshots × items

    def at(self, now: np.ndarray) -> np.ndarray:
        """Popularity (rows × items) as of the latest snapshot at or before each `now`."""
        index = np.searchsorted(self.days, np.asarray(now, dtype=np.float64), side="right") - 1
        return self.values[np.clip(index, 0, len(self.days) - 1)]


def decay(*, age_days: np.ndarray, half_life: float) -> np.ndarray:
    """0.5^(age / half_life); an infinite half-life weighs every purchase 1."""
    if not math.isfinite(half_life):
        return np.ones_like(age_days, dtype=np.float64)
    # One new array (np.maximum's), worked on in place: the ages are millions of lines long.
    exponent = np.asarray(np.maximum(age_days, 0.0), dtype=np.float64)
    exponent *= -1.0 / half_life
    return np.exp2(exponent, out=exponent)
