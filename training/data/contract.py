"""The data contract (docs/data-contract.md): the schemas accepted rows come in, the limits a
row is checked against, the errors for files that cannot be used, and the validation report.

Every row is either accepted or rejected with its row number and a reason: rows read = rows
accepted + rows rejected, always. Row numbers count data rows from 1 in file order, so in a CSV
file row N is line N + 1 (the header is line 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from training.core import columns as col
from training.core.errors import RecoError


class InvalidPurchases(RecoError):
    """A purchase file cannot be used at all (unreadable, a required column missing, a wrong type)."""


class InvalidCatalog(RecoError):
    """A catalog file cannot be used at all."""


PURCHASE_SCHEMA = pa.schema(
    [
        (col.USER_ID, pa.string()),
        (col.ITEM_ID, pa.string()),
        (col.TIMESTAMP, pa.timestamp("us", tz="UTC")),
        (col.QUANTITY, pa.int32()),
        (col.PRICE, pa.float64()),
        (col.ORDER_ID, pa.string()),
    ]
)
CATALOG_SCHEMA = pa.schema(
    [
        (col.ITEM_ID, pa.string()),
        (col.NAME, pa.string()),
        (col.CATEGORY, pa.string()),
        (col.BRAND, pa.string()),
        (col.PRICE, pa.float64()),
        (col.IN_STOCK, pa.bool_()),
    ]
)
REJECTED_SCHEMA = pa.schema([("row", pa.int64()), ("code", pa.string()), ("reason", pa.string())])

ROW = "__row"
# Epoch seconds from 1970 up to 2100; larger numbers are most often epoch milliseconds.
EPOCH_MAX = 4102444800
QUANTITY_MAX = col.QUANTITY_MAX


@dataclass(frozen=True)
class ValidationReport:
    """What validation found in one file: counts, and every rejected row with its reason."""

    kind: str
    source: str
    rows_read: int
    rows_accepted: int
    rejected: pa.Table  # REJECTED_SCHEMA, sorted by row

    @property
    def rows_rejected(self) -> int:
        return self.rejected.num_rows

    @property
    def ok(self) -> bool:
        return self.rows_rejected == 0

    def reason_counts(self) -> dict[str, int]:
        """Rejected rows per kind of problem, most frequent first."""
        if not self.rows_rejected:
            return {}
        counts = pc.value_counts(self.rejected.column("code")).to_pylist()
        return dict(sorted(((c["values"], c["counts"]) for c in counts), key=lambda kv: (-kv[1], kv[0])))

    def to_dict(self, *, max_rows: int | None = None) -> dict[str, Any]:
        """JSON-ready report; `max_rows` caps the listed rows (the counts always cover all)."""
        rows = self.rejected if max_rows is None else self.rejected.slice(0, max_rows)
        return {
            "kind": self.kind,
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_accepted": self.rows_accepted,
            "rows_rejected": self.rows_rejected,
            "reasons": self.reason_counts(),
            "rejected": rows.select(["row", "reason"]).to_pylist(),
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def format_text(self, *, max_rows: int = 20) -> str:
        """A report for a terminal: counts, reasons, and the first `max_rows` rejected rows."""
        lines = [
            f"{self.kind} {self.source}: {self.rows_read:,} rows read, "
            f"{self.rows_accepted:,} accepted, {self.rows_rejected:,} rejected"
        ]
        for code, count in self.reason_counts().items():
            lines.append(f"  {count:>10,}  {code}")
        if self.rows_rejected:
            lines.append("rejected rows:")
            for entry in self.rejected.slice(0, max_rows).to_pylist():
                lines.append(f"  row {entry['row']}: {entry['reason']}")
            if self.rows_rejected > max_rows:
                lines.append(f"  … and {self.rows_rejected - max_rows:,} more (use --report FILE for all)")
        return "\n".join(lines)


def is_text(typ: pa.DataType) -> bool:
    return (
        pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_string_view(typ)
        or (pa.types.is_dictionary(typ) and is_text(typ.value_type))
    )
