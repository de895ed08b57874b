"""Next-basket methods from the literature against the default's repeat part, on validation only.

    .venv/bin/python experiments/next_basket.py [--dataset grocery] [--param KEY=VALUE ...]

Runs `reco train`'s split and tuning on a real dataset of experiments/real_data.py (fetched and
converted once, as there), then, on the validation customers the default was tuned on (never the
test), ranks `home` lists with variants of the repurchase signal and with the published methods,
each against the default's tuned blend (a paired bootstrap over the validation customers,
training.gate.paired_bootstrap):

  basket order   the personal count decayed by the number of the customer's baskets since the
                 purchase (TIFU-KNN's within-customer decay), alone or times the tuned day decay
  TIFU-KNN       Hu et al. (KDD 2020): groups of baskets decayed within (r_b) and across (r_g),
                 cosine neighbours' mean mixed in with weight 1 − α, the published settings
  UP@r           the personal count over the customer's last r baskets only (UP-CF@r's recency)
  smoothing      the repurchase signal of bought items mixed with the mean of the customer's
                 k nearest neighbours' (cosine over the decayed histories), weight 1 − α
  repeat by k    the item's share of buyers who came back after their k-th basket with it, instead
                 of the share who came back at all (Blend.item_repeat)
  explore slot   the served home list with its explore slot (Blend.home_explore) against the blend
                 alone: what the fixed policy costs on this data (a policy, not a model choice)
  re-ranker      the learned re-ranker of `home` as `reco train` fits it (training.pipeline.rerank:
                 LightGBM's LambdaRank over the blend's first 50 items, learnt from earlier baskets)

Variants that replace the repurchase signal keep the default's blend weights. The last line is
JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from real_data import DATASETS, fetch  # noqa: E402

from training.algorithms.blends import baseline_blend  # noqa: E402
from training.algorithms.repurchase import BasketEvents  # noqa: E402
from training.core.blend import Blend  # noqa: E402
from training.core.bundle import ModelBundle  # noqa: E402
from training.core.history import decay  # noqa: E402
from training.core.topk import top_k  # noqa: E402
from training.data.load import load_purchases  # noqa: E402
from training.evaluate import Candidate, customer_scores  # noqa: E402
from training.gate import paired_bootstrap  # noqa: E402
from training.metrics import metrics_from_hits, ranked_hits  # noqa: E402
from training.pipeline import rerank  # noqa: E402
from training.pipeline.fit import DEFAULT_EVAL_USERS, Fitted, fit_configuration, parse_params  # noqa: E402
from training.pipeline.prepare import Prepared, prepare  # noqa: E402
from training.sorting import run_starts, unique_inverse  # noqa: E402
from training.split import Holdout  # noqa: E402

K = 10
BASKET_HALF_LIVES = (5.0, 10.0, 20.0, 40.0)
TIFU_SETTINGS = ((3, 0.9, 0.6, 900, 0.2), (7, 0.9, 0.7, 300, 0.7), (7, 0.9, 0.7, 100, 0.9))  # m, r_b, r_g, k, α
WINDOWS = (10, 25, 50)
SMOOTHING = ((100, 0.8), (100, 0.9), (900, 0.8), (900, 0.9))  # k, α
REPEAT_BY_COUNT_MAX = 8


def basket_order(events: BasketEvents) -> tuple[np.ndarray, np.ndarray]:
    """Per event: how many of the customer's baskets came after its basket (0: the last one), and how
    many baskets the customer has. Baskets are ordered by day, then by index."""
    basket, inverse = unique_inverse(events.basket)
    day = np.full(len(basket), np.inf)
    np.minimum.at(day, inverse, events.day)
    customer = np.zeros(len(basket), dtype=np.int64)
    customer[inverse] = events.keys[events.pair] // events.n_items
    order = np.lexsort((basket, day, customer))
    starts = run_starts(customer[order])
    lengths = np.diff(np.r_[starts, len(order)])
    position = np.arange(len(order)) - np.repeat(starts, lengths)
    after = np.empty(len(basket), dtype=np.int64)
    count = np.empty(len(basket), dtype=np.int64)
    after[order] = np.repeat(lengths, lengths) - 1 - position
    count[order] = np.repeat(lengths, lengths)
    return after[inverse], count[inverse]


def per_pair(events: BasketEvents, weights: np.ndarray) -> np.ndarray:
    """Sum of per-event weights for each (customer, item) pair of the events, as a history's `decayed`."""
    return np.bincount(events.pair, weights=weights, minlength=len(events.keys)).astype(np.float32)


def tifu_vectors(events: BasketEvents, after: np.ndarray, count: np.ndarray, *, m: int, r_b: float, r_g: float):
    """TIFU-KNN's customer vectors (customers × items): the baskets split into m groups by order, each
    basket decayed by r_b per later basket of its group, each group by r_g per later group, averaged."""
    groups = np.minimum(m, count)
    position = count - 1 - after  # 0: the first basket
    group = position * groups // count
    start, end = -(-group * count // groups), -(-(group + 1) * count // groups)
    weights = r_b ** (end - 1 - position) / (end - start) * r_g ** (groups - 1 - group) / groups
    customer, item = events.keys[events.pair] // events.n_items, events.keys[events.pair] % events.n_items
    return sp.csr_matrix((weights, (customer, item)), shape=(events.n_users, events.n_items))


def neighbour_mean(vectors: sp.csr_matrix, rows: np.ndarray, *, k: int) -> sp.csr_matrix:
    """For each of `rows`, the mean of the k other customers' vectors most like its own (cosine)."""
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    unit = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ vectors
    similarity = (unit[rows] @ unit.T).toarray()
    similarity[np.arange(len(rows)), rows] = -np.inf
    k = min(k, vectors.shape[0] - 1)
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    weights = sp.csr_matrix(
        (np.full(nearest.size, 1.0 / k), (np.repeat(np.arange(len(rows)), k), nearest.ravel())),
        shape=(len(rows), vectors.shape[0]),
    )
    return (weights @ vectors).tocsr()


def repeat_by_count(baskets: np.ndarray, items: np.ndarray, *, n_items: int, prior: float = 5.0) -> np.ndarray:
    """Per pair: the share of the item's buyers with k baskets of it or more who bought it again (k the
    pair's count, capped), shrunk towards that share over all items by `prior` buyers."""
    count = np.minimum(baskets.astype(np.int64), REPEAT_BY_COUNT_MAX + 1)
    rate = np.zeros((REPEAT_BY_COUNT_MAX + 1, n_items))
    for k in range(1, REPEAT_BY_COUNT_MAX + 1):  # one pass per count, never per customer
        at_least = np.bincount(items[count >= k], minlength=n_items).astype(np.float64)
        again = np.bincount(items[count >= k + 1], minlength=n_items).astype(np.float64)
        overall = again.sum() / max(at_least.sum(), 1.0)
        shrunk = at_least + prior
        rate[k] = np.divide(again + prior * overall, shrunk, out=np.full(n_items, overall), where=shrunk > 0)
    return rate[np.minimum(count, REPEAT_BY_COUNT_MAX), items]


def ndcg_of_scores(scores: np.ndarray, holdout: Holdout) -> np.ndarray:
    """Per-customer NDCG@10 of dense scores (rows: the holdout's customers) against its baskets."""
    targets = holdout.targets.toarray()
    ids, _ = top_k(scores.astype(np.float32), k=K)
    return metrics_from_hits(hits=ranked_hits(top=ids, targets=targets), n_targets=targets.sum(axis=1), k=K)["ndcg"]


def reranked(prepared: Prepared, fitted: Fitted, blend: Blend, bundle: ModelBundle, holdout: Holdout) -> np.ndarray:
    """The validation customers' per-customer NDCG@10 of the blend's home list re-ranked as `reco
    train` does (training.pipeline.rerank), without the explore slot."""
    learnt = rerank.learn(
        prepared=prepared,
        blend=blend,
        half_life=fitted.half_life,
        popularity_half_life=fitted.popularity_half_life,
        collaborative=fitted.collaborative_name,
        params={**fitted.params, **fitted.collaborative_params},
        log=print,
    )
    assert learnt.reranker is not None, "too few earlier baskets to learn from"
    candidate = Candidate("x", replace(bundle, reranker=learnt.reranker), replace(blend, home_rerank=True), ("home",))
    return customer_scores(candidates=[candidate], holdout=holdout)["x"]["home"]


def study(dataset: str, params: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Every variant's per-customer validation NDCG@10 against the default's tuned blend."""
    cache = Path(os.environ.get("RECO_HOME", ROOT / ".reco")) / "datasets"
    purchases, _ = load_purchases(fetch(DATASETS[dataset], cache))
    prepared = prepare(purchases=purchases, catalog=None, eval_users=DEFAULT_EVAL_USERS)
    # The blend without the re-ranker: the methods below replace or re-rank its signals.
    fitted = fit_configuration(model="hybrid", params={**params, "rerank": "off"}, prepared=prepared, log=log)
    holdout, train = prepared.tuning, prepared.train
    cf = fitted.collaborative.scorer if fitted.collaborative is not None else None
    bundle = train.bundle(
        half_life=fitted.half_life,
        popularity_half_life=fitted.popularity_half_life,
        blend=fitted.blend,
        collaborative=cf,
        catalog=prepared.catalog,
        timeline=True,
    )
    blend = replace(fitted.blend, home_explore=0.0)  # the repeat part is compared without the explore slot
    history, events = bundle.history, train.events
    after, count = basket_order(events)
    day_weights = decay(age_days=train.reference_day - events.day, half_life=fitted.half_life)

    def home(b: ModelBundle, bl: Blend) -> np.ndarray:
        return customer_scores(candidates=[Candidate("x", b, bl, ("home",))], holdout=holdout)["x"]["home"]

    def with_signal(decayed: np.ndarray) -> ModelBundle:
        return replace(bundle, history=replace(history, decayed=decayed.astype(np.float32)))

    scores: dict[str, np.ndarray] = {
        "default's blend": home(bundle, blend),
        "default as served (explore slot)": home(bundle, fitted.blend),
        "frequency (tuned day decay)": home(bundle, baseline_blend("frequency")),
    }
    for half_life in BASKET_HALF_LIVES:
        by_basket = np.exp2(-after / half_life)
        scores[f"basket order, half-life {half_life:g} baskets"] = home(with_signal(per_pair(events, by_basket)), blend)
        scores[f"basket order {half_life:g} × day decay"] = home(
            with_signal(per_pair(events, by_basket * day_weights)), blend
        )
    for window in WINDOWS:
        scores[f"UP@r, last {window} baskets"] = home(
            with_signal(per_pair(events, (after < window).astype(np.float64))), blend
        )
    decayed = sp.csr_matrix((history.decayed, history.indices, history.indptr), shape=(history.n_users, bundle.n_items))
    row_of = np.repeat(np.arange(history.n_users), np.diff(history.indptr))
    norms = np.sqrt(np.asarray(decayed.multiply(decayed).sum(axis=1)).ravel())
    own = history.decayed / np.where(norms > 0, norms, 1.0)[row_of]
    for k, alpha in SMOOTHING:
        unit = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ decayed
        smoothed = neighbour_mean(unit.tocsr(), np.arange(history.n_users), k=k)
        mixed = alpha * own + (1 - alpha) * np.asarray(smoothed[row_of, history.indices]).ravel()
        scores[f"smoothing of bought items, k {k}, α {alpha}"] = home(with_signal(mixed), blend)
    for exponent in (0.5, 1.0):
        rate = repeat_by_count(history.baskets, history.indices, n_items=bundle.n_items) ** exponent
        scores[f"repeat by count, exponent {exponent}"] = home(
            with_signal(history.decayed * rate), replace(blend, item_repeat=0.0)
        )
    popular = bundle.popular_scores()
    for m, r_b, r_g, k, alpha in TIFU_SETTINGS:
        vectors = tifu_vectors(events, after, count, m=m, r_b=r_b, r_g=r_g)
        rows = holdout.users
        dense = (alpha * vectors[rows] + (1 - alpha) * neighbour_mean(vectors, rows, k=k)).toarray()
        scores[f"TIFU-KNN m {m}, r_b {r_b}, r_g {r_g}, k {k}, α {alpha}"] = ndcg_of_scores(
            dense + 1e-9 * popular[None, :], holdout
        )
    scores["re-ranker as `reco train` fits it"] = reranked(prepared, fitted, blend, bundle, holdout)
    reference = scores["default's blend"]
    frequency = float(np.nanmean(scores["frequency (tuned day decay)"]))
    rows_out = []
    for name, values in scores.items():
        c = paired_bootstrap(values, reference)
        rows_out.append(
            {
                "variant": name,
                "ndcg": round(c.challenger, 4),
                "to_frequency": round(c.challenger / frequency, 3),
                "difference": [round(c.difference, 4), round(c.difference_low, 4), round(c.difference_high, 4)],
            }
        )
    return {
        "dataset": dataset,
        "customers": len(holdout.users),
        "default": {"chosen": fitted.label, "blend": blend.to_dict(), "half_life": fitted.half_life},
        "rows": rows_out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="grocery", choices=sorted(DATASETS))
    parser.add_argument("--param", action="append", default=[], help="KEY=VALUE, as reco train's --param")
    args = parser.parse_args()
    record = study(args.dataset, parse_params(args.param), lambda s: print(s, flush=True))
    print(f"{record['customers']:,} validation customers; default {record['default']['chosen']}")
    print("| variant | validation home NDCG@10 | × frequency | − default's blend (95% interval) |")
    print("|---|---|---|---|")
    for r in record["rows"]:
        d = r["difference"]
        print(
            f"| {r['variant']} | {r['ndcg']:.4f} | {r['to_frequency']:.3f} | {d[0]:+.4f} ({d[1]:+.4f} to {d[2]:+.4f}) |"
        )
    print(json.dumps(record, default=str))


if __name__ == "__main__":
    main()
