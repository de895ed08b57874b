"""Benchmark: the synthetic store generator at scale (default 1M customers, 50k items, 2 years).

Prints wall time, lines/s and peak memory, and the ratio to a reference in the same process:
reading the generated purchases.parquet and writing it again with the same writer settings
(the cost of just producing the bytes), since shared machines make absolute times noisy.

    .venv/bin/python experiments/bench_generate.py [--users 1000000] [--items 50000] [--out DIR]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from training.data.synthetic import generate_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--years", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None, help="keep the store here (default: a temp dir)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="reco-bench-store-"))

    summary = generate_store(out, users=args.users, items=args.items, years=args.years, seed=args.seed, progress=True)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    started = time.perf_counter()
    table = pq.read_table(out / "purchases.parquet")
    pq.write_table(table, out / "rewrite.parquet", compression="zstd", row_group_size=1 << 20)
    reference = time.perf_counter() - started
    (out / "rewrite.parquet").unlink()

    size_mib = (out / "purchases.parquet").stat().st_size / 2**20
    print(summary.format_text())
    print(
        f"generate: {summary.seconds:.1f} s, {summary.purchases / summary.seconds:,.0f} lines/s, "
        f"peak RSS {peak_gib:.2f} GiB, file {size_mib:,.0f} MiB"
    )
    print(
        f"reference (read + rewrite the same file): {reference:.1f} s; ratio generate/reference "
        f"{summary.seconds / reference:.1f}x"
    )


if __name__ == "__main__":
    main()
