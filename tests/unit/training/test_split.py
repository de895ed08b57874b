"""The chronological split: each customer's last basket is the test, and customers held out for tuning
when validation baskets are scarce are never tested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import purchase_lines
from tests.unit.training.conftest import checkerboard
from training.core.errors import RecoError
from training.interactions import build_interactions
from training.pipeline.fit import fit_configuration
from training.pipeline.prepare import prepare
from training.split import GATE_SHARE, chronological_split


def test_split_holds_out_each_customers_last_basket() -> None:
    inter = build_interactions(purchases=checkerboard())
    split = chronological_split(inter)
    assert (split.train & split.test).sum() == 0 and (split.validation & split.test).sum() == 0
    assert (split.train | split.validation | split.test).all()
    last_day = np.full(inter.n_users, -np.inf)
    np.maximum.at(last_day, inter.user, inter.day)
    # Every test line is its customer's latest line, and each customer has exactly one test item.
    assert np.allclose(inter.day[split.test], last_day[inter.user[split.test]])
    assert split.test_holdout.targets.sum() == inter.n_users
    assert split.validation_holdout.now.max() < split.test_holdout.now.min()


def _two_orders_at_most(customers: int = 400, items: int = 40, seed: int = 3) -> pa.Table:
    """Sparse retail: every customer has one or two orders of one to three items (two taste groups)."""
    rng = np.random.default_rng(seed)
    rows = []
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for u in range(customers):
        group = np.arange(items)[np.arange(items) % 2 == u % 2]
        weights = 1.0 / np.arange(1, len(group) + 1)
        for order in range(1 if u % 3 == 0 else 2):
            basket = rng.choice(group, size=1 + rng.integers(3), replace=False, p=weights / weights.sum())
            when = start + timedelta(days=int(rng.integers(300)) + 40 * order, hours=u % 24)
            rows += [(f"U{u}", f"I{i:02d}", when, f"O{u}-{order}") for i in basket]
    return purchase_lines(rows)


def test_without_validation_baskets_some_customers_are_held_out_for_tuning_not_tested() -> None:
    prepared = prepare(purchases=_two_orders_at_most(), catalog=None, eval_users=10_000)
    split = prepared.split
    assert len(split.validation_holdout.users) == 0  # nobody has a third basket
    held = prepared.held_out_customers
    assert held > 0 and len(prepared.tuning.users) == held
    # Tuned on, gated or tested, never two of them; together every customer with two baskets.
    assert not set(prepared.tuning.users.tolist()) & set(prepared.test.users.tolist())
    assert not set(prepared.gate.users.tolist()) & set(prepared.test.users.tolist())
    assert not set(prepared.gate.users.tolist()) & set(prepared.tuning.users.tolist())
    assert len(prepared.test.users) + held + len(prepared.gate.users) == len(split.test_holdout.users)
    assert prepared.summary()["test_customers"] == len(prepared.test.users)
    # The held-out baskets are not training lines.
    inter = prepared.interactions
    train_pairs = set(zip(inter.user[split.train].tolist(), inter.item[split.train].tolist(), strict=True))
    rows, items = prepared.tuning.targets.nonzero()
    held_lines = set(zip(prepared.tuning.users[rows].tolist(), items.tolist(), strict=True))
    last_train_day = np.full(inter.n_users, -np.inf)
    np.maximum.at(last_train_day, inter.user[split.train], inter.day[split.train])
    assert (prepared.tuning.now > last_train_day[prepared.tuning.users]).all()
    assert held_lines - train_pairs  # something new to find
    # So the hybrid is tuned on something (every score finite) and still evaluates on the rest.
    fitted = fit_configuration(model="hybrid", params={}, prepared=prepared, log=lambda _: None)
    assert all(np.isfinite(c["validation_score"]) for c in fitted.choice["candidates"].values())


def test_the_gate_holds_the_newest_last_baskets_and_nothing_of_it_is_tuned_or_tested(small_store: Path) -> None:
    """The champion gate's customers: the quarter of the test customers with the newest last baskets,
    none of them tested or tuned on (not even their validation baskets)."""
    import pyarrow.parquet as pq

    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=10_000)
    gate, test, validation = prepared.gate, prepared.test, prepared.validation
    tested = len(prepared.split.test_holdout.users)
    assert len(gate.users) == int(tested * GATE_SHARE) and len(gate.users) + len(test.users) == tested
    assert gate.now.min() >= test.now.max()  # the newest period
    assert not set(gate.users.tolist()) & set(test.users.tolist())
    assert not set(gate.users.tolist()) & set(validation.users.tolist())
    assert not set(gate.users.tolist()) & set(prepared.tuning.users.tolist())
    assert prepared.summary()["gate_customers"] == len(gate.users)


def _one_day_each(customers: int = 60, lines: int = 11, *, orders: bool = False) -> pa.Table:
    """A media log: every customer's history on one day, a minute apart (no order id unless `orders`)."""
    start = datetime(2025, 3, 1, tzinfo=UTC)
    rows = [
        (f"U{u:02d}", f"F{(u + n) % 40:02d}", start + timedelta(days=u % 7, minutes=n), *([f"O{u}"] if orders else []))
        for u in range(customers)
        for n in range(lines - u % 3)  # 11, 10 or 9 lines
    ]
    return purchase_lines(rows)


def test_without_order_ids_and_with_one_day_per_customer_every_customer_is_tested_on_their_last_lines() -> None:
    """Customer-days would test nobody here; the lines protocol holds out each customer's last fifth of
    lines (at least one) and validates on the fifth before, so every customer is tuned on and tested."""
    prepared = prepare(purchases=_one_day_each(), catalog=None, eval_users=10_000)
    split, inter = prepared.split, prepared.interactions
    assert split.protocol == "lines" and prepared.summary()["protocol"] == "lines"
    assert len(prepared.test.users) + len(prepared.gate.users) == inter.n_users == 60
    assert len(prepared.validation.users) + len(prepared.gate.users) == 60
    lines = np.bincount(inter.user, minlength=inter.n_users)
    held = np.bincount(inter.user[split.test], minlength=inter.n_users)
    assert (held == np.maximum(1, lines // 5)).all()  # 11 and 10 lines: 2 held out; 9 lines: 1
    validated = np.bincount(inter.user[split.validation], minlength=inter.n_users)
    assert (validated == np.maximum(1, (lines - held) // 5)).all()
    # The held-out lines are each customer's latest, validation's come before them, training's before that.
    for role_before, role_after in ((split.train, split.validation), (split.validation, split.test)):
        latest = np.full(inter.n_users, -np.inf)
        np.maximum.at(latest, inter.user[role_before], inter.day[role_before])
        assert (inter.day[role_after] >= latest[inter.user[role_after]]).all()
    assert prepared.summary()["tuning_below_minimum"] == 1  # 45 tuning customers, said so


def test_orders_are_never_cut_in_two() -> None:
    """The same log with one order per customer: baskets protocol, nobody has two baskets."""
    with pytest.raises(RecoError, match="No customer has two baskets"):
        prepare(purchases=_one_day_each(orders=True), catalog=None, eval_users=10_000)
