"""Honest evaluation: a chronological split and ranking metrics computed on the ranking core's output.

Split: each customer's last basket is the test, the one before it the validation basket (used for
tuning only), everything earlier is training. (When too few customers have a validation basket,
training.train.prepare holds some customers' last baskets out for tuning instead; they are then
not test customers.) Baskets are orders (`order_id`), or a customer's calendar day when the file
has no order ids. Each held-out basket is ranked as of its own day: the customer's history up to
it and, through the bundle's popularity timeline, the popularity of that day from earlier lines
only. (Other customers' later lines still shape the collaborative part: leave-last-basket-out is
not a global time split.) Metrics @k: NDCG, recall, precision, MAP, hit rate,
catalog coverage, novelty and mean popularity; for `home` also split into repeat items (bought
before) and new items, and by segment (new customers: 1–2 earlier baskets; returning: ≥ 3).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from training.core.blend import Blend, Signals, top_blended
from training.core.bundle import ModelBundle
from training.interactions import Interactions
from training.models import blas_single_thread

KS = (10, 20)
PRIMARY_METRIC = "home/ndcg_at_10"
_BATCH = 512
RETURNING_MIN_BASKETS = 3
EVAL_THREADS = max(1, min(2, os.cpu_count() or 1))
_Partial = tuple[dict[str, dict[str, float]], dict[str, dict[str, int]], dict[str, dict[str, np.ndarray]]]


@dataclass(frozen=True)
class Holdout:
    """Customers evaluated on one held-out basket each."""

    users: np.ndarray  # int64 customer index
    now: np.ndarray  # float64 day of the held-out basket
    targets: sp.csr_matrix  # bool, len(users) × items: items in the held-out basket
    prior_baskets: np.ndarray  # int64: baskets the customer had before it

    def sample(self, *, max_users: int, seed: int = 0) -> Holdout:
        """A reproducible subset of at most `max_users` customers (the same on every run)."""
        if len(self.users) <= max_users:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self.users), size=max_users, replace=False))
        return self.take(keep)

    def take(self, rows: np.ndarray) -> Holdout:
        """The holdout restricted to the given row positions."""
        return Holdout(self.users[rows], self.now[rows], self.targets[rows], self.prior_baskets[rows])

    def concat(self, other: Holdout) -> Holdout:
        """Both holdouts' customers, this one's first."""
        return Holdout(
            np.concatenate([self.users, other.users]),
            np.concatenate([self.now, other.now]),
            sp.vstack([self.targets, other.targets]).tocsr(),
            np.concatenate([self.prior_baskets, other.prior_baskets]),
        )


@dataclass(frozen=True)
class Split:
    """Line masks of a chronological split and the validation / test holdouts."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    validation_holdout: Holdout
    test_holdout: Holdout

    def summary(self) -> dict[str, int]:
        """Sizes, for logging."""
        return {
            "train_lines": int(self.train.sum()),
            "validation_lines": int(self.validation.sum()),
            "test_lines": int(self.test.sum()),
            "validation_customers": len(self.validation_holdout.users),
            "test_customers": len(self.test_holdout.users),
        }


def chronological_split(interactions: Interactions) -> Split:
    """Per customer: last basket → test, the one before → validation, the rest → training."""
    basket = interactions.basket
    n_baskets = int(basket.max()) + 1 if len(basket) else 0
    basket_day = np.full(n_baskets, np.inf)
    np.minimum.at(basket_day, basket, interactions.day)
    basket_user = np.zeros(n_baskets, dtype=np.int64)
    basket_user[basket] = interactions.user
    # Rank each customer's baskets from the most recent (0) backwards.
    order = np.lexsort((-basket_day, basket_user))
    sorted_users = basket_user[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    recency = np.empty(n_baskets, dtype=np.int64)
    recency[order] = np.arange(len(order)) - group_start
    per_user = np.bincount(basket_user, minlength=interactions.n_users)
    n_of_user = per_user[basket_user]
    # A customer needs one earlier basket to be tested, two to be validated as well.
    basket_role = np.zeros(n_baskets, dtype=np.int8)  # 0 train, 1 validation, 2 test
    basket_role[(recency == 0) & (n_of_user >= 2)] = 2
    basket_role[(recency == 1) & (n_of_user >= 3)] = 1
    role = basket_role[basket]
    test, validation = role == 2, role == 1
    return Split(
        train=role == 0,
        validation=validation,
        test=test,
        validation_holdout=_holdout(interactions, basket_role == 1, basket_day, basket_user, n_of_user - 2),
        test_holdout=_holdout(interactions, basket_role == 2, basket_day, basket_user, n_of_user - 1),
    )


def _holdout(
    interactions: Interactions, chosen: np.ndarray, basket_day: np.ndarray, basket_user: np.ndarray, prior: np.ndarray
) -> Holdout:
    baskets = np.flatnonzero(chosen)
    users = basket_user[baskets]
    order = np.argsort(users)
    users, baskets = users[order], baskets[order]
    row_of_user = np.full(interactions.n_users, -1, dtype=np.int64)
    row_of_user[users] = np.arange(len(users))
    in_holdout = chosen[interactions.basket]
    rows = row_of_user[interactions.user[in_holdout]]
    targets = sp.csr_matrix(
        (np.ones(len(rows), dtype=bool), (rows, interactions.item[in_holdout])),
        shape=(len(users), interactions.n_items),
    )
    targets.sum_duplicates()
    targets.data[:] = True
    return Holdout(users.astype(np.int64), basket_day[baskets], targets, prior[baskets].astype(np.int64))


def ranking_metrics(*, top: np.ndarray, targets: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-customer NDCG, recall, precision, AP and hit @k for ranked item indices `top` (rows × ≥k, −1 = empty)
    against boolean `targets` (rows × items); rows without targets get NaN."""
    return metrics_from_hits(hits=_hits(top=top[:, :k], targets=targets), n_targets=targets.sum(axis=1), k=k)


def _hits(*, top: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Bool per ranked position: the item there is a target (−1 = empty, never a hit)."""
    valid = top >= 0
    return np.take_along_axis(targets, np.where(valid, top, 0), axis=1) & valid


def metrics_from_hits(*, hits: np.ndarray, n_targets: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """`ranking_metrics` from the hits of the ranked positions (rows × ≥k) and each row's number of targets."""
    hits = hits[:, :k]
    n_targets = n_targets.astype(np.float64)
    has = n_targets > 0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts[None, :]).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_targets, k).astype(np.int64) - 1]
    n_hits = hits.sum(axis=1)
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)[None, :]
    ap = (precision_at_i * hits).sum(axis=1) / np.maximum(np.minimum(n_targets, k), 1)
    nan = np.full(len(hits), np.nan)
    return {
        "ndcg": np.where(has, dcg / np.where(has, ideal, 1.0), nan),
        "recall": np.where(has, n_hits / np.maximum(n_targets, 1), nan),
        "precision": np.where(has, n_hits / k, nan),
        "map": np.where(has, ap, nan),
        "hit_rate": np.where(has, (n_hits > 0).astype(np.float64), nan),
    }


@dataclass(frozen=True)
class Candidate:
    """One model to evaluate: a name, the bundle whose signals it uses and its blend."""

    name: str
    bundle: ModelBundle
    blend: Blend
    contexts: Sequence[str] = ("home", "buy-again", "discover")


class Reuse:
    """The signals of one holdout's customer batches per bundle, and the dense work their blends
    shared (see top_blended), kept across `evaluate` calls: tuning ranks the same customers with
    dozens of blends of one bundle, a few at a time. Holds the batches' dense signals (≈ 45 MB per
    512 customers on 10k items) until dropped."""

    def __init__(self, holdout: Holdout) -> None:
        self.holdout = holdout
        self._batches: dict[tuple[int, int], tuple[ModelBundle, Signals, dict[object, object]]] = {}

    def signals(self, bundle: ModelBundle, start: int, stop: int) -> tuple[Signals, dict[object, object]]:
        """(signals, their shared work) of the customers start:stop for `bundle`."""
        key = (id(bundle), start)
        entry = self._batches.get(key)
        if entry is None or entry[0] is not bundle:
            signals = bundle.signals(rows=self.holdout.users[start:stop], now=self.holdout.now[start:stop])
            entry = self._batches[key] = (bundle, signals, {})
        return entry[1], entry[2]


def evaluate(
    *,
    candidates: Sequence[Candidate],
    holdout: Holdout,
    ks: Sequence[int] = KS,
    item_share: np.ndarray | None = None,
    detail: bool = True,
    reuse: Reuse | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of every candidate on the same customers: {name: {"home/ndcg_at_10": …}}.

    `item_share` (fraction of training customers who bought each item) feeds novelty and mean
    popularity; `detail=False` computes only the overall metrics per context (for tuning); `reuse`
    (of this holdout) keeps the batches' signals for the next call."""
    assert reuse is None or reuse.holdout is holdout, "reuse belongs to another holdout"
    kmax = max(ks)
    groups: dict[int, list[Candidate]] = defaultdict(list)
    for c in candidates:
        groups[id(c.bundle)].append(c)
    segment = np.where(holdout.prior_baskets >= RETURNING_MIN_BASKETS, "returning", "new")

    def batch(start: int) -> _Partial:
        """Metric sums of one batch of customers (what the loop used to add up in place)."""
        sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        shown: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
        stop = min(start + _BATCH, len(holdout.users))
        rows = holdout.users[start:stop]
        batch_targets = holdout.targets[start:stop]
        targets = batch_targets.toarray()
        # Targets split into repeat items (bought before) and new ones, counted on the sparse entries.
        n_all = np.diff(batch_targets.indptr)
        target_row = np.repeat(np.arange(len(rows)), n_all)
        seg = segment[start:stop]
        for group in groups.values():
            bundle = group[0].bundle
            if reuse is not None:
                signals, shared = reuse.signals(bundle, start, stop)
            else:
                signals, shared = bundle.signals(rows=rows, now=holdout.now[start:stop]), {}
            repeat = signals.bought[target_row, batch_targets.indices]
            n_repeat = np.bincount(target_row[repeat], minlength=len(rows))
            n_targets = {"all": n_all, "repeat": n_repeat, "new": n_all - n_repeat}
            for c in group:
                for context in c.contexts:
                    ids, vals = top_blended(signals, blend=c.blend, context=context, k=kmax, shared=shared)
                    ids = np.where(np.isfinite(vals), ids, -1)
                    wanted = {"home": "all", "buy-again": "repeat", "discover": "new"}[context]
                    every = slice(None)
                    parts: list[tuple[str, str, slice | np.ndarray]] = [(f"{context}/", wanted, every)]
                    if detail and context == "home":
                        parts += [(f"{context}/repeat/", "repeat", every), (f"{context}/new/", "new", every)]
                        parts += [(f"{context}/{s}_customers/", "all", seg == s) for s in ("new", "returning")]
                    hit = _hits(top=ids, targets=targets)
                    bought = np.take_along_axis(signals.bought, np.maximum(ids, 0), axis=1)
                    hits = {"all": hit, "repeat": hit & bought, "new": hit & ~bought}
                    for prefix, name, mask in parts:
                        for k in ks:
                            m = metrics_from_hits(hits=hits[name][mask], n_targets=n_targets[name][mask], k=k)
                            for metric, values in m.items():
                                ok = ~np.isnan(values)
                                sums[c.name][f"{prefix}{metric}_at_{k}"] += float(values[ok].sum())
                                counts[c.name][f"{prefix}{metric}_at_{k}"] += int(ok.sum())
                        counts[c.name][f"{prefix}customers"] += int((n_targets[name][mask] > 0).sum())
                    if detail:
                        for k in ks:
                            key = f"{context}/coverage_at_{k}"
                            seen = shown[c.name].setdefault(key, np.zeros(bundle.n_items, dtype=bool))
                            shown_ids = ids[:, :k]
                            seen[shown_ids[shown_ids >= 0]] = True
                            if item_share is not None:
                                listed = shown_ids[shown_ids >= 0]
                                share = item_share[listed]
                                sums[c.name][f"{context}/novelty_at_{k}"] += float(-np.log2(share + 1e-6).sum())
                                sums[c.name][f"{context}/mean_popularity_at_{k}"] += float(share.sum())
                                counts[c.name][f"{context}/novelty_at_{k}"] += len(listed)
                                counts[c.name][f"{context}/mean_popularity_at_{k}"] += len(listed)
        return sums, counts, shown

    # Batches run in two threads (numpy's sorts and arithmetic release the GIL; the ALS fit is the
    # only other step that uses both cores) and are added up in batch order: the same sums, in the
    # same order, as one loop would give.
    starts = range(0, len(holdout.users), _BATCH)
    with blas_single_thread(), ThreadPoolExecutor(EVAL_THREADS) as pool:  # BLAS: one thread per batch
        partials = list(pool.map(batch, starts))
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    shown: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for part_sums, part_counts, part_shown in partials:
        for name, values in part_sums.items():
            for key, value in values.items():
                sums[name][key] += value
        for name, numbers in part_counts.items():
            for key, number in numbers.items():
                counts[name][key] += number
        for name, masks in part_shown.items():
            for key, mask in masks.items():
                if key in shown[name]:
                    shown[name][key] |= mask
                else:
                    shown[name][key] = mask
    out: dict[str, dict[str, float]] = {}
    for c in candidates:
        metrics = {key: sums[c.name][key] / n for key, n in counts[c.name].items() if n and key in sums[c.name]}
        metrics.update({key: float(n) for key, n in counts[c.name].items() if key.endswith("customers")})
        metrics.update({key: float(v.mean()) for key, v in shown[c.name].items()})
        out[c.name] = dict(sorted(metrics.items()))
    return out


def comparison_table(results: dict[str, dict[str, float]], *, metrics: Sequence[str]) -> str:
    """A Markdown table: one row per model, one column per metric."""
    header = "| model | " + " | ".join(metrics) + " |"
    rule = "|---|" + "---|" * len(metrics)
    rows = [
        f"| {name} | " + " | ".join(f"{values[m]:.4f}" if m in values else "–" for m in metrics) + " |"
        for name, values in results.items()
    ]
    return "\n".join([header, rule, *rows])


TABLE_METRICS = (
    "home/ndcg_at_10",
    "home/recall_at_10",
    "home/precision_at_10",
    "home/map_at_10",
    "home/hit_rate_at_10",
    "home/ndcg_at_20",
    "home/repeat/ndcg_at_10",
    "home/new/ndcg_at_10",
    "home/coverage_at_10",
    "buy-again/ndcg_at_10",
    "discover/ndcg_at_10",
    "discover/recall_at_20",
    "discover/coverage_at_10",
    "discover/novelty_at_10",
)
