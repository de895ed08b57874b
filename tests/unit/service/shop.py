"""A small known-answer shop for the service's unit tests (their fixtures are in conftest.py): a
hand-made ModelBundle (no training), an item catalog, and stubs at the edge (the model holder and
the online store) to serve it through the app with `app.dependency_overrides`, without MLflow,
Feast or a server.

Items (index: id, name, category, brand, price, popularity; I2 and I8 are sold out):

    0 I0 Whole Milk  Dairy   Moo      1.0   8      4 I4 Bagels     Bakery Crust    2.5  9
    1 I1 Oat Milk    Dairy   Oatly    1.5  10      5 I5 Croissant  Bakery Paris    1.2  5
    2 I2 Butter      Dairy   Moo      2.0  11 (out) 6 I6 Apples    Fruit  Orchard  2.0  7
    3 I3 Sourdough   Bakery  Crust    3.0   6      7 I7 Pears      Fruit  Orchard  2.2  4
                                                   8 I8 Saffron    Spices Zest     9.0  3 (out)
                                                   9 I9 Pain Relief Pharmacy Heal  4.0  2

Bought together (item similarity): I0–I2 0.95, I0–I1 0.9, I3–I4 0.8, I6–I7 0.7, I3–I5 0.4, I4–I9 0.35,
I0–I4 0.3, I1–I5 0.2, I4–I6 0.2. Pharmacy is the sensitive category of the service's policy
(service/policy.py). Customers: C1 bought I0 in 3 baskets (days DAY−20, DAY−10, DAY: every 10 days)
and I3 once (DAY−5); C2 bought I6 twice (DAY−10, DAY) and I4 once (DAY−2); C3 bought I5 once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import scipy.sparse as sp
from starlette.testclient import TestClient

from service.model import LoadedModel, ReloadResult
from service.online.features import CustomerFeatures, CustomerRead, OnlineStoreDown
from service.online.items import ItemCatalog, ItemInfo
from service.state import Services
from training.core.blend import Blend
from training.core.bundle import ModelBundle
from training.core.collaborative import ItemSimilarity
from training.core.history import History

DAY = 20_000.0  # days since the epoch of C1's and C2's last purchases (2024-10-04)
NOW = datetime.fromtimestamp((DAY + 2) * 86_400, tz=UTC)  # the service clock: two days later

ITEMS = [
    # id, name, category, brand, price, popularity, in stock
    ("I0", "Whole Milk", "Dairy", "Moo", 1.0, 8, True),
    ("I1", "Oat Milk", "Dairy", "Oatly", 1.5, 10, True),
    ("I2", "Butter", "Dairy", "Moo", 2.0, 11, False),
    ("I3", "Sourdough", "Bakery", "Crust", 3.0, 6, True),
    ("I4", "Bagels", "Bakery", "Crust", 2.5, 9, True),
    ("I5", "Croissant", "Bakery", "Paris", 1.2, 5, True),
    ("I6", "Apples", "Fruit", "Orchard", 2.0, 7, True),
    ("I7", "Pears", "Fruit", "Orchard", 2.2, 4, True),
    ("I8", "Saffron", "Spices", "Zest", 9.0, 3, False),
    ("I9", "Pain Relief", "Pharmacy", "Heal", 4.0, 2, True),
]
CATEGORIES = ["Dairy", "Bakery", "Fruit", "Spices", "Pharmacy"]
SIMILAR = {
    (0, 2): 0.95,
    (0, 1): 0.9,
    (3, 4): 0.8,
    (6, 7): 0.7,
    (3, 5): 0.4,
    (4, 9): 0.35,
    (0, 4): 0.3,
    (1, 5): 0.2,
    (4, 6): 0.2,
}
SENSITIVE = ("Pharmacy",)
# customer → [(item index, baskets, first day, last day)]
HISTORY = {
    "C1": [(0, 3, DAY - 20, DAY), (3, 1, DAY - 5, DAY - 5)],
    "C2": [(4, 1, DAY - 2, DAY - 2), (6, 2, DAY - 10, DAY)],
    "C3": [(5, 1, DAY - 30, DAY - 30)],
}
RECIPES = {
    "breakfast": {
        "recipe_id": "breakfast",
        "name": "Breakfast",
        "ingredients": [{"category": "Dairy"}, {"category": "Bakery"}, {"category": "Spices"}],
    }
}
KEYS = {
    "key-all": ["recommend", "recaps", "events", "admin"],
    "key-recommend": ["recommend"],
    "key-recaps": ["recaps"],
    "key-events": ["events"],
    "key-admin": ["admin"],
}


def make_bundle() -> ModelBundle:
    """The shop above as a ModelBundle: repurchase-led blend with a collaborative part."""
    indptr, indices, baskets, first, last = [0], [], [], [], []
    for rows in HISTORY.values():
        for item, n, start, end in rows:
            indices.append(item)
            baskets.append(n)
            first.append(start)
            last.append(end)
        indptr.append(len(indices))
    history = History(
        indptr=np.array(indptr, dtype=np.int64),
        indices=np.array(indices, dtype=np.int32),
        baskets=np.array(baskets, dtype=np.float32),
        first_day=np.array(first, dtype=np.float64),
        last_day=np.array(last, dtype=np.float64),
        decayed=np.array(baskets, dtype=np.float32),
        reference_day=DAY,
        half_life=30.0,
    )
    pairs = [*SIMILAR, *((j, i) for i, j in SIMILAR)]
    values = [*SIMILAR.values(), *SIMILAR.values()]
    similarity = sp.csr_matrix(
        (np.array(values, dtype=np.float32), ([i for i, _ in pairs], [j for _, j in pairs])),
        shape=(len(ITEMS), len(ITEMS)),
    )
    return ModelBundle(
        user_ids=np.array(list(HISTORY)),
        item_ids=np.array([i[0] for i in ITEMS]),
        history=history,
        popularity=np.array([i[5] for i in ITEMS], dtype=np.float32),
        in_stock=np.array([i[6] for i in ITEMS]),
        item_category=np.array([CATEGORIES.index(i[2]) for i in ITEMS], dtype=np.int32),
        categories=np.array(CATEGORIES),
        blend=Blend(repurchase=1.0, collaborative=0.5, popularity=0.1),
        collaborative=ItemSimilarity(similarity=similarity),
        version="7",
    )


def make_model(bundle: ModelBundle | None = None) -> LoadedModel:
    return LoadedModel(
        bundle=bundle or make_bundle(),
        version="7",
        uri="models:/reco@champion",
        resolved_uri="models:/reco/7",
        loaded_at=NOW,
        load_seconds=0.1,
    )


def make_catalog() -> ItemCatalog:
    """item_stats as the online store would give it (popularity_30d = the model's popularity)."""
    return ItemCatalog(
        items={
            item_id: ItemInfo(
                name=name, category=category, brand=brand, price=price, in_stock=stock, popularity_30d=pop
            )
            for item_id, name, category, brand, price, pop, stock in ITEMS
        },
        refreshed_at=NOW,
    )


def without_stock(bundle: ModelBundle, *item_ids: str) -> ModelBundle:
    """The bundle with these items sold out (as ModelHolder.set_availability would make it)."""
    in_stock = bundle.in_stock.copy()
    for item_id in item_ids:
        in_stock[bundle.item_index[item_id]] = False
    return replace(bundle, in_stock=in_stock)


@dataclass
class StubFeatures:
    """The online store at the edge: canned customer reads and recaps (or an outage)."""

    catalog: ItemCatalog = field(default_factory=make_catalog)
    customers: dict[str, CustomerFeatures] = field(default_factory=dict)
    recaps: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    down: str | None = None  # e.g. "online-store-timeout": every read fails with this reason
    kind: str = "stub"
    error: str | None = None
    populated: bool | None = True
    reload_signals: list[str] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return self.down is None

    def signal_reload(self, value: str) -> None:
        self.reload_signals.append(value)

    async def customer(self, user_id: str) -> CustomerRead:
        if self.down is not None:
            return CustomerRead(None, self.down)
        # A row for everyone (the store built from the model's purchases); known=False: no row.
        return CustomerRead(self.customers.get(user_id, CustomerFeatures(known=True)))

    async def recap(self, user_id: str, year: int) -> dict[str, Any] | None:
        if self.down is not None:
            raise OnlineStoreDown(self.down)
        return self.recaps.get((user_id, year))

    def close(self) -> None:
        pass


@dataclass
class StubHolder:
    """The model holder at the edge: a fixed model; `reload` answers what it is told to."""

    current: LoadedModel | None
    last_error: str | None = None
    candidates_published: bool | None = None
    reload_error: Exception | None = None
    reloads: list[bool] = field(default_factory=list)

    def reload(self, *, force: bool = False) -> ReloadResult:
        self.reloads.append(force)
        if self.reload_error is not None:
            raise self.reload_error
        version = self.current.version if self.current else None
        return ReloadResult(changed=force, version=version, previous=version, seconds=0.01)


@dataclass
class Shop:
    """A built app over the stubs, and the stubs to change per test."""

    client: TestClient
    app: Any
    services: Services
    holder: StubHolder
    features: StubFeatures

    def get(self, path: str, key: str | None = "key-all", **kwargs: Any) -> Any:
        return self.client.get(path, headers={"X-API-Key": key} if key else {}, **kwargs)

    def post(self, path: str, key: str | None = "key-all", **kwargs: Any) -> Any:
        return self.client.post(path, headers={"X-API-Key": key} if key else {}, **kwargs)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)
