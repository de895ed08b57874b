"""Evaluation: candidate models ranked by the ranking core for the same held-out customers, and scored.

Each held-out basket is ranked as of its own day: the customer's history up to it and, through the
bundle's popularity timeline, the popularity of that day from earlier lines only. Metrics are
averaged over the customers with a target in each context; for `home` also split into repeat items
(bought before) and new items, and by segment (new customers: 1–2 earlier baskets; returning: ≥ 3).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from training.algorithms.base import blas_single_thread
from training.core.blend import Blend, Signals, mix_explore, top_blended
from training.core.bundle import ModelBundle
from training.metrics import KS, metrics_from_hits, ranked_hits
from training.split import Holdout

_BATCH = 512
# The items of the held-out basket each context's list is scored against: repeat items are those
# the customer bought before, new items the others.
CONTEXT_TARGETS = {"home": "all", "buy-again": "repeat", "discover": "new"}
RETURNING_MIN_BASKETS = 3
EVAL_THREADS = max(1, min(2, os.cpu_count() or 1))
_Partial = tuple[dict[str, dict[str, float]], dict[str, dict[str, int]], dict[str, dict[str, np.ndarray]]]


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
        seg = segment[start:stop]
        for group in groups.values():
            bundle = group[0].bundle
            if reuse is not None:
                signals, shared = reuse.signals(bundle, start, stop)
            else:
                signals, shared = bundle.signals(rows=rows, now=holdout.now[start:stop]), {}
            n_targets = _target_counts(signals, batch_targets)
            for c in group:
                for context in c.contexts:
                    ids, hits = _ranked(signals, blend=c.blend, context=context, k=kmax, targets=targets, shared=shared)
                    wanted = CONTEXT_TARGETS[context]
                    every = slice(None)
                    parts: list[tuple[str, str, slice | np.ndarray]] = [(f"{context}/", wanted, every)]
                    if detail and context == "home":
                        parts += [(f"{context}/repeat/", "repeat", every), (f"{context}/new/", "new", every)]
                        parts += [(f"{context}/{s}_customers/", "all", seg == s) for s in ("new", "returning")]
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


def _target_counts(signals: Signals, batch_targets: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Per customer of the batch: the held-out basket's items, all of them, the repeat ones (bought
    before) and the new ones, counted on the sparse entries."""
    n_all = np.diff(batch_targets.indptr)
    target_row = np.repeat(np.arange(len(n_all)), n_all)
    repeat = signals.bought[target_row, batch_targets.indices]
    n_repeat = np.bincount(target_row[repeat], minlength=len(n_all))
    return {"all": n_all, "repeat": n_repeat, "new": n_all - n_repeat}


def _ranked(
    signals: Signals, *, blend: Blend, context: str, k: int, targets: np.ndarray, shared: dict[object, object]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(the ranked item ids, −1 for empty places; the hits among all, repeat and new items) of one
    blend's `context` list, as the service serves it: `home` with its explore slots filled from the
    customer's `discover` list when the blend has them (`Blend.home_explore`)."""
    ids, vals = top_blended(signals, blend=blend, context=context, k=k, shared=shared)
    ids = np.where(np.isfinite(vals), ids, -1)
    if context == "home" and blend.home_explore and not blend.home_excludes_bought:
        new_ids, new_vals = top_blended(signals, blend=blend, context="discover", k=k, shared=shared)
        ids = _with_explore(ids, np.where(np.isfinite(new_vals), new_ids, -1), k=k, share=blend.home_explore)
    hit = ranked_hits(top=ids, targets=targets)
    bought = np.take_along_axis(signals.bought, np.maximum(ids, 0), axis=1)
    return ids, {"all": hit, "repeat": hit & bought, "new": hit & ~bought}


def _with_explore(home: np.ndarray, discover: np.ndarray, *, k: int, share: float) -> np.ndarray:
    """Each row's home list with its explore slots taken from its discover list (core.blend.mix_explore,
    as the service mixes them), −1 for empty places."""
    out = np.full((len(home), k), -1, dtype=np.int64)
    for row, (regular, explore) in enumerate(zip(home.tolist(), discover.tolist(), strict=True)):
        mixed = mix_explore([i for i in regular if i >= 0], [i for i in explore if i >= 0], k=k, share=share)
        out[row, : len(mixed)] = mixed
    return out


def customer_scores(
    *,
    candidates: Sequence[Candidate],
    holdout: Holdout,
    metric: str = "ndcg",
    k: int = 10,
    reuse: Reuse | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Each candidate's `metric`@k for every customer of the holdout, per context: {name: {context:
    float array in the holdout's order}}, NaN where the held-out basket has no target for the context.

    The same ranking and metrics as `evaluate` (whose averages over the finite values these are):
    what the champion gate's paired bootstrap resamples, and tuning's choices beyond the interval
    (`reuse`, of this holdout: the signals `evaluate` kept for the same batches)."""
    assert reuse is None or reuse.holdout is holdout, "reuse belongs to another holdout"
    out = {c.name: {context: np.full(len(holdout.users), np.nan) for context in c.contexts} for c in candidates}
    groups: dict[int, list[Candidate]] = defaultdict(list)
    for c in candidates:
        groups[id(c.bundle)].append(c)

    def batch(start: int) -> None:
        stop = min(start + _BATCH, len(holdout.users))
        batch_targets = holdout.targets[start:stop]
        targets = batch_targets.toarray()
        for group in groups.values():
            bundle = group[0].bundle
            if reuse is not None:
                signals, shared = reuse.signals(bundle, start, stop)
            else:
                signals, shared = bundle.signals(rows=holdout.users[start:stop], now=holdout.now[start:stop]), {}
            n_targets = _target_counts(signals, batch_targets)
            for c in group:
                for context in c.contexts:
                    _, hits = _ranked(signals, blend=c.blend, context=context, k=k, targets=targets, shared=shared)
                    wanted = CONTEXT_TARGETS[context]
                    values = metrics_from_hits(hits=hits[wanted], n_targets=n_targets[wanted], k=k)[metric]
                    out[c.name][context][start:stop] = values  # each batch writes its own rows

    starts = range(0, len(holdout.users), _BATCH)
    with blas_single_thread(), ThreadPoolExecutor(EVAL_THREADS) as pool:
        list(pool.map(batch, starts))
    return out
