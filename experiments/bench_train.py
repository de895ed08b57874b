"""Training overhead: end-to-end `reco train` against a raw `implicit` ALS fit of the same matrix.

    .venv/bin/reco data generate --out /tmp/big --users 180000 --items 10000 --years 2 --seed 11   # ≈ 10M lines
    .venv/bin/python experiments/bench_train.py --purchases /tmp/big/purchases.parquet [--catalog ...]

Each side runs in its own process so that peak memory (max RSS) is measured cleanly:
  raw   — read the Parquet file, build the customer × item basket-count CSR, BM25-weight it and fit
          implicit's ALS with the trainer's defaults (64 factors, 15 iterations, BLAS at 1 thread), as
          a team's own script would (`reco train` stops ALS's iterations early on validation at this
          size: docs/training.md);
  reco  — `reco train --purchases FILE` in a temporary RECO_HOME (load, validate, split, tune, fit,
          evaluate beside the baselines, champion gate, refit, MLflow run + registered model). Each
          round's home is a copy of one whose MLflow registry exists, empty (made once, not timed), as
          for every training after a team's first; `--fresh-registry` times the first, which also
          creates the registry's tables (about 2 s of CPU here).
Shared machines drift (the same fit took 18 s and 29 s within the hour here), so the two alternate
for `--rounds` rounds, raw first and last (raw, reco, raw, …, reco, raw): each reco run is compared
with the mean of the raw fits just before and after it, and the median of those ratios is reported
beside every round's. Each side's CPU seconds (user and kernel) and peak memory are reported too,
and the machine's cost of a process's first gigabyte before and after the rounds
(`first_touch_seconds_per_gb`): where it is high, most of `reco train`'s kernel time is that cost.
Prints one JSON object; the goal is reco_total ≤ 1.5 × raw_fit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def raw_fit(purchases: Path) -> dict[str, float]:
    """Read → matrix → BM25 → ALS fit, timed separately (runs in a child process)."""
    import numpy as np
    import pyarrow.parquet as pq
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import bm25_weight
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    table = pq.read_table(purchases, columns=["user_id", "item_id", "order_id"])
    users = table.column("user_id").dictionary_encode().combine_chunks()
    items = table.column("item_id").dictionary_encode().combine_chunks()
    u = users.indices.to_numpy().astype(np.int64)
    i = items.indices.to_numpy().astype(np.int64)
    shape = (len(users.dictionary), len(items.dictionary))
    t1 = time.perf_counter()
    matrix = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)), shape=shape)
    matrix.sum_duplicates()
    weighted = bm25_weight(matrix, K1=100, B=0.8).tocsr().astype(np.float32)
    t2 = time.perf_counter()
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15, random_state=42)
        model.fit(weighted, show_progress=False)
    t3 = time.perf_counter()
    return {
        "raw_read_seconds": t1 - t0,
        "raw_matrix_seconds": t2 - t1,
        "raw_fit_seconds": t3 - t2,
        "raw_total_seconds": t3 - t0,
        "lines": float(len(u)),
        "pairs": float(matrix.nnz),
    }


TIME = ["/usr/bin/time", "-f", "USAGE MAXRSS_KB=%M USER=%U SYS=%S"]


def _usage(stderr: str, side: str) -> dict[str, float]:
    """Peak RSS and CPU seconds (user, kernel) that /usr/bin/time reported for the child."""
    lines = [line for line in stderr.splitlines() if line.startswith("USAGE ")]
    fields = dict(pair.split("=") for pair in lines[-1].split()[1:]) if lines else {}
    nan = float("nan")
    return {
        f"{side}_peak_rss_mb": int(fields["MAXRSS_KB"]) / 1024 if fields else nan,
        f"{side}_cpu_user_seconds": float(fields.get("USER", nan)),
        f"{side}_cpu_kernel_seconds": float(fields.get("SYS", nan)),
    }


def first_touch_seconds_per_gb() -> float:
    """What this machine's kernel takes to hand a new process its first gigabyte (numpy's ones): about
    0.2 s here when it has the pages at hand (right after another process freed them); on a virtual
    machine whose host takes back the memory processes free, 3 s or more. `reco train` touches about
    four times the memory of the raw fit, so this cost weighs on the ratio: it is printed beside it."""
    probe = "import time, numpy as np; t = time.perf_counter(); np.ones(1 << 27); print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--purchases", type=Path, required=True)
    parser.add_argument("--catalog", type=Path)
    parser.add_argument("--raw-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-reco", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="reco runs, each between two raw fits (default 3)")
    parser.add_argument(
        "--fresh-registry", action="store_true", help="time a first training: each run creates its MLflow registry"
    )
    args = parser.parse_args()
    if args.raw_only:
        print(json.dumps(raw_fit(args.purchases)))
        return

    def raw() -> tuple[dict[str, float], dict[str, float]]:
        proc = subprocess.run(
            [*TIME, sys.executable, __file__, "--raw-only", "--purchases", str(args.purchases)],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(proc.stdout.strip().splitlines()[-1]), _usage(proc.stderr, "raw")

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    template = Path(tempfile.mkdtemp(prefix="reco-bench-home-"))
    if not args.fresh_registry:  # the registry's tables, once, outside the timed runs
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from training.registry import publishing; from training.settings import load_settings; "
                "publishing.champion(settings=load_settings(), name='reco')",
            ],
            env={**env, "RECO_HOME": str(template)},
            cwd=ROOT,
            check=True,
            capture_output=True,
        )

    def reco() -> dict[str, float | str]:
        with tempfile.TemporaryDirectory() as parent:
            home = Path(parent) / "home"
            shutil.copytree(template, home)
            env["RECO_HOME"] = str(home)
            cmd = [*TIME, str(ROOT / ".venv/bin/reco"), "train", "--purchases", str(args.purchases)]
            if args.catalog:
                cmd += ["--catalog", str(args.catalog)]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(proc.returncode)
        keep = ("  ", "loaded", "test", "gate", "logged", "timings")
        return {
            "reco_total_seconds": seconds,
            **_usage(proc.stderr, "reco"),
            "reco_log": "\n".join(line for line in proc.stderr.splitlines() if line.startswith(keep)),
            "reco_home_ndcg_at_10": json.loads(proc.stdout.strip().splitlines()[-1])["metrics"].get(
                "home/ndcg_at_10", float("nan")
            ),
        }

    result: dict[str, Any] = {}
    result["first_touch_seconds_per_gb_before"] = first_touch_seconds_per_gb()
    raw_result, raw_usage = raw()
    result.update(raw_result)
    result.update(raw_usage)
    if not args.skip_reco:
        raw_fits = [float(raw_result["raw_fit_seconds"])]
        rounds = []
        for _ in range(args.rounds):
            round_result = reco()
            raw_fits.append(raw()[0]["raw_fit_seconds"])
            reference = (raw_fits[-2] + raw_fits[-1]) / 2
            rounds.append(
                {**round_result, "ratio_reco_to_raw_fit": float(round_result["reco_total_seconds"]) / reference}
            )
        median = sorted(rounds, key=lambda r: r["ratio_reco_to_raw_fit"])[len(rounds) // 2]
        result.update(median)  # the median round's figures and log
        result["raw_fit_seconds_all"] = [round(x, 2) for x in raw_fits]
        result["reco_total_seconds_all"] = [round(float(r["reco_total_seconds"]), 2) for r in rounds]
        result["ratio_reco_to_raw_fit_all"] = [round(float(r["ratio_reco_to_raw_fit"]), 3) for r in rounds]
        result["ratio_reco_to_raw_total"] = float(median["reco_total_seconds"]) / float(result["raw_total_seconds"])
        result["registry"] = "fresh" if args.fresh_registry else "existing (empty)"
        result["first_touch_seconds_per_gb_after"] = first_touch_seconds_per_gb()
    shutil.rmtree(template, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
