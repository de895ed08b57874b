"""`reco recaps preview`: what marketing reviews before a send. One contact sheet of sample recaps
(every persona, small and big recaps, always the longest and the shortest) and a summary of the run:
persona counts, the share with picks and with comparisons shown, the longest and shortest recap.

It reads the JSONL of `reco recaps build` (and the manifest beside it, for the brand the emails were
rendered with) in two streaming passes, whatever its size, and writes into OUT:
`contact-sheet.html` (a page for a browser, the recaps at half size), `summary.json` and
`emails/<customer>.html` (each sampled email at full size).
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.core.errors import RecoError
from training.recaps.brand import Brand, make_brand
from training.recaps.emails import email_file_stem
from training.recaps.render import environment, formats, render_recap, render_recap_card
from training.recaps.rules import PERSONA_RULES, SHORT_PERSONA

DEFAULT_SAMPLE = 24
RESERVOIR = 2_000  # customers kept per persona to choose sizes from: bounded memory on any store
SHEET, SUMMARY, EMAILS = "contact-sheet.html", "summary.json", "emails"


class InvalidRecaps(RecoError):
    """The recap file cannot be previewed (missing, not JSONL, another year)."""


@dataclass
class _Extreme:
    """The longest or shortest recap so far: (record size in characters, customer)."""

    size: int
    user_id: str


@dataclass
class _Tally:
    """What one pass over the records counts."""

    year: int
    recaps: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    personas: Counter[str] = field(default_factory=Counter)
    with_picks: int = 0
    with_comparisons: int = 0
    with_discoveries: int = 0
    with_unsubscribe: int = 0
    new_customers: int = 0
    model_versions: Counter[str] = field(default_factory=Counter)
    longest: _Extreme | None = None
    shortest: _Extreme | None = None
    # persona → max-heap (by hash) of (-hash, size, customer): a fixed pseudo-random subset
    reservoirs: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)

    def add(self, record: dict[str, Any], size: int) -> None:
        user = str(record["user_id"])
        persona = str((record.get("persona") or {}).get("name"))
        self.recaps += 1
        self.kinds[str(record.get("kind"))] += 1
        self.personas[persona] += 1
        self.with_picks += bool(record.get("picks"))
        self.with_comparisons += bool(record.get("comparisons"))
        discoveries = record.get("discoveries") or {}
        self.with_discoveries += bool(discoveries.get("categories") or discoveries.get("brands"))
        self.with_unsubscribe += bool((record.get("links") or {}).get("unsubscribe"))
        self.new_customers += bool(record.get("new_customer"))
        self.model_versions[str(record.get("model_version"))] += 1
        if self.longest is None or (size, user) > (self.longest.size, self.longest.user_id):
            self.longest = _Extreme(size, user)
        if self.shortest is None or (size, user) < (self.shortest.size, self.shortest.user_id):
            self.shortest = _Extreme(size, user)
        entry = (-_rank(user), size, user)
        heap = self.reservoirs.setdefault(persona, [])
        if len(heap) < RESERVOIR:
            heapq.heappush(heap, entry)
        elif entry > heap[0]:
            heapq.heapreplace(heap, entry)


def _rank(user_id: str) -> int:
    """A stable pseudo-random rank of a customer (the same sample on every run)."""
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line.rstrip("\n")
    except OSError as exc:
        raise InvalidRecaps(f"The recap file {path} cannot be read ({exc.strerror or exc}).") from None


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    import orjson

    for number, line in _lines(path):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise InvalidRecaps(
                f"{path} line {number} is not a recap (not JSON): is it the --out of a build?"
            ) from None
        if not isinstance(record, dict) or "user_id" not in record or "year" not in record:
            raise InvalidRecaps(f"{path} line {number} is not a recap record (no user_id or year).")
        yield line, record


def choose_sample(tally: _Tally, size: int) -> list[str]:
    """`size` customers: the longest and the shortest recap, then each persona in turn (as many as
    it has, spread evenly over its recap sizes, smallest to biggest)."""
    chosen: list[str] = []
    for extreme in (tally.longest, tally.shortest):
        if extreme is not None and extreme.user_id not in chosen and len(chosen) < size:
            chosen.append(extreme.user_id)
    order = [r.name for r in PERSONA_RULES] + [SHORT_PERSONA.name]
    personas = sorted(tally.reservoirs, key=lambda p: (order.index(p) if p in order else len(order), p))
    members = {p: sorted((s, u) for _, s, u in tally.reservoirs[p] if u not in chosen) for p in personas}
    quota = dict.fromkeys(personas, 0)
    while len(chosen) + sum(quota.values()) < size:
        grew = False
        for p in personas:
            if len(chosen) + sum(quota.values()) < size and quota[p] < len(members[p]):
                quota[p] += 1
                grew = True
        if not grew:
            break
    for p in personas:
        group, n = members[p], quota[p]
        chosen += [group[min(len(group) - 1, int((i + 0.5) * len(group) / n))][1] for i in range(n)] if n else []
    return chosen


def brand_of_build(recaps: Path) -> Brand | None:
    """The brand a build rendered its emails with, from the manifest beside the JSONL (None without one)."""
    from training.recaps.job import manifest_path

    path = manifest_path(recaps)
    if not path.exists():
        return None
    try:
        fields = json.loads(path.read_text())["rendering"]["brand"]
    except (ValueError, KeyError, TypeError):
        return None
    return make_brand(fields, source=f"The manifest {path}")


def preview_recaps(*, recaps: Path, year: int, out: Path, brand: Brand, sample: int = DEFAULT_SAMPLE) -> dict[str, Any]:
    """Write the contact sheet, the sampled emails and summary.json into `out`; returns the summary."""
    tally = _Tally(year=year)
    for line, record in _records(recaps):
        if int(record["year"]) != year:
            raise InvalidRecaps(f"{recaps} holds recaps of {record['year']}, not {year}.")
        tally.add(record, len(line))
    if tally.recaps == 0:
        raise InvalidRecaps(f"{recaps} holds no recaps.")
    wanted = choose_sample(tally, sample)
    picked = {str(r["user_id"]): r for _, r in _records(recaps) if str(r["user_id"]) in set(wanted)}
    records = [picked[u] for u in wanted]

    (out / EMAILS).mkdir(parents=True, exist_ok=True)
    cards = []
    text_lines: dict[str, int] = {}
    f = formats(brand.locale, brand.currency)
    for record in records:
        email = render_recap(record, brand=brand)
        stem = email_file_stem(str(record["user_id"]))
        (out / EMAILS / f"{stem}.html").write_text(email.html, encoding="utf-8")
        text_lines[str(record["user_id"])] = len(email.text.splitlines())
        cards.append(
            {
                "record": record,
                "file": f"{EMAILS}/{stem}.html",
                "subject": email.subject,
                "spend": f.money(record.get("spend")),
                "html": render_recap_card(record, brand=brand),
            }
        )
    summary = _summary(tally, brand=brand, recaps=recaps, sample=wanted, text_lines=text_lines, out=out)
    sheet = environment().get_template("contact_sheet.html").render(summary=summary, cards=cards, brand=brand, f=f)
    (out / SHEET).write_text(sheet, encoding="utf-8")
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _summary(
    tally: _Tally, *, brand: Brand, recaps: Path, sample: list[str], text_lines: dict[str, int], out: Path
) -> dict[str, Any]:
    n = tally.recaps

    def share(count: int) -> float:
        return round(count / n, 4)

    def extreme(e: _Extreme | None) -> dict[str, Any] | None:
        return (
            None
            if e is None
            else {"user_id": e.user_id, "record_chars": e.size, "text_lines": text_lines.get(e.user_id)}
        )

    return {
        "year": tally.year,
        "recaps": n,
        "full": tally.kinds.get("full", 0),
        "short": tally.kinds.get("short", 0),
        "personas": {p: {"customers": c, "share": share(c)} for p, c in tally.personas.most_common()},
        "share_with_picks": share(tally.with_picks),
        "share_with_comparisons": share(tally.with_comparisons),
        "share_with_discoveries": share(tally.with_discoveries),
        "share_with_unsubscribe_link": share(tally.with_unsubscribe),
        "share_new_customers": share(tally.new_customers),
        "model_versions": dict(tally.model_versions.most_common()),
        "longest": extreme(tally.longest),
        "shortest": extreme(tally.shortest),
        "brand": {"name": brand.name, "missing_for_sending": brand.missing_for_sending()},
        "recaps_file": str(recaps),
        "sample": sample,
        "contact_sheet": str(out / SHEET),
    }


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as the command prints it."""

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    lines = [
        f"{summary['recaps']:,} recaps for {summary['year']} ({summary['full']:,} full, {summary['short']:,} short)",
        "personas: " + ", ".join(f"{p} {v['customers']:,} ({pct(v['share'])})" for p, v in summary["personas"].items()),
        f"with picks {pct(summary['share_with_picks'])}, with comparisons {pct(summary['share_with_comparisons'])}, "
        f"with discoveries {pct(summary['share_with_discoveries'])}, "
        f"with an unsubscribe link {pct(summary['share_with_unsubscribe_link'])}",
    ]
    for which in ("longest", "shortest"):
        e = summary[which]
        if e:
            lines.append(
                f"{which}: {e['user_id']} ({e['record_chars']:,} characters of record, {e['text_lines']} lines of text)"
            )
    missing = summary["brand"]["missing_for_sending"]
    if missing:
        lines.append(f"not ready to send: the brand lacks {', '.join(missing)}")
    lines.append(f"contact sheet: {summary['contact_sheet']} ({len(summary['sample'])} recaps)")
    return "\n".join(lines)
