"""`reco recaps build`: load the files, build the recaps, write JSONL, emails and a manifest, publish.

The manifest next to the JSONL records the input digests, model version, template digest, options,
counts and timings, so a sent email can be reproduced byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from training.core import columns as col
from training.core.errors import RecoError
from training.features.names import CUSTOMER_YEAR_RECAP
from training.recaps.build import RecapResult, build_recaps
from training.recaps.emails import write_emails
from training.recaps.render import TEMPLATES
from training.recaps.rules import (
    DEFAULT_MIN_COHORT,
    DEFAULT_MIN_ORDERS,
    DEFAULT_SENSITIVE_CATEGORIES,
    PICKS_CONTEXT,
    PICKS_K,
    SCHEMA_VERSION,
    RecapOptions,
)
from training.recaps.sql import Recommender

if TYPE_CHECKING:
    from training.settings import Settings


class InvalidOptOut(RecoError):
    """The opt-out file cannot be read."""


def read_opt_out(path: Path) -> set[str]:
    """Customer ids from an opt-out file: one per line; blank lines, `#` comments and a
    `user_id` header are ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidOptOut(f"The opt-out file {path} cannot be read ({exc.__class__.__name__}: {exc}).") from None
    ids = {line.split("#", 1)[0].strip() for line in lines}
    return {i for i in ids if i and i != col.USER_ID}


def file_digest(path: Path) -> str:
    """sha256 of a file (or of a directory's files in name order), as `sha256:<hex>`."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def model_recommender(
    model_uri: str, *, settings: Settings | None, k: int, exclude_items: Sequence[str] = ()
) -> tuple[Recommender, str]:
    """(recommend(user_ids) in the discover context, model version) from the registry's bundle."""
    from training.registry.loading import load_bundle

    bundle = load_bundle(model_uri, settings=settings)
    excluded = tuple(exclude_items)

    def recommend(user_ids: list[str]) -> list[list[tuple[str, float]]]:
        return bundle.recommend_batch(user_ids, k=k, context=PICKS_CONTEXT, exclude_items=excluded)

    return recommend, str(bundle.version)


def sensitive_item_ids(catalog: pa.Table | None, categories: Sequence[str]) -> list[str]:
    """Items of the sensitive categories: never offered as picks."""
    if catalog is None or col.CATEGORY not in catalog.column_names or not categories:
        return []

    wanted = pa.array(sorted({c.strip().lower() for c in categories}), pa.string())
    mask = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(catalog.column(col.CATEGORY))), value_set=wanted)
    return catalog.filter(pc.fill_null(mask, False)).column(col.ITEM_ID).to_pylist()


def write_jsonl(recaps: pa.Table, path: Path) -> str:
    """Write one recap per line (atomically: a temporary file renamed); returns its digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    digest = hashlib.sha256()
    with partial.open("w", encoding="utf-8") as handle:
        for chunk in recaps.column("recap_json").chunks:
            if len(chunk):
                text = "\n".join(chunk.to_pylist()) + "\n"
                handle.write(text)
                digest.update(text.encode())
    partial.replace(path)
    return f"sha256:{digest.hexdigest()}"


def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reco")
    except PackageNotFoundError:
        return None


def manifest_path(out: Path) -> Path:
    """`recaps.jsonl` → `recaps.manifest.json`, next to it."""
    return out.with_name((out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name) + ".manifest.json")


def publish_recaps(result: RecapResult, *, settings: Settings, materialize: bool = True) -> dict[str, Any]:
    """Write the recaps to the offline source of feature view customer_year_recap (other years'
    rows are kept) and materialize them to the online store; returns where and how many."""
    import pyarrow.parquet as pq

    from training.features.store import source_path

    year = result.options.year
    path = source_path(CUSTOMER_YEAR_RECAP, settings)
    n = result.recaps.num_rows
    schema = pa.schema(
        [
            (col.USER_ID, pa.string()),
            ("year", pa.int64()),
            ("recap_json", pa.string()),
            ("schema_version", pa.int64()),
            ("model_version", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ]
    )
    # Event time = build time: online stores keep the newest row, so a rebuild replaces old values.
    now = datetime.now(UTC)
    fresh = pa.table(
        [
            result.recaps.column(col.USER_ID),
            pa.array([year] * n, pa.int64()),
            result.recaps.column("recap_json"),
            pa.array([SCHEMA_VERSION] * n, pa.int64()),
            pa.array([result.model_version] * n, pa.string()),
            pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        ],
        schema=schema,
    )
    if path.exists():
        kept = pq.read_table(path).cast(schema)
        fresh = pa.concat_tables([kept.filter(pc.not_equal(kept.column("year"), year)), fresh])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    pq.write_table(fresh, partial)
    partial.replace(path)
    published: dict[str, Any] = {"path": str(path), "rows": fresh.num_rows, "online_store": None, "online_rows": 0}
    if materialize:
        from training.features.materialize import materialize as materialize_views

        outcome = materialize_views(settings=settings, views=[CUSTOMER_YEAR_RECAP])
        published.update(online_store=outcome.online_store, online_rows=outcome.rows_written)
    return published


@dataclass
class RecapJob:
    """Everything `reco recaps build` needs; `run()` does it and returns the manifest."""

    year: int
    purchases: Path
    out: Path
    catalog: Path | None = None
    html_dir: Path | None = None
    opt_out: Path | None = None
    sensitive_categories: tuple[str, ...] = DEFAULT_SENSITIVE_CATEGORIES
    min_cohort: int = DEFAULT_MIN_COHORT
    min_orders: int = DEFAULT_MIN_ORDERS
    model_uri: str | None = None  # None: the settings' model (the champion) if one is registered
    picks: bool = True
    picks_k: int = PICKS_K
    publish: bool = False
    store_name: str = "us"
    currency: str = "£"
    email_workers: int = 1
    progress: bool = True
    settings: Settings | None = None
    log: Callable[[str], None] = print

    def run(self) -> dict[str, Any]:
        from training.data.load import load_catalog, load_purchases
        from training.settings import load_settings

        started = time.perf_counter()
        settings = self.settings or load_settings()
        options = RecapOptions(
            year=self.year,
            sensitive_categories=tuple(self.sensitive_categories),
            min_cohort=self.min_cohort,
            min_orders=self.min_orders,
            picks_k=self.picks_k,
        )
        timings: dict[str, float] = {}
        mark = time.perf_counter()
        purchases, purchase_report = load_purchases(self.purchases)
        if purchase_report.rows_rejected:
            self.log(f"purchases: {purchase_report.rows_rejected:,} rows rejected (counted in the manifest)")
        catalog, catalog_report = load_catalog(self.catalog) if self.catalog else (None, None)
        opted_out = read_opt_out(self.opt_out) if self.opt_out else set()
        timings["load_s"] = time.perf_counter() - mark

        recommend, model_version, model_uri, picks_note = self._recommender(settings, catalog, options)
        result = build_recaps(
            purchases=purchases,
            catalog=catalog,
            options=options,
            opt_out=opted_out,
            recommend=recommend,
            model_version=model_version,
            progress=self.progress,
        )
        del purchases
        timings.update({k: v for k, v in result.timings.items() if k in ("aggregate_s", "picks_s", "assemble_s")})

        mark = time.perf_counter()
        output_digest = write_jsonl(result.recaps, self.out)
        timings["write_jsonl_s"] = time.perf_counter() - mark
        emails = 0
        if self.html_dir is not None:
            mark = time.perf_counter()
            emails = write_emails(
                result.records(),
                self.html_dir,
                store=self.store_name,
                currency=self.currency,
                workers=self.email_workers,
                progress=self.progress,
                total=result.recaps.num_rows,
            )
            timings["emails_s"] = time.perf_counter() - mark
        published = None
        if self.publish:
            mark = time.perf_counter()
            published = publish_recaps(result, settings=settings)
            timings["publish_s"] = time.perf_counter() - mark
        timings["total_s"] = time.perf_counter() - started

        manifest = {
            "schema_version": SCHEMA_VERSION,
            "year": self.year,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "inputs": {
                "purchases": {
                    "path": str(self.purchases),
                    "digest": file_digest(self.purchases),
                    **{k: v for k, v in purchase_report.to_dict(max_rows=0).items() if k not in ("rejected", "source")},
                },
                "catalog": None
                if catalog_report is None or self.catalog is None
                else {
                    "path": str(self.catalog),
                    "digest": file_digest(self.catalog),
                    **{k: v for k, v in catalog_report.to_dict(max_rows=0).items() if k not in ("rejected", "source")},
                },
                "opt_out": None
                if self.opt_out is None
                else {"path": str(self.opt_out), "digest": file_digest(self.opt_out), "customers": len(opted_out)},
            },
            "options": asdict(options),
            "code": {"reco": _package_version(), "templates": file_digest(TEMPLATES)},
            "model": {"uri": model_uri, "version": model_version, "picks": picks_note},
            "counts": {**result.counts, "emails": emails},
            "output": {"path": str(self.out), "digest": output_digest, "lines": result.recaps.num_rows},
            "emails_dir": None if self.html_dir is None else str(self.html_dir),
            # With the recap line and the templates (digest above), all an email's rendering depends on.
            "rendering": {"store": self.store_name, "currency": self.currency, "unsubscribe_url": None},
            "published": published,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }
        manifest_path(self.out).write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    def _recommender(
        self, settings: Settings, catalog: pa.Table | None, options: RecapOptions
    ) -> tuple[Recommender | None, str | None, str | None, str]:
        """The picks model. An explicit --model-uri must load; the default (the champion) may be
        missing, in which case recaps carry no picks and model_version null."""
        if not self.picks or options.picks_k == 0:
            return None, None, None, "disabled"
        uri = self.model_uri or settings.model_uri
        excluded = sensitive_item_ids(catalog, options.sensitive_categories)
        from training.registry.loading import ModelNotFound

        try:
            recommend, version = model_recommender(uri, settings=settings, k=options.picks_k, exclude_items=excluded)
        except ModelNotFound as exc:
            if self.model_uri is not None:
                raise
            # No model registered yet (e.g. a new shop): recaps go out without picks, and say so.
            self.log(f"no picks: {exc}")
            return None, None, uri, f"skipped: {exc}"
        return recommend, version, uri, "ok"
