"""Every customer's email, in the form the sending side takes, rendered in batches (in several
processes for big runs):

- `html`: `<customer>.html` and `<customer>.txt` (for review, or a platform that takes both bodies);
- `eml`: `<customer>.eml`, a complete multipart/alternative message (text + HTML) with its subject,
  preheader and List-Unsubscribe headers, that a mail client opens and an SMTP relay sends;
- `csv`: one merge file, a row per customer with the fields an email platform's own template uses
  (`MERGE_COLUMNS`, docs/recaps.md).

File names cannot escape their directory. The same records and brand give the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import deque
from collections.abc import Iterable, Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from training.recaps.brand import PLACEHOLDER_NAME, Brand
from training.recaps.render import formats, persona_of, persona_sentence, render_recap

EmailForm = Literal["html", "eml", "csv"]
EMAIL_BATCH = 1000
MERGE_PICKS = MERGE_TOP = 5
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
# Header lines may be long (an unsubscribe URL does not fold): RFC 5322's hard limit, CRLF endings.
_EML_POLICY = SMTP.clone(max_line_length=998)
PREVIEW_SENDER = f"{PLACEHOLDER_NAME} <recaps@example.invalid>"

MERGE_COLUMNS: tuple[str, ...] = (
    "user_id", "year", "kind", "subject", "preheader",
    "persona", "persona_title", "persona_sentence",
    "orders", "items", "spend", "spend_amount", "days_shopped", "change_vs_previous_year",
    "busiest_month", "favourite_weekday", "longest_weekly_streak",
    *(f"top_category_{i}" for i in range(1, MERGE_TOP + 1)),
    *(f"top_brand_{i}" for i in range(1, MERGE_TOP + 1)),
    *(f"top_item_{i}{s}" for i in range(1, MERGE_TOP + 1) for s in ("", "_url")),
    "staple", "staple_url", "new_categories", "new_brands", "comparisons",
    *(f"pick_{i}{s}" for i in range(1, MERGE_PICKS + 1) for s in ("", "_url", "_image")),
    "cta_url", "view_in_browser_url", "unsubscribe_url", "list_unsubscribe", "list_unsubscribe_post",
)  # fmt: skip


def email_file_stem(user_id: str) -> str:
    """A file name for a customer's email that cannot escape the directory: the id itself when
    it is plain, else the id percent-encoded plus a short hash (so distinct ids never collide)."""
    if _SAFE_NAME.fullmatch(user_id):
        return user_id
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:12]
    return f"{quote(user_id, safe='')[:100].replace('.', '%2E')}~{digest}"


def recap_message(record: dict[str, Any], *, brand: Brand) -> EmailMessage:
    """One customer's recap as a multipart/alternative message (text, then HTML). The sending
    platform adds To, Date and Message-ID; X-Reco-Customer says whom it is for."""
    email = render_recap(record, brand=brand)
    message = EmailMessage(policy=_EML_POLICY)
    message["From"] = brand.sender or PREVIEW_SENDER
    message["Subject"] = email.subject
    message["X-Reco-Customer"] = str(record["user_id"])
    message["X-Reco-Preheader"] = email.preheader
    links = record.get("links") or {}
    if links.get("list_unsubscribe"):
        message["List-Unsubscribe"] = links["list_unsubscribe"]
        message["List-Unsubscribe-Post"] = links["list_unsubscribe_post"]
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    # A boundary from the content, not a random one: the same recap gives the same bytes.
    digest = hashlib.sha256(f"{record['user_id']}\0{record['year']}".encode()).hexdigest()[:24]
    message.set_boundary(f"=_recap_{digest}")
    return message


def merge_row(record: dict[str, Any], *, brand: Brand) -> dict[str, str]:
    """A customer's row of the merge file: every value formatted as the email shows it."""
    from training.recaps.render import preheader, subject

    f = formats(brand.locale, brand.currency)
    year = int(record["year"])
    links = record.get("links") or {}
    change = record.get("change_vs_previous_year") or {}
    discoveries = record.get("discoveries") or {}
    row: dict[str, Any] = {
        "user_id": record["user_id"],
        "year": year,
        "kind": record.get("kind"),
        "subject": subject(record, brand),
        "preheader": preheader(record, brand),
        "persona": (record.get("persona") or {}).get("name"),
        "persona_title": persona_of(record).title,
        "persona_sentence": persona_sentence(record),
        "orders": f.num(record.get("orders")),
        "items": f.num(record.get("items")),
        "spend": f.money(record.get("spend")),
        "spend_amount": f"{float(record.get('spend') or 0):.2f}",
        "days_shopped": f.num(record.get("days_shopped")),
        "change_vs_previous_year": ""
        if not change
        else f"{f.pct(change.get('orders_pct'))} orders, {f.pct(change.get('items_pct'))} items",
        "busiest_month": (record.get("busiest_month") or {}).get("name"),
        "favourite_weekday": (record.get("favourite_weekday") or {}).get("name"),
        "longest_weekly_streak": f.count(record.get("longest_weekly_streak"), "week"),
        "staple": (record.get("staple") or {}).get("name"),
        "staple_url": brand.product_link(record["staple"]["item_id"], year=year, content="staple")
        if record.get("staple")
        else None,
        "new_categories": f.some_of(discoveries.get("categories") or [], discoveries.get("categories_count")),
        "new_brands": f.some_of(discoveries.get("brands") or [], discoveries.get("brands_count")),
        "comparisons": " ".join(f"{c['text']}." for c in record.get("comparisons") or []),
        "cta_url": brand.shop_link(year=year, content="cta"),
        "view_in_browser_url": links.get("view_in_browser"),
        "unsubscribe_url": links.get("unsubscribe"),
        "list_unsubscribe": links.get("list_unsubscribe"),
        "list_unsubscribe_post": links.get("list_unsubscribe_post"),
    }
    for i, c in enumerate((record.get("top_categories") or [])[:MERGE_TOP], start=1):
        row[f"top_category_{i}"] = c["category"]
    for i, b in enumerate((record.get("top_brands") or [])[:MERGE_TOP], start=1):
        row[f"top_brand_{i}"] = b["brand"]
    for i, item in enumerate((record.get("top_items") or [])[:MERGE_TOP], start=1):
        row[f"top_item_{i}"] = item["name"]
        row[f"top_item_{i}_url"] = brand.product_link(item["item_id"], year=year, content="favourites")
    for i, pick in enumerate((record.get("picks") or [])[:MERGE_PICKS], start=1):
        row[f"pick_{i}"] = pick["name"]
        row[f"pick_{i}_url"] = brand.product_link(pick["item_id"], year=year, content="picks")
        row[f"pick_{i}_image"] = brand.image_link(pick["item_id"])
    return {k: "" if row.get(k) is None else str(row[k]) for k in MERGE_COLUMNS}


def merge_file_path(out: Path) -> Path:
    """`recaps/2025.jsonl` → `recaps/2025.csv`: the merge file sits beside the records."""
    return out.with_name((out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name) + ".csv")


def write_emails(
    records: Iterable[dict[str, Any]],
    out: Path,
    *,
    brand: Brand,
    form: EmailForm = "html",
    workers: int = 1,
    progress: bool = False,
    total: int | None = None,
) -> int:
    """Write every customer's email as `form` (`out` is the directory of html/eml files, or the
    merge file of csv); returns how many customers. With `workers` > 1, batches of customers are
    rendered in that many processes (the merge file's rows stay in the records' order)."""
    from tqdm import tqdm

    bar = tqdm(desc="emails", unit="customer", total=total, disable=not progress)
    written = 0
    merge = None
    if form == "csv":
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        merge = partial.open("w", encoding="utf-8", newline="")
        merge.write(_csv_text([dict(zip(MERGE_COLUMNS, MERGE_COLUMNS, strict=True))]))
    else:
        out.mkdir(parents=True, exist_ok=True)
    try:
        for count, text in _rendered(records, out, brand=brand, form=form, workers=workers):
            if merge is not None:
                merge.write(text)
            written += count
            bar.update(count)
    finally:
        bar.close()
        if merge is not None:
            merge.close()
    if form == "csv":
        partial.replace(out)  # written atomically, like the JSONL
    return written


def _rendered(
    records: Iterable[dict[str, Any]], out: Path, *, brand: Brand, form: EmailForm, workers: int
) -> Iterator[tuple[int, str]]:
    """(customers, merge text) per batch, in the records' order."""
    batches = _batched(records, EMAIL_BATCH)
    if workers <= 1:
        for batch in batches:
            yield _render_batch(batch, out, brand, form)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque[Any] = deque()
        for batch in batches:
            pending.append(pool.submit(_render_batch, batch, out, brand, form))
            if len(pending) >= 2 * workers:  # bounded: never hold every recap in flight
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _batched(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _render_batch(batch: list[dict[str, Any]], out: Path, brand: Brand, form: EmailForm) -> tuple[int, str]:
    if form == "csv":
        return len(batch), _csv_text([merge_row(record, brand=brand) for record in batch])
    for record in batch:
        stem = email_file_stem(record["user_id"])
        if form == "eml":
            (out / f"{stem}.eml").write_bytes(recap_message(record, brand=brand).as_bytes())
        else:
            email = render_recap(record, brand=brand)
            (out / f"{stem}.html").write_text(email.html, encoding="utf-8")
            (out / f"{stem}.txt").write_text(email.text, encoding="utf-8")
    return len(batch), ""


def _csv_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MERGE_COLUMNS, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue()
