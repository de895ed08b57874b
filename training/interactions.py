"""Purchase lines as arrays: `Interactions` owns the id ↔ index mapping of customers and items.

One object, used by every model, keeps the lines as numpy columns (customer index, item index,
day, basket index), so that splits, histories and matrices are cheap vectorized slices of the same
arrays; `user_item_matrix` is the customer × item matrix of them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from training.core import columns as col
from training.sorting import narrow, unique_inverse

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Interactions:
    """Purchase lines as index arrays plus the id maps (row order: as read)."""

    user_ids: np.ndarray  # str, index → user_id
    item_ids: np.ndarray  # str, index → item_id
    user: np.ndarray  # int32 per line
    item: np.ndarray  # int32 per line
    day: np.ndarray  # float64 per line: days since the epoch (UTC)
    basket: np.ndarray  # int32 per line (sorting.narrow): basket index (order_id, else customer + calendar day)
    ordered: bool = False  # some lines carry an order_id: baskets are orders, not customer-days

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_lines(self) -> int:
        return len(self.user)

    def subset(self, mask: np.ndarray) -> Interactions:
        """The same id space restricted to the lines where `mask` is true."""
        return Interactions(
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            user=self.user[mask],
            item=self.item[mask],
            day=self.day[mask],
            basket=self.basket[mask],
            ordered=self.ordered,
        )

    def user_index(self) -> dict[str, int]:
        """user_id → row index."""
        return {u: i for i, u in enumerate(self.user_ids.tolist())}

    def item_index(self) -> dict[str, int]:
        """item_id → column index."""
        return {u: i for i, u in enumerate(self.item_ids.tolist())}


def _encoded(array: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """(dictionary entries that some row uses, in dictionary order; each row's position among them, 0 for
    null rows) of a text column, dictionary-encoded here unless it already is (as `load_purchases`
    can give it): its chunks' dictionaries are unified, and entries only rejected rows used dropped."""
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    encoded = array.combine_chunks()  # one dictionary for every chunk
    indices = encoded.indices
    codes = pc.fill_null(indices, 0).to_numpy()  # int32, as Arrow's indices are
    valid = codes[indices.is_valid().to_numpy(zero_copy_only=False)] if indices.null_count else codes
    used = np.bincount(valid, minlength=len(encoded.dictionary)) > 0
    entries = encoded.dictionary if used.all() else encoded.dictionary.filter(pa.array(used))
    position = np.maximum(np.cumsum(used, dtype=np.int64) - 1, 0)  # null rows: 0
    return entries, position[codes]


def _codes(array: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary-encode a text column: (sorted distinct values, int32 code per row)."""
    entries, codes = _encoded(array)
    values = np.asarray(entries.to_numpy(zero_copy_only=False)).astype(str)
    order = np.argsort(values, kind="stable")
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order))
    return values[order], rank[codes]


def build_interactions(*, purchases: pa.Table, catalog_item_ids: np.ndarray | None = None) -> Interactions:
    """Encode validated purchase lines (training.data schema); catalog items join the item id space."""
    # The three dictionary encodings are Arrow kernels that release the GIL: side by side on two cores.
    with ThreadPoolExecutor(2, thread_name_prefix="encode") as pool:
        items = pool.submit(_codes, purchases.column(col.ITEM_ID))
        orders = pool.submit(_order_codes, purchases)
        user_ids, user = _codes(purchases.column(col.USER_ID))
        day = purchases.column(col.TIMESTAMP).cast(pa.int64()).to_numpy().astype(np.float64)
        day /= 1e6  # in place, and in this order: the same days as `ts / 1e6 / SECONDS_PER_DAY`
        day /= SECONDS_PER_DAY
        item_ids, item = items.result()
        valid, order_code = orders.result()
    if catalog_item_ids is not None and len(catalog_item_ids):
        extra = np.setdiff1d(np.asarray(catalog_item_ids, dtype=str), item_ids)
        if len(extra):
            all_items = np.concatenate([item_ids, extra])
            order = np.argsort(all_items, kind="stable")
            new_pos = np.empty_like(order)
            new_pos[order] = np.arange(len(order))
            item = new_pos[item].astype(np.int32)
            item_ids = all_items[order]
    basket = _basket_index(valid=valid, order_code=order_code, user=user, day=day)
    return Interactions(user_ids, item_ids, user, item, day, basket, ordered=bool(valid.any()))


def _order_codes(purchases: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(has an order_id, order code) per line; codes in order of first appearance (deterministic;
    sorting millions of order ids costs seconds), 0 where there is none."""
    n = purchases.num_rows
    if col.ORDER_ID not in purchases.column_names:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    orders = purchases.column(col.ORDER_ID)
    valid = pc.is_valid(orders).to_numpy(zero_copy_only=False)
    if not valid.any():
        return valid, np.zeros(n, dtype=np.int64)
    return valid, _encoded(orders)[1]


def _basket_index(*, valid: np.ndarray, order_code: np.ndarray, user: np.ndarray, day: np.ndarray) -> np.ndarray:
    """One index per basket: the order_id when present, else the customer's calendar day."""
    if len(valid) and valid.all():
        # The common case, every order id one customer's: its code is the basket index as it is
        # (dense, and within a customer in the order the sort below gives), without that sort.
        owner = np.zeros(int(order_code.max()) + 1, dtype=user.dtype)
        owner[order_code] = user
        if np.array_equal(owner[order_code], user):
            return narrow(order_code)
    day_number = np.floor(day).astype(np.int64)
    day_number -= day_number.min(initial=0)
    key = np.where(valid, order_code, int(order_code.max(initial=0)) + 1 + day_number) if valid.any() else day_number
    # Keys are namespaced per customer: two customers reusing an order id are two baskets.
    combined = user.astype(np.int64) * (int(key.max(initial=0)) + 1) + key
    return narrow(unique_inverse(combined)[1])


def user_item_matrix(*, interactions: Interactions) -> sp.csr_matrix:
    """Customer × item CSR of the number of baskets containing the item (a basket listing an item on
    two lines counts once)."""
    shape = (interactions.n_users, interactions.n_items)
    pair_key = interactions.basket.astype(np.int64) * interactions.n_items + interactions.item
    pairs = np.unique(pair_key, return_index=True)[1]
    m = sp.csr_matrix(
        (np.ones(len(pairs), dtype=np.float32), (interactions.user[pairs], interactions.item[pairs])),
        shape=shape,
        dtype=np.float32,
    )
    m.sum_duplicates()
    m.sort_indices()
    return m
