"""Build every customer's recap of a year: the pure API over an Arrow purchase table.

build_recaps(purchases=..., options=RecapOptions(year=2025), catalog=..., opt_out=..., recommend=...)
build_recap(purchases=..., user_id=..., year=...)   one customer, for tests and small stores
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from training.core import columns as col
from training.core.errors import RecoError
from training.data.duck import connect, sql_text
from training.recaps.rules import MAX_SPILL, PICKS_CANDIDATES_PER_PICK, RecapOptions
from training.recaps.sql import AGGREGATE_STEPS, Recommender, final_sql, register_inputs, stage_aggregates, stage_picks

log = logging.getLogger(__name__)


@dataclass
class RecapResult:
    """The recaps of one run (`recaps`: user_id, recap_json, kind; sorted by user_id) and its counts."""

    recaps: pa.Table
    options: RecapOptions
    model_version: str | None
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def records(self) -> Iterable[dict[str, Any]]:
        """The recaps as dicts, one at a time."""
        for batch in self.recaps.select(["recap_json"]).to_batches(max_chunksize=10_000):
            for text in batch.column(0).to_pylist():
                yield json.loads(text)


def build_recaps(
    *,
    purchases: pa.Table,
    options: RecapOptions,
    catalog: pa.Table | None = None,
    opt_out: Iterable[str] = (),
    recommend: Recommender | None = None,
    model_version: str | None = None,
    recommend_batch_size: int = 10_000,
    progress: bool = False,
    memory_fraction: float = 0.4,
    partition_rows: int = 10_000_000,
) -> RecapResult:
    """Recaps of every customer with a purchase in `options.year` (minus the opted-out ones).

    `purchases` is in the contract's schema (as `training.data.load_purchases` returns it);
    `catalog` adds names, categories, brands and stock; `recommend(user_ids)` returns each customer's
    candidate picks as (item_id, score) lists, best first (see `model_recommender`): a recap keeps the
    first `options.picks_k` that the customer did not buy this year and that are in stock.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    timings: dict[str, float] = {}
    parts = max(1, -(-purchases.num_rows // partition_rows))
    # One bar over the whole job: each aggregate table, the picks, each partition of documents.
    bar = tqdm(total=AGGREGATE_STEPS + 1 + parts, desc="recaps", unit="step", disable=not progress)
    con = connect(memory_fraction=memory_fraction)
    spill = tempfile.TemporaryDirectory(prefix="reco-recaps-")
    try:
        # Big stores: let DuckDB spill to disk instead of growing, and drop order guarantees it
        # does not need (the output is sorted explicitly).
        con.execute(f"SET temp_directory = {sql_text(spill.name)}")
        con.execute(f"SET max_temp_directory_size = '{MAX_SPILL}'")
        con.execute("SET preserve_insertion_order = false")
        register_inputs(con, purchases=purchases, catalog=catalog, opt_out=opt_out, options=options)
        counts = stage_aggregates(con, options, timings, parts=parts, advance=bar.update)
        timings["aggregate_s"] = time.perf_counter() - started
        stage_picks(
            con,
            recommend=recommend,
            year=options.year,
            k=options.picks_k * PICKS_CANDIDATES_PER_PICK,
            batch_size=recommend_batch_size,
            progress=progress,
        )
        bar.update()
        timings["picks_s"] = time.perf_counter() - started - timings["aggregate_s"]
        mark = time.perf_counter()
        # Customers in partitions: each query's hash tables hold a slice, so big stores fit in memory.
        pieces = []
        for p in range(parts):
            bar.set_postfix_str(f"documents {p + 1}/{parts}")
            pieces.append(con.sql(final_sql(options, model_version, part=p)).to_arrow_table())
            bar.update()
        recaps = pa.concat_tables(pieces).sort_by(col.USER_ID)
        timings["assemble_s"] = time.perf_counter() - mark
        log.info("recaps: %d documents in %d partition(s) in %.1f s", recaps.num_rows, parts, timings["assemble_s"])
    finally:
        bar.close()
        con.close()
        spill.cleanup()
    counts["recaps"] = recaps.num_rows
    counts["short_recaps"] = int(pc.sum(pc.equal(recaps.column("kind"), "short")).as_py() or 0)
    return RecapResult(recaps=recaps, options=options, model_version=model_version, counts=counts, timings=timings)


def build_recap(
    *,
    purchases: pa.Table,
    user_id: str,
    year: int,
    catalog: pa.Table | None = None,
    options: RecapOptions | None = None,
) -> dict[str, Any] | None:
    """One customer's recap for one year (None when they bought nothing that year).

    Comparisons need every customer of the year, so this computes the year's recaps over the
    given purchases and returns one: meant for tests and small stores; the API serves recaps
    published by the batch job.
    """
    options = options or RecapOptions(year=year)
    if options.year != year:
        raise RecoError(f"options.year {options.year} differs from year {year}.")
    result = build_recaps(purchases=purchases, options=options, catalog=catalog)
    found = result.recaps.filter(pc.equal(result.recaps.column(col.USER_ID), user_id))
    return json.loads(found.column("recap_json")[0].as_py()) if found.num_rows else None
