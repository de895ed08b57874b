"""Robustness of the default model on stand-ins for real data that is not in this repo.

    .venv/bin/python experiments/robustness.py [--out DIR] [--users 5000] [--items 2000]
        [--only NAME[,NAME...]] [--seed S]

The synthetic store (`reco data generate`) is one grocery generator; the default model must not be
tuned to it. This script writes differently built purchase files and runs the default
`reco evaluate` path (training.pipeline: prepare → fit_configuration → evaluate_on_test) on each:

  store          the synthetic store itself (the reference result to keep)
  catalogue      MovieLens-like: a low-rank taste model with a popularity long tail and item
                 releases over time; each customer consumes an item at most once, 10..~800 items
                 per customer in visits spread over years; CSV with integer ids, epoch seconds,
                 no order_id, no quantity, no price (the MovieLens ratings layout)
  catalogue-static the same without releases during the period (every title available throughout)
  catalogue-orders the `catalogue` lines, each its own order_id (the test is each customer's last item)
  first-purchase the synthetic store keeping only each (customer, item)'s first purchase
  grocery        Instacart-like, built independently of the store: per-customer repertoires with
                 per-item rates, habit formation, exploration, 4..100 orders at personal gaps
  grocery-ints   the same lines as `grocery` written as CSV with integer ids and epoch seconds,
                 without order_id and price (baskets become customer-days)
  sparse         fashion/e-commerce-like retail: most customers 1–3 orders of 1–4 items,
                 short-lived trending items, few repeats
  sparse-2       like `sparse` but no customer has more than two orders (nothing to validate on)

For each it checks that every row is accepted and reaches the model (rows read = lines encoded;
customers with ≥ 2 baskets = test customers + customers held out for tuning), prints the
comparison table, the paired standard error of the model's home NDCG@10 against each baseline
(over all test customers and over those whose test basket is in the data's last 30 days, who
have next to no "future" in the training lines), and the wall time. The last line is JSON with
every figure, for the record. Files are written once under --out and reused (about a minute to
make); the whole run takes about three minutes on two cores, each dataset under 45 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.core.blend import blend_scores  # noqa: E402
from training.core.topk import top_k  # noqa: E402
from training.data.load import load_catalog, load_purchases  # noqa: E402
from training.metrics import ranking_metrics  # noqa: E402
from training.pipeline.fit import DEFAULT_EVAL_USERS, Fitted, evaluate_on_test, fit_configuration  # noqa: E402
from training.pipeline.prepare import Prepared, prepare  # noqa: E402

DAY = 86_400
START = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp())
SHOWN = (
    "home/ndcg_at_10",
    "home/repeat/ndcg_at_10",
    "home/new/ndcg_at_10",
    "buy-again/ndcg_at_10",
    "discover/ndcg_at_10",
)


# --- data stand-ins ---------------------------------------------------------------------------


def _tastes(
    rng: np.random.Generator, *, users: int, items: int, dim: int, zipf: float
) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank affinities plus a long-tail log-popularity per item: (users × items logits, item log-popularity)."""
    u = rng.normal(size=(users, dim)) / np.sqrt(dim)
    v = rng.normal(size=(items, dim))
    ranks = rng.permutation(items) + 1
    log_pop = -zipf * np.log(ranks)
    return (u @ v.T).astype(np.float32), log_pop.astype(np.float32)


def _gumbel_top(rng: np.random.Generator, logits: np.ndarray, n: np.ndarray) -> list[np.ndarray]:
    """Per row, n[row] items drawn without replacement with probabilities ∝ exp(logits) (Gumbel top-k)."""
    keys = logits + rng.gumbel(size=logits.shape).astype(np.float32)
    order = np.argsort(-keys, axis=1)
    return [order[r, : n[r]] for r in range(len(n))]


def catalogue(rng: np.random.Generator, *, users: int, items: int, new_releases: float = 0.7) -> pa.Table:
    """MovieLens-like consumption: at most once per (customer, item), visits spread over years; a share
    of the titles is released during the period (watched soon after release: popularity drifts)."""
    span = 4 * 365
    logits, log_pop = _tastes(rng, users=users, items=items, dim=12, zipf=1.0)
    release = np.where(rng.random(items) < new_releases, rng.uniform(0, span, items), 0.0)
    start = rng.uniform(0, span * 0.9, users)
    length = np.minimum(rng.exponential(300, users) + 1, span - start)
    end = start + length
    n = np.clip(np.round(rng.lognormal(np.log(60), 0.9, users)), 10, 800).astype(np.int64)
    logits = 1.5 * logits + log_pop[None, :]
    logits[release[None, :] > end[:, None]] = -np.inf  # not released while the customer was active
    available = np.isfinite(logits).sum(axis=1)
    n = np.minimum(n, available)
    chosen = _gumbel_top(rng, logits, n)
    user_col, item_col, ts_col = [], [], []
    for user, picks in enumerate(chosen):
        # Visits: a burst at sign-up, then visits spread over the active period.
        n_visits = 1 + rng.poisson(max(length[user] / 30, 1))
        visit_day = np.sort(np.r_[start[user], rng.uniform(start[user], end[user], n_visits - 1)])
        earliest = np.maximum(release[picks], start[user])
        # Each item is watched at the first visit after it became available, or a later one (geometric).
        first = np.searchsorted(visit_day, earliest, side="left")
        first = np.minimum(first, n_visits - 1)
        slot = np.minimum(first + rng.geometric(0.4, len(picks)) - 1, n_visits - 1)
        seconds = visit_day[slot] * DAY + rng.uniform(0, 3 * 3600, len(picks))
        user_col.append(np.full(len(picks), user))
        item_col.append(picks)
        ts_col.append(START + seconds.astype(np.int64))
    return pa.table(
        {
            "user_id": np.concatenate(user_col).astype(np.int64) + 1,
            "item_id": np.concatenate(item_col).astype(np.int64) + 1,
            "timestamp": np.concatenate(ts_col),
        }
    )


def grocery(rng: np.random.Generator, *, users: int, items: int) -> pa.Table:
    """Instacart-like: repertoires re-bought at per-item rates, habits formed from explorations."""
    logits, log_pop = _tastes(rng, users=users, items=items, dim=8, zipf=0.9)
    logits = logits + log_pop[None, :]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    cum = np.cumsum(probs, axis=1)
    size = np.clip(np.round(rng.lognormal(np.log(12), 0.6, users)), 2, 80).astype(np.int64)
    repertoire = _gumbel_top(rng, logits, size)
    n_orders = np.clip(np.round(rng.lognormal(np.log(12), 0.8, users)), 4, 100).astype(np.int64)
    gap = rng.uniform(4, 30, users)
    first_day = rng.uniform(0, 300, users)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("user_id", "item_id", "timestamp", "quantity", "order_id")}
    order_id = 0
    for user in range(users):
        items_of = list(repertoire[user])
        rate = list(rng.beta(1.2, 2.5, len(items_of)))
        day = first_day[user]
        for _ in range(n_orders[user]):
            r = np.asarray(rate)
            basket = [it for it, p in zip(items_of, r, strict=True) if rng.random() < p]
            explore = np.searchsorted(cum[user], rng.random(rng.poisson(2.0)))
            explore = np.minimum(explore, items - 1)
            known = set(items_of)
            for it in explore:
                if it not in known and rng.random() < 0.25:  # a discovery that becomes a habit
                    items_of.append(int(it))
                    rate.append(float(rng.beta(1.2, 2.5)))
                    known.add(int(it))
            basket_items = np.unique(np.r_[np.asarray(basket, dtype=np.int64), explore])
            if not len(basket_items):
                basket_items = np.array([items_of[int(np.argmax(rate))]])
            ts = START + int(day * DAY) + int(rng.uniform(8, 21) * 3600)
            rows["user_id"].append(np.full(len(basket_items), user))
            rows["item_id"].append(basket_items)
            rows["timestamp"].append(np.full(len(basket_items), ts))
            rows["quantity"].append(rng.choice([1, 1, 1, 2, 3], len(basket_items)))
            rows["order_id"].append(np.full(len(basket_items), order_id))
            order_id += 1
            day += max(1.0, rng.gamma(4.0, gap[user] / 4.0))
    cols = {k: np.concatenate(v) for k, v in rows.items()}
    price = (0.5 + rng.gamma(2.0, 1.5, items)).round(2)
    return pa.table(
        {
            "user_id": pa.array([f"U{u}" for u in cols["user_id"]]),
            "item_id": pa.array([f"I{i}" for i in cols["item_id"]]),
            "timestamp": pa.array(cols["timestamp"] * 1_000_000, type=pa.timestamp("us", tz="UTC")),
            "quantity": pa.array(cols["quantity"], type=pa.int32()),
            "price": pa.array(price[cols["item_id"]]),
            "order_id": pa.array([f"O{o}" for o in cols["order_id"]]),
        }
    )


def sparse(rng: np.random.Generator, *, users: int, items: int, max_orders: int = 20) -> pa.Table:
    """Fashion-like retail: most customers 1–3 orders of 1–4 items, trending short-lived items, few repeats."""
    span = 2 * 365
    logits, log_pop = _tastes(rng, users=users, items=items, dim=8, zipf=1.1)
    launch = rng.uniform(-90, span, items)
    life = rng.exponential(120, items) + 20
    n_orders = np.minimum(rng.geometric(0.5, users), max_orders)
    rows: dict[str, list[Any]] = {k: [] for k in ("user_id", "item_id", "timestamp", "order_id")}
    order_id = 0
    for user in range(users):
        day = rng.uniform(0, span)
        bought: list[int] = []
        for _ in range(n_orders[user]):
            if day > span:
                break
            alive = np.exp(-np.maximum(day - launch, 0) / life) * (launch <= day)
            w = np.exp(logits[user] + log_pop) * alive
            k = min(1 + rng.poisson(0.8), 4)
            basket = set(rng.choice(items, size=k, replace=False, p=w / w.sum()).tolist())
            if bought and rng.random() < 0.15:  # a basic re-bought
                basket.add(int(rng.choice(bought)))
            for it in sorted(basket):
                rows["user_id"].append(user)
                rows["item_id"].append(it)
                rows["timestamp"].append(START + int(day * DAY) + int(rng.uniform(0, DAY)))
                rows["order_id"].append(order_id)
            bought.extend(basket)
            order_id += 1
            day += rng.exponential(60) + 1
    return pa.table(
        {
            "user_id": pa.array([f"c{u}" for u in rows["user_id"]]),
            "item_id": pa.array([f"a{i}" for i in rows["item_id"]]),
            "timestamp": pa.array(np.asarray(rows["timestamp"]) * 1_000_000, type=pa.timestamp("us", tz="UTC")),
            "order_id": pa.array([f"o{o}" for o in rows["order_id"]]),
        }
    )


def first_purchases(store: pa.Table) -> pa.Table:
    """The store keeping only each (customer, item)'s first line (catalogue-style: nothing bought twice)."""
    t = store.append_column("__row", pa.array(np.arange(store.num_rows)))
    t = t.sort_by(
        [("user_id", "ascending"), ("item_id", "ascending"), ("timestamp", "ascending"), ("__row", "ascending")]
    )
    u = t.column("user_id").to_numpy(zero_copy_only=False)
    i = t.column("item_id").to_numpy(zero_copy_only=False)
    first = np.r_[True, (u[1:] != u[:-1]) | (i[1:] != i[:-1])]
    return t.filter(pa.array(first)).drop_columns(["__row"]).sort_by("timestamp")


def _one_item_per_order(table: pa.Table) -> pa.Table:
    """Every line its own order (leave-one-out: the test is each customer's last single item)."""
    return table.append_column("order_id", pa.array(np.arange(table.num_rows, dtype=np.int64)))


def write_int_csv(
    table: pa.Table, path: Path, *, columns: tuple[str, ...] = ("user_id", "item_id", "timestamp")
) -> None:
    """CSV with integer ids and epoch seconds (ids made of digits: U123 → 123)."""
    out = {}
    for name in columns:
        column = table.column(name)
        if name == "timestamp" and pa.types.is_timestamp(column.type):
            out[name] = pc.divide(column.cast(pa.int64()), 1_000_000).to_numpy()
        elif pa.types.is_string(column.type):
            out[name] = np.asarray(
                pc.replace_substring_regex(column, r"\D", "").to_numpy(zero_copy_only=False), dtype=np.int64
            )
        else:
            out[name] = column.to_numpy()
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(zip(*(out[c].tolist() for c in columns), strict=True))


def build(out: Path, *, users: int, items: int, seed: int) -> dict[str, tuple[Path, Path | None]]:
    """Write every stand-in under `out`: name → (purchases, catalog or None)."""
    out.mkdir(parents=True, exist_ok=True)
    store = out / "store"
    if not (store / "purchases.parquet").exists():
        subprocess.run(
            [str(ROOT / ".venv/bin/reco"), "data", "generate", "--out", str(store), "--users", str(users),
             "--items", str(items), "--seed", str(seed)],
            check=True, capture_output=True,
        )  # fmt: skip
    files: dict[str, tuple[Path, Path | None]] = {"store": (store / "purchases.parquet", store / "catalog.parquet")}
    makers: dict[str, Callable[[], None]] = {}

    def add(name: str, path: Path, make: Callable[[Path], None], catalog: Path | None = None) -> None:
        files[name] = (path, catalog)
        makers[name] = lambda: make(path)

    rng = np.random.default_rng
    add(
        "catalogue",
        out / "catalogue.csv",
        lambda p: write_int_csv(catalogue(rng(seed + 1), users=users, items=items), p),
    )
    add(
        "catalogue-static",
        out / "catalogue_static.csv",
        lambda p: write_int_csv(catalogue(rng(seed + 5), users=users, items=items, new_releases=0.0), p),
    )
    add(
        "catalogue-orders",
        out / "catalogue_orders.csv",
        lambda p: write_int_csv(
            _one_item_per_order(pcsv.read_csv(out / "catalogue.csv")),
            p,
            columns=("user_id", "item_id", "timestamp", "order_id"),
        ),
    )
    add(
        "first-purchase",
        out / "first_purchase.parquet",
        lambda p: pq.write_table(first_purchases(pq.read_table(store / "purchases.parquet")), p),
        store / "catalog.parquet",
    )
    add(
        "grocery",
        out / "grocery.parquet",
        lambda p: pq.write_table(grocery(rng(seed + 2), users=users, items=items), p),
    )
    add("grocery-ints", out / "grocery_ints.csv", lambda p: write_int_csv(pq.read_table(out / "grocery.parquet"), p))
    add("sparse", out / "sparse.parquet", lambda p: pq.write_table(sparse(rng(seed + 3), users=users, items=items), p))
    add(
        "sparse-2",
        out / "sparse_2.parquet",
        lambda p: pq.write_table(sparse(rng(seed + 4), users=users, items=items, max_orders=2), p),
    )
    for name, make in makers.items():
        if not files[name][0].exists():
            make()
    return files


# --- checks -----------------------------------------------------------------------------------


def describe(prepared: Prepared) -> dict[str, float]:
    """Shape of the data: customers, items, lines, baskets per customer, repeat share of test lines."""
    inter = prepared.interactions
    baskets_per_user = np.bincount(
        np.unique(inter.user.astype(np.int64) * (int(inter.basket.max()) + 1) + inter.basket)
        // (int(inter.basket.max()) + 1),
        minlength=inter.n_users,
    )
    return {
        "customers": inter.n_users,
        "items": inter.n_items,
        "lines": inter.n_lines,
        "median_baskets": float(np.median(baskets_per_user)),
        "share_1_to_3_baskets": float(np.mean(baskets_per_user <= 3)),
        "customers_2plus_baskets": int((baskets_per_user >= 2).sum()),
        "test_customers": len(prepared.test.users),
        "validation_customers": len(prepared.validation.users),
        "held_out_customers": prepared.held_out_customers,
    }


RECENT_DAYS = 30.0


def paired_ndcg(fitted: Fitted, prepared: Prepared, others: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Model − baseline home NDCG@10 per test customer: mean difference and its standard error, over all
    test customers and over those whose test basket falls in the data's last RECENT_DAYS days.

    Leave-last-basket-out lets other customers' later purchases into training (popularity and the
    collaborative part see them); the recent customers have almost no such future, so a conclusion
    that holds for them too does not rest on that leak."""
    bundle = fitted.test_bundle
    hold = prepared.test
    per: dict[str, list[np.ndarray]] = {name: [] for name in ("model", *others)}
    for start in range(0, len(hold.users), 512):
        rows = hold.users[start : start + 512]
        targets = hold.targets[start : start + 512].toarray()
        signals = bundle.signals(rows=rows, now=hold.now[start : start + 512])
        for name, blend in (("model", fitted.blend), *others.items()):
            ids, vals = top_k(blend_scores(signals, blend=blend, context="home"), k=10)
            ids = np.where(np.isfinite(vals), ids, -1)
            per[name].append(ranking_metrics(top=ids, targets=targets, k=10)["ndcg"])
    model = np.concatenate(per["model"])
    recent = hold.now >= float(prepared.interactions.day.max()) - RECENT_DAYS
    out = {}
    for name in others:
        diff = model - np.concatenate(per[name])
        row: dict[str, float] = {}
        for prefix, mask in (("", np.ones(len(diff), bool)), ("recent_", recent)):
            d = diff[mask & ~np.isnan(diff)]
            row[f"{prefix}diff"] = float(d.mean()) if len(d) else float("nan")
            row[f"{prefix}se"] = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
            row[f"{prefix}customers"] = float(len(d))
        out[name] = row
    return out


def run(name: str, purchases: Path, catalog: Path | None) -> dict[str, Any]:
    """The default `reco evaluate` on one file, with the data-loss checks and paired errors."""
    from training.algorithms import DEFAULT_MODEL
    from training.algorithms.blends import baseline_blend

    t0 = time.perf_counter()
    table, report = load_purchases(purchases)
    cat = None if catalog is None else load_catalog(catalog)[0]
    prepared = prepare(purchases=table, catalog=cat, eval_users=DEFAULT_EVAL_USERS)
    log: list[str] = []
    fitted = fit_configuration(model=DEFAULT_MODEL, params={}, prepared=prepared, log=log.append)
    results = evaluate_on_test(fitted=fitted, prepared=prepared)
    seconds = time.perf_counter() - t0
    shape = describe(prepared)
    checks = {
        "rows_read": report.rows_read,
        "rows_rejected": report.rows_rejected,
        "all_rows_encoded": prepared.interactions.n_lines == report.rows_read,
        # Every customer with two baskets is tested, or tuned on instead (held out) when validation is scarce.
        "every_customer_with_2_baskets_evaluated": shape["test_customers"] + shape["held_out_customers"]
        == shape["customers_2plus_baskets"],
    }
    errors = paired_ndcg(
        fitted, prepared, {"popularity": baseline_blend("popularity"), "frequency": baseline_blend("frequency")}
    )
    choice = {k: v for k, v in fitted.choice.items() if k != "all_fits"}
    print(f"\n## {name}: {purchases.name}  ({seconds:.1f} s)")
    print(json.dumps({**shape, **checks}))
    for line in log:
        print(line)
    header = "| model | " + " | ".join(SHOWN) + " |"
    print(header + "\n|---|" + "---|" * len(SHOWN))
    for model, metrics in results.items():
        print(f"| {model} | " + " | ".join(f"{metrics[k]:.4f}" if k in metrics else "–" for k in SHOWN) + " |")
    for base, e in errors.items():
        print(
            f"home NDCG@10 {fitted.label} − {base}: {e['diff']:+.4f} ± {e['se']:.4f} (paired s.e.); "
            f"test basket in the last {RECENT_DAYS:.0f} days ({e['recent_customers']:.0f} customers): "
            f"{e['recent_diff']:+.4f} ± {e['recent_se']:.4f}"
        )
    return {
        "name": name,
        "seconds": seconds,
        "shape": shape,
        "checks": checks,
        "label": fitted.label,
        "blend": fitted.blend.to_dict(),
        "half_life": fitted.half_life,
        "popularity_half_life": fitted.popularity_half_life,
        "choice": choice,
        "paired": errors,
        "results": {model: {k: v for k, v in metrics.items() if k in SHOWN} for model, metrics in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/reco-robustness"))
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated dataset names")
    args = parser.parse_args()
    files = build(args.out, users=args.users, items=args.items, seed=args.seed)
    wanted = [n for n in args.only.split(",") if n] or list(files)
    summary = [run(name, *files[name]) for name in wanted]
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
