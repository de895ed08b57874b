"""The candidates file `reco candidates build` writes: every known customer's unfiltered lists, and
the lists of the version published before, carried over so a model swap keeps its lists."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tests.unit.service.shop import make_bundle
from training.features.candidates import PREVIOUS_SLOT, candidate_lists, write_candidates
from training.features.encoding import unpack_ranked


def ranked(bundle, packed: bytes) -> tuple[list[str], list[float]]:  # type: ignore[no-untyped-def]
    items, scores = unpack_ranked(packed)
    return bundle.item_ids[items].tolist(), scores.tolist()


def test_lists_are_the_cores_ranking_before_live_filters(tmp_path: Path) -> None:
    bundle = make_bundle()
    path = tmp_path / "customer_candidates.parquet"
    written = write_candidates(bundle, version="1", path=path, size=4)
    rows = {r["user_id"]: r for r in pq.read_table(path).to_pylist()}
    known = [u for u in bundle.user_ids.tolist() if bundle.knows_user(u)]
    assert written == len(rows) == len(known) and set(rows) == set(known)
    for user in known:
        row = rows[user]
        # Out-of-stock items stay in the lists (the service filters per request): the core without stock.
        core = replace(bundle, in_stock=np.ones_like(bundle.in_stock)).recommend_batch([user], k=4)[0]
        home, scores = ranked(bundle, row["home"])
        assert home == [i for i, _ in core] and row["model_version"] == "1"
        # The same scores up to float32 rounding: BLAS may round a batch of one customer differently.
        assert np.allclose(scores, [s for _, s in core], rtol=1e-6, atol=0)
        discover, _ = ranked(bundle, row["discover"])
        bought = bundle.item_ids[bundle.history.indices[bundle.history.row(bundle.user_index[user])]].tolist()
        assert 0 < len(discover) <= 2 and not set(discover) & set(bought)
        assert all(row[name] is None for name in PREVIOUS_SLOT)


def test_a_new_version_keeps_the_lists_of_the_one_before(tmp_path: Path) -> None:
    bundle = make_bundle()
    path = tmp_path / "customer_candidates.parquet"
    write_candidates(bundle, version="1", path=path, size=4)
    first = {r["user_id"]: r for r in pq.read_table(path).to_pylist()}
    write_candidates(bundle, version="2", path=path, size=3)
    write_candidates(bundle, version="2", path=path, size=3)  # a rebuild of the same version
    second = {r["user_id"]: r for r in pq.read_table(path).to_pylist()}
    user = next(iter(second))
    assert second[user]["model_version"] == "2" and len(ranked(bundle, second[user]["home"])[0]) == 3
    assert second[user]["previous_version"] == "1"
    assert second[user]["previous_home"] == first[user]["home"]
    assert second[user]["previous_discover"] == first[user]["discover"]
    lists = candidate_lists(bundle, np.array([bundle.user_index[user]]), size=3)
    assert second[user]["discover"] == lists["discover"][0]
