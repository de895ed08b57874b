"""Purchase lines encoded: baskets are a customer's order (or day)."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.conftest import purchase_lines
from training.interactions import build_interactions


def test_basket_index_groups_lines_by_customer_and_order() -> None:
    """Lines sharing a customer and an order_id are one basket: order ids unique to a customer take the
    unsorted path, an order id two customers use takes the sorted one; both number a customer's
    baskets in the order they first appear."""
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    own = [("A", "i1", t0, "o2"), ("B", "i1", t0, "o1"), ("A", "i2", t0, "o3"), ("A", "i3", t0, "o2")]
    shared = [*own, ("B", "i2", t0, "o3")]  # o3: A's and B's, two baskets
    for rows in (own, shared):
        inter = build_interactions(purchases=purchase_lines(rows))
        users, orders = [r[0] for r in rows], [r[3] for r in rows]
        same = [[users[a] == users[b] and orders[a] == orders[b] for b in range(len(rows))] for a in range(len(rows))]
        assert (inter.basket[:, None] == inter.basket[None, :]).tolist() == same
        assert sorted(set(inter.basket.tolist())) == list(
            range(len({(u, o) for u, o in zip(users, orders, strict=True)}))
        )
        for customer in "AB":
            firsts = [inter.basket[i] for i, u in enumerate(users) if u == customer]
            assert list(dict.fromkeys(firsts)) == sorted(dict.fromkeys(firsts))
