"""Every feature view, feature service and join key, spelled once.

Standard library only: the builders, the materializer, the recap job and the service import it.
The definitions in feature_repo/ import only Feast, so they spell these names themselves;
tests/unit/features/test_repo.py checks that both spellings agree.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = "reco"

# Join keys (the data contract's id columns) and the recap's year.
USER_ID = "user_id"
ITEM_ID = "item_id"
YEAR = "year"

# Feature views.
CUSTOMER_PROFILE = "customer_profile"
CUSTOMER_RECENT_ITEMS = "customer_recent_items"
ITEM_STATS = "item_stats"
CUSTOMER_YEAR_RECAP = "customer_year_recap"
CUSTOMER_CANDIDATES = "customer_candidates"
BUILT_VIEWS = (CUSTOMER_PROFILE, CUSTOMER_RECENT_ITEMS, ITEM_STATS)  # written by `reco features build`
# The recap view is written by `reco recaps build`, the candidates by `reco candidates build`.
ALL_VIEWS = (*BUILT_VIEWS, CUSTOMER_CANDIDATES, CUSTOMER_YEAR_RECAP)

# Feature services: what each consumer reads.
RECOMMEND_SERVICE = "recommend_v1"
ITEMS_SERVICE = "items_v1"
RECAP_SERVICE = "recap_v1"

EVENT_TIMESTAMP = "event_timestamp"
OFFLINE_DIR = "features"  # under RECO_HOME: the offline Parquet sources


def offline_source(view: str, home: str | os.PathLike[str] | None = None) -> str:
    """The offline Parquet file of a view: `<home>/features/<view>.parquet` (home: RECO_HOME, else
    `.reco` in the working directory; `reco` points the sources at its own home when it applies them)."""
    return str(
        Path(home if home is not None else os.environ.get("RECO_HOME", ".reco")) / OFFLINE_DIR / f"{view}.parquet"
    )
