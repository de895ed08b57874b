"""A customer's offline candidates, filtered per request: the `home` answer without ranking.

`reco candidates build` (training/features/candidates.py) ranks every known customer once per model
version and materializes the unfiltered top-N home list and top-N/2 discover list (home's explore
slots, RECO_HOME_EXPLORE_SHARE, come from it) into the view `customer_candidates`; the service reads
them in the same online read as the customer's other features, beside the lists of the version
published before (so the version served keeps its own while the next one is published). A request
applies its live filters (excluded, just bought, out of stock, held-back categories: the bundle's
`allowed_items`) to the lists of the version it is served by, which gives exactly the core's answer
as long as at least k candidates survive; otherwise, or when neither list is of that version, the
core ranks on the spot (`None` here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from service.observability import CANDIDATE_READS, labelled
from training.core.blend import explore_slots, mix_explore

if TYPE_CHECKING:
    from service.online.features import Candidates
    from training.core.bundle import ModelBundle


def top_from_candidates(
    bundle: ModelBundle,
    candidates: Candidates | None,
    *,
    k: int,
    excluded: Sequence[str],
    exclude_categories: Sequence[str] = (),
    explore_share: float = 0.0,
) -> list[tuple[str, float]] | None:
    """The first k candidates that pass the live filters, with the discover list's first in the explore
    slots (`explore_share`, core.blend.mix_explore); None when there are none (of the served model's
    version: `CustomerFeatures.candidates_of`) or the filters leave too few: the caller ranks on the spot."""
    if candidates is None:
        labelled(CANDIDATE_READS, "none").inc()
        return None
    listed, chosen = _surviving(bundle, candidates.home, excluded, exclude_categories)
    if len(chosen) < k:
        labelled(CANDIDATE_READS, "filtered").inc()
        return None  # filters ate too many (or the list is short): the core ranks on the spot
    regular = list(zip(listed[chosen[:k]].tolist(), candidates.home_scores[chosen[:k]].tolist(), strict=True))
    wanted = len(explore_slots(k=k, share=explore_share))
    if wanted:
        explore_listed, picked = _surviving(bundle, candidates.discover, excluded, exclude_categories)
        if len(picked) < wanted:
            labelled(CANDIDATE_READS, "filtered").inc()
            return None
        picked = picked[: wanted + k]
        explore = list(zip(explore_listed[picked].tolist(), candidates.discover_scores[picked].tolist(), strict=True))
        regular = mixed(regular, explore, k=k, share=explore_share)
    labelled(CANDIDATE_READS, "used").inc()
    return [(str(bundle.item_ids[i]), s) for i, s in regular]


def _surviving(
    bundle: ModelBundle, items: np.ndarray, excluded: Sequence[str], exclude_categories: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(the listed item indices, positions of those that pass the live filters, in list order).
    Indices out of the catalog's range (a corrupt row) never pass."""
    listed = np.where((items >= 0) & (items < bundle.n_items), items, 0)
    allowed = bundle.allowed_items(exclude_items=excluded, exclude_categories=exclude_categories, among=listed)
    return listed, np.flatnonzero(allowed & (listed == items))


def mixed(
    regular: list[tuple[int, float]], explore: list[tuple[int, float]], *, k: int, share: float
) -> list[tuple[int, float]]:
    """`mix_explore` of two ranked (item, score) lists; each item keeps the score of the list it came from."""
    score = {**dict(explore), **dict(regular)}
    return [(i, score[i]) for i in mix_explore([i for i, _ in regular], [i for i, _ in explore], k=k, share=share)]
