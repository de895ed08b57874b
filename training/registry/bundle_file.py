"""Model bundle on disk: `arrays.npz` (numpy arrays, no pickle) + `config.json` (blend, params, ids of the run)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from training.core.blend import Blend
from training.core.bundle import ModelBundle
from training.core.collaborative import Collaborative
from training.core.copurchase import CategoryBaskets
from training.core.errors import RecoError
from training.core.history import CoBuyers, History
from training.core.rerank import Reranker

# Format 2 adds home's re-ranker (its arrays and Blend.home_rerank); a bundle without one is still
# written as format 1, which services from before the re-ranker read.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
ARRAYS = "arrays.npz"
CONFIG = "config.json"
RERANKER = "reranker_"  # the prefix of the re-ranker's arrays
_MAP_MIN_BYTES = 1 << 20


class InvalidBundle(RecoError):
    """A bundle directory is missing files or was written by an incompatible version."""


def save_bundle(bundle: ModelBundle, *, path: Path) -> Path:
    """Write the bundle to a directory (created); returns the directory."""
    path.mkdir(parents=True, exist_ok=True)
    h = bundle.history
    arrays: dict[str, np.ndarray] = {
        "user_ids": bundle.user_ids.astype(str),
        "item_ids": bundle.item_ids.astype(str),
        "history_indptr": h.indptr,
        "history_indices": h.indices,
        "history_baskets": h.baskets,
        "history_first_day": h.first_day,
        "history_last_day": h.last_day,
        "history_decayed": h.decayed,
        "popularity": bundle.popularity,
        "in_stock": bundle.in_stock,
        "item_category": bundle.item_category,
        "categories": bundle.categories.astype(str),
    }
    # The history by item, which the service's reasons count co-buyers in: saved so that workers map
    # it like the rest instead of each building a copy that grows with the number of customers.
    arrays["co_buyers_indptr"] = bundle.co_buyers.indptr
    arrays["co_buyers_customers"] = bundle.co_buyers.customers
    cf = bundle.collaborative
    if cf is not None:
        arrays.update(cf.arrays())
    if bundle.category_baskets is not None:
        arrays["category_baskets"] = bundle.category_baskets.together
    if bundle.reranker is not None:
        arrays.update({f"{RERANKER}{name}": values for name, values in bundle.reranker.arrays().items()})
    _write_aligned_npz(path / ARRAYS, arrays)
    config = {
        "format_version": FORMAT_VERSION if bundle.reranker is not None else 1,
        "blend": bundle.blend.to_dict(),
        "collaborative": None if cf is None else cf.kind,
        "reference_day": h.reference_day,
        "half_life": h.half_life,
        **{k: v for k, v in bundle.config.items() if k not in {"blend", "collaborative", "baskets", "format_version"}},
        **({"baskets": bundle.category_baskets.baskets} if bundle.category_baskets is not None else {}),
    }
    (path / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
    return path


_ALIGN = 64
_PAD_ID = 0xD935  # the extra-field id zipalign uses for padding


def _write_aligned_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed .npz (readable by np.load) whose array data starts on 64-byte boundaries, so
    that loading can memory-map every array and BLAS gets aligned memory."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            header = io.BytesIO()
            np.lib.format.write_array_header_2_0(header, np.lib.format.header_data_from_array_1_0(array))
            head = header.getvalue()
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = len(head) + array.nbytes
            offset = archive.fp.tell() if archive.fp is not None else 0
            used = offset + 30 + len(info.filename.encode()) + len(head) + 4
            info.extra = (
                _PAD_ID.to_bytes(2, "little") + ((-used) % _ALIGN).to_bytes(2, "little") + b"\0" * ((-used) % _ALIGN)
            )
            with archive.open(info, "w", force_zip64=info.file_size > 0x7FFF0000) as out:
                out.write(head)
                out.write(array.reshape(-1).view(np.uint8).data if array.nbytes else b"")


def _map_npz(path: Path) -> dict[str, np.ndarray]:
    """Memory-map the arrays of an uncompressed .npz (what `np.savez` writes): loading costs
    milliseconds and replicas share the page cache. Object arrays are refused (no pickle)."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                arrays[name] = np.load(archive.open(info), allow_pickle=False)
                continue
            fh.seek(info.header_offset)
            local = fh.read(30)
            start = (
                info.header_offset
                + 30
                + int.from_bytes(local[26:28], "little")
                + int.from_bytes(local[28:30], "little")
            )
            fh.seek(start)
            major, _ = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            if dtype.hasobject:
                raise ValueError(f"array {name!r} holds Python objects")
            if int(np.prod(shape)) == 0:
                arrays[name] = np.zeros(shape, dtype=dtype)
            else:
                order: Literal["C", "F"] = "F" if fortran else "C"
                mapped = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape, order=order)
                # Small arrays (catalog flags, popularity) become ordinary, writable arrays; so do
                # unaligned ones (a bundle written by np.savez), which BLAS would not use directly.
                small = mapped.nbytes < _MAP_MIN_BYTES or fh.tell() % _ALIGN
                # Mapped ones as plain ndarray views: np.memmap's Python-level indexing costs on
                # every lookup of the serving path.
                arrays[name] = np.array(mapped) if small else mapped.view(np.ndarray)
    return arrays


def load_bundle_dir(path: Path, *, version: str = "") -> ModelBundle:
    """Load a bundle directory written by `save_bundle` (no pickle is ever read)."""
    try:
        config: dict[str, Any] = json.loads((path / CONFIG).read_text())
        a = _map_npz(path / ARRAYS)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InvalidBundle(f"Cannot read the model bundle in {path} ({exc}).") from None
    if config.get("format_version") not in READABLE_FORMATS:
        raise InvalidBundle(
            f"The bundle in {path} has format {config.get('format_version')}, expected one of "
            f"{', '.join(map(str, READABLE_FORMATS))}: a newer `reco train` wrote it; update the service."
        )
    kind = config.get("collaborative")
    cf = None if kind is None else Collaborative.from_arrays(kind, a, n_items=len(a["item_ids"]))
    history = History(
        indptr=a["history_indptr"],
        indices=a["history_indices"],
        baskets=a["history_baskets"],
        first_day=a["history_first_day"],
        last_day=a["history_last_day"],
        decayed=a["history_decayed"],
        reference_day=float(config["reference_day"]),
        half_life=float(config["half_life"]),
    )
    return ModelBundle(
        user_ids=a["user_ids"],
        item_ids=a["item_ids"],
        history=history,
        popularity=a["popularity"],
        in_stock=a["in_stock"],
        item_category=a["item_category"],
        categories=a["categories"],
        blend=Blend(**config["blend"]),
        collaborative=cf,
        category_baskets=(
            CategoryBaskets(together=np.asarray(a["category_baskets"]), baskets=int(config["baskets"]))
            if "category_baskets" in a and "baskets" in config
            else None  # written before baskets were counted: basket completion quotes co-buyers only
        ),
        reranker=(
            Reranker.of_arrays({n.removeprefix(RERANKER): a[n] for n in a if n.startswith(RERANKER)})
            if f"{RERANKER}roots" in a
            else None
        ),
        config=config,
        version=version or str(config.get("run_id", "")),
        _co_buyers=(
            CoBuyers(
                indptr=a["co_buyers_indptr"],
                customers=a["co_buyers_customers"],
                n_customers=int(np.count_nonzero(np.diff(history.indptr))),
            )
            if "co_buyers_indptr" in a
            else None  # written before they were saved: built on first use
        ),
    )
