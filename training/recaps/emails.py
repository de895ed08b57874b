"""Writing every customer's email files: `<customer>.html` and `<customer>.txt`, in batches, in
several processes for big runs; file names that cannot escape the directory."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from training.recaps.render import render_recap_html, render_recap_text

_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


def email_file_stem(user_id: str) -> str:
    """A file name for a customer's email that cannot escape the directory: the id itself when
    it is plain, else the id percent-encoded plus a short hash (so distinct ids never collide)."""
    if _SAFE_NAME.fullmatch(user_id):
        return user_id
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:12]
    return f"{quote(user_id, safe='')[:100].replace('.', '%2E')}~{digest}"


def write_emails(
    records: Iterable[dict[str, Any]],
    out_dir: Path,
    *,
    store: str = "us",
    currency: str = "£",
    workers: int = 1,
    progress: bool = False,
    total: int | None = None,
) -> int:
    """Write `<customer>.html` and `<customer>.txt` per recap; returns how many customers.
    With `workers` > 1, batches of customers are rendered in that many processes."""
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    batches = _batched(records, EMAIL_BATCH)
    bar = tqdm(desc="emails", unit="customer", total=total, disable=not progress)
    written = 0
    try:
        if workers <= 1:
            for batch in batches:
                written += _write_email_batch(batch, out_dir, store, currency)
                bar.update(len(batch))
            return written
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = set()
            for batch in batches:
                pending.add(pool.submit(_write_email_batch, batch, out_dir, store, currency))
                if len(pending) >= 2 * workers:  # bounded: never hold every recap in flight
                    written += _drain(pending, bar, wait_all=False)
            written += _drain(pending, bar, wait_all=True)
        return written
    finally:
        bar.close()


EMAIL_BATCH = 1000


def _batched(records: Iterable[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _drain(pending: set[Any], bar: Any, *, wait_all: bool) -> int:
    from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, wait

    done, _ = wait(pending, return_when=ALL_COMPLETED if wait_all else FIRST_COMPLETED)
    count = 0
    for future in done:
        pending.discard(future)
        n = future.result()
        bar.update(n)
        count += n
    return count


def _write_email_batch(batch: list[dict[str, Any]], out_dir: Path, store: str, currency: str) -> int:
    for record in batch:
        stem = email_file_stem(record["user_id"])
        (out_dir / f"{stem}.html").write_text(render_recap_html(record, store=store, currency=currency))
        (out_dir / f"{stem}.txt").write_text(render_recap_text(record, store=store, currency=currency))
    return len(batch)
