"""The chronological split: which purchase lines are trained on and which baskets are held out.

Each customer's last basket is the test, the one before it the validation basket (used for tuning
only), everything earlier is training. A sample of the test customers is set aside before tuning
for the champion gate (`set_aside_gate`, those with the newest last baskets): their last baskets
decide promotions, so the reported test never does, and tuning sees none of their baskets.
Baskets are orders (`order_id`), or a customer's calendar day when the file has no order ids.
When too few customers have a validation basket, some customers' last baskets are held out for
tuning instead (`validation_and_test`); they are then not test customers. (Other customers' later
lines still shape the collaborative part: leave-last-basket-out is not a global time split.)

That is the `baskets` protocol. Without order ids, a basket is a customer-day, and on catalogue or
media logs most customers' history falls on one or two days: then few customers have two baskets
and the test would keep only those (202 of 943 on MovieLens-100k). `choose_protocol` picks the
`lines` protocol instead when the file has no order ids and fewer than half of the customers with
two lines or more have two baskets: per customer, the last fifth of the lines by time (at least
one) is the test, the fifth of the rest before it (at least one, when two lines remain) the
validation, so every customer with two lines is tested. Real orders are never cut in two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from training.interactions import Interactions
from training.sorting import narrow, run_starts, unique_inverse

TUNE_USERS = 3_000  # validation customers tuning ranks at most (a subsample, the same on every run)
# Sparse retail (most customers 1–3 orders) leaves few customers with a validation basket (their
# second-to-last); below this many, a share of the test customers' last baskets is held out for
# tuning instead (those customers are then not tested), so tuning never runs on nothing.
MIN_VALIDATION_CUSTOMERS = 300
HELD_OUT_SHARE = 0.2
# The champion gate's customers: the quarter of the test customers with the newest last baskets, at
# most this many (its scoring stays a few seconds at any data size; intervals come from a paired
# bootstrap over them).
GATE_USERS = 3_000
GATE_SHARE = 0.25
# The protocols (see the module docstring), and when `lines` replaces `baskets`.
PROTOCOLS = ("baskets", "lines")
LINES_HELD_OUT = 0.2  # the share of a customer's lines held out (test), then of the rest (validation)
BASKETS_MIN_SHARE = 0.5  # baskets protocol while this share of the line-testable customers is basket-testable


@dataclass(frozen=True)
class Holdout:
    """Customers evaluated on one held-out basket each."""

    users: np.ndarray  # int64 customer index
    now: np.ndarray  # float64 day of the held-out basket
    targets: sp.csr_matrix  # bool, len(users) × items: items in the held-out basket
    prior_baskets: np.ndarray  # int64: baskets the customer had before it

    def sample(self, *, max_users: int, seed: int = 0) -> Holdout:
        """A reproducible subset of at most `max_users` customers (the same on every run)."""
        if len(self.users) <= max_users:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self.users), size=max_users, replace=False))
        return self.take(keep)

    def take(self, rows: np.ndarray) -> Holdout:
        """The holdout restricted to the given row positions."""
        return Holdout(self.users[rows], self.now[rows], self.targets[rows], self.prior_baskets[rows])

    def without(self, users: np.ndarray) -> Holdout:
        """The holdout less the given customers."""
        return self.take(np.flatnonzero(~np.isin(self.users, users)))

    def concat(self, other: Holdout) -> Holdout:
        """Both holdouts' customers, this one's first."""
        return Holdout(
            np.concatenate([self.users, other.users]),
            np.concatenate([self.now, other.now]),
            sp.vstack([self.targets, other.targets]).tocsr(),
            np.concatenate([self.prior_baskets, other.prior_baskets]),
        )


@dataclass(frozen=True)
class Split:
    """Line masks of a chronological split and the validation / test holdouts."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    validation_holdout: Holdout
    test_holdout: Holdout
    protocol: str = "baskets"  # PROTOCOLS: what a held-out basket is

    def summary(self) -> dict[str, int | str]:
        """Sizes and the protocol, for logging."""
        return {
            "protocol": self.protocol,
            "train_lines": int(self.train.sum()),
            "validation_lines": int(self.validation.sum()),
            "test_lines": int(self.test.sum()),
            "validation_customers": len(self.validation_holdout.users),
            "test_customers": len(self.test_holdout.users),
        }


def chronological_split(interactions: Interactions) -> Split:
    """Per customer: last basket → test, the one before → validation, the rest → training."""
    basket = interactions.basket
    n_baskets = int(basket.max()) + 1 if len(basket) else 0
    basket_day = np.full(n_baskets, np.inf)
    np.minimum.at(basket_day, basket, interactions.day)
    basket_user = np.zeros(n_baskets, dtype=np.int64)
    basket_user[basket] = interactions.user
    # Rank each customer's baskets from the most recent (0) backwards.
    order = np.lexsort((-basket_day, basket_user))
    sorted_users = basket_user[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    recency = np.empty(n_baskets, dtype=np.int64)
    recency[order] = np.arange(len(order)) - group_start
    per_user = np.bincount(basket_user, minlength=interactions.n_users)
    n_of_user = per_user[basket_user]
    # A customer needs one earlier basket to be tested, two to be validated as well.
    basket_role = np.zeros(n_baskets, dtype=np.int8)  # 0 train, 1 validation, 2 test
    basket_role[(recency == 0) & (n_of_user >= 2)] = 2
    basket_role[(recency == 1) & (n_of_user >= 3)] = 1
    return _split_of(interactions, basket_role, basket_day, basket_user, n_of_user, protocol="baskets")


def _split_of(
    interactions: Interactions,
    basket_role: np.ndarray,
    basket_day: np.ndarray,
    basket_user: np.ndarray,
    n_of_user: np.ndarray,
    *,
    protocol: str,
) -> Split:
    """The split of each basket's role (0 train, 1 validation, 2 test)."""
    role = basket_role[interactions.basket]
    return Split(
        train=role == 0,
        validation=role == 1,
        test=role == 2,
        validation_holdout=_holdout(interactions, basket_role == 1, basket_day, basket_user, n_of_user - 2),
        test_holdout=_holdout(interactions, basket_role == 2, basket_day, basket_user, n_of_user - 1),
        protocol=protocol,
    )


def choose_protocol(interactions: Interactions) -> str:
    """`lines` when the file has no order ids and fewer than BASKETS_MIN_SHARE of the customers with two
    lines have two baskets (customer-days), else `baskets`."""
    if interactions.ordered or not interactions.n_lines:
        return "baskets"
    basket_user = np.zeros(int(interactions.basket.max()) + 1, dtype=np.int64)
    basket_user[interactions.basket] = interactions.user
    by_baskets = int((np.bincount(basket_user, minlength=interactions.n_users) >= 2).sum())
    by_lines = int((np.bincount(interactions.user, minlength=interactions.n_users) >= 2).sum())
    return "baskets" if by_baskets >= BASKETS_MIN_SHARE * by_lines else "lines"


def split_by_lines(interactions: Interactions) -> tuple[Interactions, Split]:
    """The `lines` protocol's split, and the lines it splits: each customer's held-out lines are one
    basket (the test's, the validation's) and a customer-day the boundary cuts becomes two baskets,
    so every later step still holds out whole baskets."""
    n = interactions.n_lines
    user = interactions.user
    order = np.lexsort((np.arange(n), interactions.day, user))  # per customer, oldest line first
    starts = run_starts(user[order])
    counts = np.diff(np.r_[starts, n])
    n_test = np.where(counts >= 2, np.maximum(1, np.floor(counts * LINES_HELD_OUT)), 0).astype(np.int64)
    rest = counts - n_test
    n_validation = np.where(rest >= 2, np.maximum(1, np.floor(rest * LINES_HELD_OUT)), 0).astype(np.int64)
    from_end = np.repeat(starts + counts - 1, counts) - np.arange(n)  # 0: the customer's newest line
    held = np.repeat(n_test, counts)
    sorted_role = np.where(from_end < held, 2, np.where(from_end < held + np.repeat(n_validation, counts), 1, 0))
    role = np.empty(n, dtype=np.int64)
    role[order] = sorted_role
    n_old = int(interactions.basket.max()) + 1
    key = np.where(role == 0, interactions.basket, n_old + user.astype(np.int64) * 2 + (role - 1))
    basket = narrow(unique_inverse(key)[1])
    cut = Interactions(
        user_ids=interactions.user_ids,
        item_ids=interactions.item_ids,
        user=user,
        item=interactions.item,
        day=interactions.day,
        basket=basket,
        ordered=interactions.ordered,
    )
    n_baskets = int(basket.max()) + 1
    basket_day = np.full(n_baskets, np.inf)
    np.minimum.at(basket_day, basket, interactions.day)
    basket_user = np.zeros(n_baskets, dtype=np.int64)
    basket_user[basket] = user
    basket_role = np.zeros(n_baskets, dtype=np.int8)
    basket_role[basket] = role
    n_of_user = np.bincount(basket_user, minlength=interactions.n_users)[basket_user]
    return cut, _split_of(cut, basket_role, basket_day, basket_user, n_of_user, protocol="lines")


def _holdout(
    interactions: Interactions, chosen: np.ndarray, basket_day: np.ndarray, basket_user: np.ndarray, prior: np.ndarray
) -> Holdout:
    baskets = np.flatnonzero(chosen)
    users = basket_user[baskets]
    order = np.argsort(users)
    users, baskets = users[order], baskets[order]
    row_of_user = np.full(interactions.n_users, -1, dtype=np.int64)
    row_of_user[users] = np.arange(len(users))
    in_holdout = chosen[interactions.basket]
    rows = row_of_user[interactions.user[in_holdout]]
    targets = sp.csr_matrix(
        (np.ones(len(rows), dtype=bool), (rows, interactions.item[in_holdout])),
        shape=(len(users), interactions.n_items),
    )
    targets.sum_duplicates()
    targets.data[:] = True
    return Holdout(users.astype(np.int64), basket_day[baskets], targets, prior[baskets].astype(np.int64))


def validation_and_test(split: Split) -> tuple[Holdout, Holdout, int]:
    """(validation, test, customers moved): with too few validation baskets, a random share of the test
    customers without one (customers with exactly two baskets) is tuned on instead of tested.

    Honest either way: their last basket is outside the training lines (as every test basket is),
    and a customer is used for tuning or for the test, never both."""
    validation, test = split.validation_holdout, split.test_holdout
    if len(validation.users) >= MIN_VALIDATION_CUSTOMERS:
        return validation, test, 0
    eligible = np.flatnonzero(~np.isin(test.users, validation.users))
    n = min(len(eligible), int(len(test.users) * HELD_OUT_SHARE), TUNE_USERS)
    if n == 0:
        return validation, test, 0
    moved = np.sort(np.random.default_rng(3).choice(eligible, size=n, replace=False))
    kept = np.setdiff1d(np.arange(len(test.users)), moved)
    return validation.concat(test.take(moved)), test.take(kept), n


def set_aside_gate(test: Holdout, *, seed: int = 4) -> tuple[Holdout, Holdout]:
    """(gate, test): the newest period. The test customers whose last baskets are the newest
    (GATE_SHARE of them, at most GATE_USERS; a seeded draw among baskets of the same moment) are the
    champion gate's; the others stay the reported test.

    The newest baskets are the ones a champion trained on older data has not seen, so they can be
    scored for it without leaking its training data (training.pipeline.gating). Done before tuning:
    the caller also drops the gate customers from validation, so no basket of theirs tunes
    anything, and a customer is in the gate or in the test, never both."""
    n = min(GATE_USERS, int(len(test.users) * GATE_SHARE))
    order = np.lexsort((np.random.default_rng(seed).random(len(test.users)), -test.now))
    picked = np.sort(order[:n])
    return test.take(picked), test.take(np.sort(order[n:]))
