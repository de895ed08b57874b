"""Each customer's top candidates for one model version, computed offline for the online store.

The service answers `home` from these lists: it filters them per request (excluded, just bought,
out of stock, held-back categories) and ranks on the spot only when too few survive or when the
row was ranked by another model version. Scores depend only on the model version (the ranking
core ranks as of the model's reference day), so the lists are computed once per version, here, and
not in every API worker after every load.

    build_candidates(settings=..., model_uri=None, size=50) -> CandidatesResult

writes `$RECO_HOME/features/customer_candidates.parquet` (feature view `customer_candidates`:
model_version, home (top `size`) and discover (top size/2, home's explore slots come from them),
each packed as the version's item indices and their scores (training.features.encoding.pack_ranked:
the service reads them on every request, and decoding two lists of Feast strings and doubles cost
more than a third of a cached answer), and the same of the version published before, `previous_*`),
materializes it, and tags the registered version `reco.candidates` so the
service's readiness can tell that its candidates are published.

Lists are not filtered by stock: availability changes between builds, and a list that still holds
an item that is back in stock needs no rebuild. The per-request filter drops what is out of stock.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from training.core.topk import top_k
from training.features.encoding import pack_ranked
from training.features.names import CUSTOMER_CANDIDATES, EVENT_TIMESTAMP, USER_ID
from training.features.store import source_path
from training.registry import CANDIDATES_TAG

if TYPE_CHECKING:
    from training.core.bundle import ModelBundle
    from training.features.materialize import ViewResult
    from training.settings import Settings

BATCH = 256  # customers scored per matrix product
DEFAULT_SIZE = 50


@dataclass(frozen=True)
class CandidatesResult:
    """What `build_candidates` did."""

    model_version: str
    customers: int
    size: int
    seconds: float
    materialized: ViewResult | None

    def format_text(self) -> str:
        written = f"; {self.materialized.rows_written:,} rows materialized" if self.materialized else ""
        return (
            f"candidates of model version {self.model_version}: {self.customers:,} customers x {self.size} "
            f"in {self.seconds:.1f} s{written}"
        )


# The lists of the version being published, and of the one published before it (`write_candidates`).
# Each list is packed (encoding.pack_ranked: the version's item indices, then their scores).
CURRENT_SLOT = ("model_version", "home", "discover")
PREVIOUS_SLOT = ("previous_version", "previous_home", "previous_discover")
_SLOT_TYPES = (pa.string(), pa.binary(), pa.binary())
SCHEMA = pa.schema(
    [
        pa.field(USER_ID, pa.string()),
        *(pa.field(name, kind) for name, kind in zip(CURRENT_SLOT, _SLOT_TYPES, strict=True)),
        *(pa.field(name, kind) for name, kind in zip(PREVIOUS_SLOT, _SLOT_TYPES, strict=True)),
        pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
    ]
)


def candidate_lists(bundle: ModelBundle, rows: np.ndarray, *, size: int) -> dict[str, list[bytes]]:
    """The unfiltered top-`size` home list and top-`size`/2 discover list of history rows, best
    first, packed (item indices and scores; only finite scores: a context that excludes an item
    leaves it out)."""
    scored = bundle.score_contexts(rows=rows, contexts=("home", "discover"))
    out: dict[str, list[bytes]] = {}
    for context, k in (("home", size), ("discover", max(1, size // 2))):
        ids, values = top_k(scored[context], k=k)
        finite = np.isfinite(values)
        out[context] = [pack_ranked(i[f], v[f]) for i, v, f in zip(ids, values, finite, strict=True)]
    return out


def write_candidates(
    bundle: ModelBundle,
    *,
    version: str,
    path: Path,
    size: int = DEFAULT_SIZE,
    stamp: datetime | None = None,
) -> int:
    """Write the candidates of every customer with a history to the view's Parquet file; returns the
    customers written.

    Each row keeps the lists of the version published before in its `previous_` slot (from the file
    it replaces; a rebuild of the same version keeps that file's previous slot): while the new lists
    are written and until the alias moves, the version being served still finds its own lists, so a
    model swap never goes through a stretch of answers ranked per request."""
    known = np.flatnonzero(np.diff(bundle.history.indptr) > 0)
    stamp = stamp or datetime.now(UTC)
    before = _previous_slots(path, version)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with pq.ParquetWriter(tmp, SCHEMA) as writer:
        for start in range(0, len(known), BATCH):
            rows = known[start : start + BATCH]
            users = pa.array(bundle.user_ids[rows].tolist(), pa.string())
            lists = candidate_lists(bundle, rows, size=size)
            columns: dict[str, Any] = {USER_ID: users, "model_version": [version] * len(rows), **lists}
            if before is not None:
                carried = before.take(pc.index_in(users, value_set=before.column(USER_ID)))
                columns.update({name: carried.column(name) for name in PREVIOUS_SLOT})
            else:
                columns.update({name: pa.nulls(len(rows), SCHEMA.field(name).type) for name in PREVIOUS_SLOT})
            columns[EVENT_TIMESTAMP] = [stamp] * len(rows)
            writer.write_table(pa.table(columns, schema=SCHEMA))
    os.replace(tmp, path)
    return len(known)


def _previous_slots(path: Path, version: str) -> pa.Table | None:
    """user_id and the lists the new file keeps as `previous_`: the old file's current lists, or its
    previous ones when it holds this same version already (None: no old file)."""
    if not path.exists():
        return None
    old = pq.read_table(path)
    if not set(SCHEMA.names) <= set(old.column_names):
        return None  # an older layout: nothing to carry
    same = pc.equal(old.column("model_version"), version)
    return pa.table(
        {
            USER_ID: old.column(USER_ID),
            **{
                new: pc.if_else(same, old.column(new), old.column(current))
                for new, current in zip(PREVIOUS_SLOT, CURRENT_SLOT, strict=True)
            },
        }
    )


def build_candidates(
    *, settings: Settings, model_uri: str | None = None, size: int = DEFAULT_SIZE, materialize: bool = True
) -> CandidatesResult:
    """Compute every known customer's candidates for the model at `model_uri` (default: the settings'
    RECO_MODEL_URI, e.g. models:/reco@champion), write the view's source, materialize it and tag the
    registered version as published."""
    from training.features.materialize import materialize as push
    from training.registry.loading import load_bundle, resolve_version
    from training.registry.publishing import tag_version

    started = time.perf_counter()
    uri = model_uri or settings.model_uri
    name, version, resolved = resolve_version(uri, settings=settings)
    # Load the resolved version, not the alias: it may move meanwhile.
    bundle = load_bundle(resolved if version is not None else uri, settings=settings)
    label = version if version is not None else bundle.version or resolved  # as the service labels it
    path = source_path(CUSTOMER_CANDIDATES, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    customers = write_candidates(bundle, version=str(label), path=path, size=size)
    materialized = None
    if materialize:
        [materialized] = push(settings=settings, views=[CUSTOMER_CANDIDATES]).views
        if version is not None:
            tag_version(settings=settings, name=name, version=version, key=CANDIDATES_TAG, value=_now_text())
    return CandidatesResult(str(label), customers, size, time.perf_counter() - started, materialized)


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
