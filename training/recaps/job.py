"""`reco recaps build`: load the files, build the recaps, add each customer's signed links, write
JSONL, emails (HTML + text, .eml or a merge CSV) and a manifest, publish.

The manifest next to the JSONL records the input digests, model version, template digest, brand,
options, counts and timings, so a sent email can be reproduced byte for byte (with the same signing
key, which the manifest names by an id and never holds).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from training.core import columns as col
from training.core.errors import RecoError
from training.features.names import CUSTOMER_YEAR_RECAP
from training.recaps.brand import PREVIEW_KEY, Brand, key_id, load_brand, recap_token, signing_key
from training.recaps.build import RecapResult, build_recaps
from training.recaps.emails import EmailForm, merge_file_path, write_emails
from training.recaps.render import TEMPLATES
from training.recaps.rules import (
    DEFAULT_MIN_COHORT,
    DEFAULT_MIN_ORDERS,
    DEFAULT_SENSITIVE_CATEGORIES,
    PICKS_CANDIDATES_PER_PICK,
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


class NoPurchasesInYear(RecoError):
    """The recap year has no purchases (the message names the years the data covers)."""


class NoPicksModel(RecoError):
    """Picks were asked for and there is no model to make them."""


class NotReadyToSend(RecoError):
    """The emails could not be sent as configured (no shop name, no signing key, no legal fields)."""


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


def sold_out_item_ids(catalog: pa.Table | None) -> list[str]:
    """Items the catalog marks out of stock: never offered as picks."""
    if catalog is None or col.IN_STOCK not in catalog.column_names:
        return []
    sold_out = pc.invert(pc.fill_null(catalog.column(col.IN_STOCK).cast(pa.bool_()), True))
    return catalog.filter(sold_out).column(col.ITEM_ID).to_pylist()


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


def _babel_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("babel")
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


Format = Literal["jsonl", "eml", "csv"]


@dataclass
class RecapJob:
    """Everything `reco recaps build` needs; `run()` does it and returns the manifest.

    `format`: the JSONL records always go to `out`; `jsonl` adds `<customer>.html` + `.txt` in
    `html_dir` (when given), `eml` one `<customer>.eml` per customer in `html_dir`, `csv` the merge
    file beside `out`. `preview` allows the placeholder shop and unsigned links and never publishes.
    """

    year: int
    purchases: Path
    out: Path
    catalog: Path | None = None
    html_dir: Path | None = None
    opt_out: Path | None = None
    sensitive_categories: tuple[str, ...] = DEFAULT_SENSITIVE_CATEGORIES
    min_cohort: int = DEFAULT_MIN_COHORT
    min_orders: int = DEFAULT_MIN_ORDERS
    model_uri: str | None = None  # None: the settings' model (the champion), which must exist unless picks=False
    picks: bool = True
    picks_k: int = PICKS_K
    publish: bool = False
    brand_file: Path | None = None  # None: RECO_BRAND, else RECO_STORE_NAME / RECO_CURRENCY
    format: Format = "jsonl"
    preview: bool = False
    email_workers: int = 1
    progress: bool = True
    settings: Settings | None = None
    log: Callable[[str], None] = print

    def run(self) -> dict[str, Any]:
        from training.data.load import load_catalog, load_purchases
        from training.settings import load_settings

        started = time.perf_counter()
        settings = self.settings or load_settings()
        brand = load_brand(settings, self.brand_file)
        key = self._check_ready_to_send(brand, signing_key(settings))
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
        covered = purchase_years(purchases)
        if covered is None or not covered[0] <= self.year <= covered[1]:
            raise NoPurchasesInYear(_no_purchases(self.year, covered))
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
        if result.counts["customers_in_year"] == 0:
            raise NoPurchasesInYear(_no_purchases(self.year, covered))
        timings.update({k: v for k, v in result.timings.items() if k in ("aggregate_s", "picks_s", "assemble_s")})

        mark = time.perf_counter()
        result.recaps = with_links(result.recaps, brand=brand, key=key, year=self.year)
        timings["links_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        output_digest = write_jsonl(result.recaps, self.out)
        timings["write_jsonl_s"] = time.perf_counter() - mark
        emails, emails_to = 0, None
        if self.html_dir is not None or self.format == "csv":
            mark = time.perf_counter()
            form: EmailForm = "html" if self.format == "jsonl" else self.format
            emails_to = merge_file_path(self.out) if form == "csv" else self.html_dir
            assert emails_to is not None
            emails = write_emails(
                result.records(),
                emails_to,
                brand=brand,
                form=form,
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
            "preview": self.preview,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "inputs": {
                "purchases": {
                    "path": str(self.purchases),
                    "digest": file_digest(self.purchases),
                    "years": list(covered) if covered else None,
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
            "code": {"reco": _package_version(), "templates": file_digest(TEMPLATES), "babel": _babel_version()},
            "model": {"uri": model_uri, "version": model_version, "picks": picks_note},
            "counts": {**result.counts, "emails": emails},
            "output": {"path": str(self.out), "digest": output_digest, "lines": result.recaps.num_rows},
            "emails": {"format": self.format, "path": None if emails_to is None else str(emails_to)},
            # With the recap line, the templates and Babel (digests above), all an email's rendering
            # depends on; the signing key is named by an id that reveals nothing of it.
            "rendering": {
                "brand": brand.public(),
                "brand_digest": brand.digest(),
                "brand_file": None
                if (self.brand_file or settings.recap_brand_file) is None
                else str(self.brand_file or settings.recap_brand_file),
                "signing_key_id": None if key is None else key_id(key),
                "signed_with": None
                if key is None
                else ("preview key" if key == PREVIEW_KEY else "RECO_RECAP_SIGNING_KEY"),
            },
            "published": published,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }
        manifest_path(self.out).write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    def _check_ready_to_send(self, brand: Brand, key: bytes | None) -> bytes | None:
        """Stop, in one sentence, a build whose emails could not be sent: no shop name, links that
        need a key and have none, a hand-off format without its legal fields. A preview passes
        (and signs with the preview key, which the service never accepts); what is still missing is
        logged. Returns the key that signs the links (None when no link needs one)."""
        if self.preview and self.publish:
            raise NotReadyToSend("A --preview build is never published: drop --publish or --preview.")
        if self.format == "eml" and self.html_dir is None:
            raise NotReadyToSend("--format eml writes one .eml per customer into --email-dir: give one.")
        missing = brand.missing_for_sending(sender=self.format == "eml")
        if self.preview:
            if missing:
                self.log(f"preview: not ready to send yet, missing {', '.join(missing)} (docs/recaps.md, Brand)")
            return key or (PREVIEW_KEY if brand.signs_links else None)
        if brand.placeholder:
            raise NotReadyToSend(
                "No shop name for the emails: pass --brand FILE (docs/recaps.md) or set RECO_STORE_NAME; "
                "--preview builds with a placeholder name."
            )
        if key is None and brand.signs_links:
            raise NotReadyToSend(
                "RECO_RECAP_SIGNING_KEY is not set: the unsubscribe and view-in-browser links carry a token "
                "signed with it (any secret of at least 16 characters, kept for the service)."
            )
        if self.format in ("eml", "csv") and missing:
            raise NotReadyToSend(
                f"--format {self.format} hands emails to the sending platform, and the brand lacks "
                f"{', '.join(missing)}: add them to the brand file (docs/recaps.md), or build with --preview."
            )
        if missing:
            self.log(f"brand: missing {', '.join(missing)}: these emails are for review, not for sending yet")
        return key if brand.signs_links else None

    def _recommender(
        self, settings: Settings, catalog: pa.Table | None, options: RecapOptions
    ) -> tuple[Recommender | None, str | None, str | None, str]:
        """The picks model: --model-uri, else the champion; a missing one stops the job (--no-picks
        builds without picks on purpose)."""
        if not self.picks or options.picks_k == 0:
            return None, None, None, "disabled"
        uri = self.model_uri or settings.model_uri
        excluded = sensitive_item_ids(catalog, options.sensitive_categories) + sold_out_item_ids(catalog)
        from training.registry.loading import ModelNotFound

        try:
            recommend, version = model_recommender(
                uri, settings=settings, k=options.picks_k * PICKS_CANDIDATES_PER_PICK, exclude_items=excluded
            )
        except ModelNotFound as exc:
            raise NoPicksModel(
                f"No model for next year's picks ({exc}): train one with `reco train`, or pass --no-picks "
                "to build recaps without picks."
            ) from None
        return recommend, version, uri, "ok"


def purchase_years(purchases: pa.Table) -> tuple[int, int] | None:
    """The first and last calendar years (UTC) of the purchases, None when there are none."""
    if purchases.num_rows == 0:
        return None
    bounds = pc.min_max(purchases.column(col.TIMESTAMP))
    first, last = bounds["min"].as_py(), bounds["max"].as_py()
    return (first.year, last.year) if first is not None else None


def _no_purchases(year: int, covered: tuple[int, int] | None) -> str:
    if covered is None:
        return f"No purchases in {year}: the purchase file has no valid rows."
    span = str(covered[0]) if covered[0] == covered[1] else f"{covered[0]} to {covered[1]}"
    return f"No purchases in {year}: the purchases cover {span}."


def with_links(recaps: pa.Table, *, brand: Brand, key: bytes | None, year: int, batch: int = 50_000) -> pa.Table:
    """The recaps with each customer's `links` (view in browser, unsubscribe, List-Unsubscribe,
    List-Unsubscribe-Post, the token; null without the brand's templates) added to the record:
    computed per customer in Python (an HMAC each), appended to the JSON text by Arrow (each
    document ends with its closing brace), `batch` customers at a time (bounded pieces: a string
    array holds at most 2 GiB, and the JSONL writer takes a piece at a time)."""
    import orjson

    def tail(user: str) -> str:
        token = "" if key is None else recap_token(key, user, year)
        return ',"links":' + orjson.dumps(brand.customer_links(user, year, token)).decode() + "}"

    if brand.signs_links and key is None:
        raise NotReadyToSend("The brand's links carry a signed token and no key was given to sign them.")
    pieces = []
    for start in range(0, recaps.num_rows, batch):
        part = recaps.slice(start, batch)
        tails = pa.array([tail(user) for user in part.column(col.USER_ID).to_pylist()], pa.string())
        documents = pc.utf8_slice_codeunits(part.column("recap_json").combine_chunks(), 0, -1)
        pieces.append(pc.binary_join_element_wise(documents, tails, ""))
    joined = pa.chunked_array(pieces, pa.string())
    return recaps.set_column(recaps.schema.get_field_index("recap_json"), "recap_json", joined)
