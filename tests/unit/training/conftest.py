"""Known-answer purchase files for the trainer's tests (built in memory, a few hundred lines each)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from tests.conftest import purchase_lines
from training.interactions import Interactions


def checkerboard(customers: int = 40, items: int = 20) -> pa.Table:
    """Even customers buy even items, odd customers odd items; each customer's last basket holds
    the one item of their half they never bought before (a different one per customer)."""
    rows = []
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for u in range(customers):
        mine = [i for i in range(items) if i % 2 == u % 2]
        withheld = mine[(u // 2) % len(mine)]
        for week in range(4):
            for i in mine:
                if i != withheld:
                    rows.append((f"U{u:03d}", f"I{i:03d}", start + timedelta(days=7 * week, hours=u), f"O{u}-{week}"))
        rows.append((f"U{u:03d}", f"I{withheld:03d}", start + timedelta(days=35, hours=u), f"O{u}-last"))
    return purchase_lines(rows, price=1.0)


def catalogue_style(customers: int = 240, items: int = 90, seed: int = 5) -> pa.Table:
    """Films, not groceries: three taste groups, nobody watches the same title twice, one title a day."""
    rng = np.random.default_rng(seed)
    rows = []
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for u in range(customers):
        group = np.arange(items)[np.arange(items) % 3 == u % 3]
        weights = np.linspace(2.0, 0.5, len(group))
        seen = rng.choice(group, size=12, replace=False, p=weights / weights.sum())
        for day, item in enumerate(seen):
            rows.append((f"U{u:03d}", f"F{item:03d}", start + timedelta(days=3 * day, hours=u % 24)))
    return purchase_lines(rows)


def hand_made(lines: list[tuple[int, int, float, int]], n_users: int, n_items: int) -> Interactions:
    """(customer, item, day, basket) lines as Interactions."""
    user, item, day, basket = (np.array(column) for column in zip(*lines, strict=True))
    return Interactions(
        user_ids=np.array([f"u{i}" for i in range(n_users)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        day=day.astype(np.float64),
        basket=basket.astype(np.int64),
        ordered=True,
    )
