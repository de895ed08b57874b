"""Step 1 of `reco train`: the purchase lines encoded, split by time, and what every fit shares.

`Prepared` holds the interactions, the split, the holdouts (sampled once, so every fit is scored on
the same customers: validation for tuning, the test that is reported, the gate that decides
promotions), the catalog aligned with the item index, and the lines of the training split, of
everything before the test and of all: each `Lines` holds its basket events (the splits' taken from
all lines') and caches the histories, popularity and timelines that tuning asks for again and
again. `load_prepared` is the step from the input files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from training.algorithms.popularity import popularity, popularity_events, popularity_timeline
from training.algorithms.repurchase import BasketEvents, basket_events, baskets_of, build_history
from training.core import columns as col
from training.core.blend import Blend
from training.core.bundle import ModelBundle
from training.core.collaborative import Collaborative
from training.core.copurchase import CategoryBaskets
from training.core.errors import RecoError
from training.core.history import History, PopularityTimeline
from training.core.rerank import Reranker
from training.data.checks import ValidationReport
from training.interactions import Interactions, build_interactions
from training.sorting import run_starts
from training.split import (
    MIN_VALIDATION_CUSTOMERS,
    TUNE_USERS,
    Holdout,
    Split,
    choose_protocol,
    chronological_split,
    set_aside_gate,
    split_by_lines,
    validation_and_test,
)


@dataclass(frozen=True)
class Catalog:
    """Per-item catalog facts aligned with the interactions' item index."""

    in_stock: np.ndarray
    item_category: np.ndarray
    categories: np.ndarray


@dataclass(frozen=True)
class Prepared:
    """Everything derived from the input files that every fit shares."""

    interactions: Interactions
    split: Split
    catalog: Catalog
    validation: Holdout
    tuning: Holdout  # the validation customers the hybrid's weights are tuned on (a subsample)
    test: Holdout
    gate: Holdout  # customers set aside before tuning: their last baskets decide the champion gate
    item_share: np.ndarray  # share of training customers who bought each item (novelty)
    train: Lines  # the training split's lines (their histories and popularity are cached on them)
    before_test: Lines  # every line before each customer's last basket: histories as of the test and the gate
    lines: Lines  # every line, for the refit (their events: one per basket and item; each split takes its baskets')
    held_out_customers: int = 0  # test customers whose last basket was moved to validation

    def summary(self) -> dict[str, int | str]:
        """The protocol and the split's sizes as used (after any held-out customers moved from test to
        validation), for logging; `tuning_customers` below MIN_VALIDATION_CUSTOMERS is said, not hidden."""
        return {
            **self.split.summary(),
            "validation_customers": len(self.validation.users),
            "tuning_customers": len(self.tuning.users),
            "tuning_below_minimum": int(len(self.tuning.users) < MIN_VALIDATION_CUSTOMERS),
            "test_customers": len(self.test.users),
            "gate_customers": len(self.gate.users),
            "held_out_customers": self.held_out_customers,
        }


def load_prepared(
    *, purchases: Path, catalog: Path | None, eval_users: int, max_rejected: float, log: Callable[[str], None]
) -> tuple[Prepared, list[ValidationReport], int]:
    """Read and check the input files (each report with rejected rows logged; too many rejected, one
    sentence), encode and prepare: (prepared, the files' reports, lines read). The Arrow table lives
    until its lines are numpy arrays; then its memory goes back before the split makes its own."""
    from training.data.load import check_usable, give_back_read_memory, load_training_inputs

    table, report, catalog_table, catalog_report = load_training_inputs(purchases, catalog)
    reports = [r for r in (report, catalog_report) if r is not None]
    for each in reports:
        if not each.ok:
            log(each.format_text(max_rows=5))
    check_usable(table, report, max_rejected=max_rejected)
    interactions, n_lines = encode(table, catalog_table), table.num_rows
    del table
    give_back_read_memory()
    prepared = prepare_interactions(interactions=interactions, catalog=catalog_table, eval_users=eval_users)
    return prepared, reports, n_lines


def prepare(*, purchases: pa.Table, catalog: pa.Table | None, eval_users: int) -> Prepared:
    """Encode, split and align the catalog; the holdouts are sampled once so every fit uses the same customers."""
    return prepare_interactions(interactions=encode(purchases, catalog), catalog=catalog, eval_users=eval_users)


def encode(purchases: pa.Table, catalog: pa.Table | None) -> Interactions:
    """The purchase lines as arrays; the catalog's items join the item id space."""
    catalog_ids = None if catalog is None else np.asarray(catalog.column(col.ITEM_ID).to_pylist(), dtype=str)
    return build_interactions(purchases=purchases, catalog_item_ids=catalog_ids)


def prepare_interactions(*, interactions: Interactions, catalog: pa.Table | None, eval_users: int) -> Prepared:
    """`prepare` of lines already encoded (the caller can let the Arrow table go first)."""
    by_lines = choose_protocol(interactions) == "lines"
    if by_lines:  # the held-out lines become baskets of their own first: every step below holds out baskets
        interactions, split = split_by_lines(interactions)
    # The events and the split are independent, and numpy's sorts release the GIL: on two cores
    # they run side by side.
    with ThreadPoolExecutor(2, thread_name_prefix="prepare") as pool:
        events_future = pool.submit(basket_events, interactions)
        if not by_lines:
            split = chronological_split(interactions)
        if len(split.test_holdout.users) == 0:
            raise RecoError(
                "No customer has two baskets: there is nothing to evaluate on (need order_id or several days)."
            )
        validation, test, held_out = validation_and_test(split)
        gate, test = set_aside_gate(test)
        validation = validation.without(gate.users)
        events = events_future.result()
        # The training split's lines and those before the test take their events from the same ones.
        train_future = pool.submit(lines_of, interactions, split.train, events=events)
        before_test = lines_of(interactions, split.train | split.validation, events=events)
        train = train_future.result()
    # Share of the training customers who bought each item (novelty): the training events' pairs.
    users = train.events.keys // interactions.n_items
    n_customers = max(len(run_starts(users)), 1)
    item_share = np.bincount(train.events.keys % interactions.n_items, minlength=interactions.n_items) / n_customers
    return Prepared(
        interactions=interactions,
        split=split,
        catalog=_align_catalog(catalog=catalog, item_ids=interactions.item_ids),
        validation=validation.sample(max_users=eval_users, seed=1),
        tuning=validation.sample(max_users=min(eval_users, TUNE_USERS), seed=1),
        test=test.sample(max_users=eval_users, seed=2),
        gate=gate,
        item_share=item_share.astype(np.float64),
        train=train,
        before_test=before_test,
        lines=lines_of(interactions, None, events=events),
        held_out_customers=held_out,
    )


def _align_catalog(*, catalog: pa.Table | None, item_ids: np.ndarray) -> Catalog:
    """In-stock flags and category codes per item index (items missing from the catalog: in stock, no category)."""
    n = len(item_ids)
    in_stock = np.ones(n, dtype=bool)
    item_category = np.full(n, -1, dtype=np.int32)
    categories = np.array([], dtype=str)
    if catalog is not None and catalog.num_rows:
        index = {item: i for i, item in enumerate(item_ids.tolist())}
        rows = np.array([index.get(i, -1) for i in catalog.column(col.ITEM_ID).to_pylist()])
        ok = rows >= 0
        if col.IN_STOCK in catalog.column_names:
            stock = np.array([v is not False for v in catalog.column(col.IN_STOCK).to_pylist()])
            in_stock[rows[ok]] = stock[ok]
        if col.CATEGORY in catalog.column_names:
            names = np.array([v or "" for v in catalog.column(col.CATEGORY).to_pylist()], dtype=str)
            categories, codes = np.unique(names, return_inverse=True)
            item_category[rows[ok]] = codes[ok]
    return Catalog(in_stock=in_stock, item_category=item_category, categories=categories)


class Lines:
    """One set of purchase lines (a split, or all of them) and what every bundle built on it shares:
    the half-life-independent events, and per popularity half-life the popularity and its timeline,
    each computed once (tuning builds a bundle for every candidate half-life and blend).

    The lines are those of `interactions` where `keep` is true (all when None). Given the events of
    exactly those lines, nothing is sorted again."""

    def __init__(
        self,
        interactions: Interactions,
        *,
        keep: np.ndarray | None = None,
        events: BasketEvents | None = None,
    ) -> None:
        self.interactions = interactions
        self.keep = keep
        latest = float(np.max(interactions.day, where=True if keep is None else keep, initial=-np.inf))
        self.reference_day = latest if math.isfinite(latest) else 0.0  # 0 without lines
        self._events = events
        self._popularity_events: tuple[np.ndarray, np.ndarray] | None = None
        self._popularity: dict[float, np.ndarray] = {}
        self._history: tuple[float, History] | None = None  # the last one: tuning asks for it again and again
        self._timelines: dict[float, PopularityTimeline] = {}
        self._category_baskets: CategoryBaskets | None = None

    def release(self) -> None:
        """Let go of everything computed on these lines (computed again if asked for)."""
        self.release_events()
        self._popularity = {}
        self._history = None
        self._timelines = {}
        self._category_baskets = None

    def release_events(self) -> None:
        """Let go of the events once the figures wanted from them are computed: they are what holds
        memory (about 250 MB per set of 10 M lines); a figure not computed yet computes them again."""
        self._events = None
        self._popularity_events = None

    def _subset(self) -> Interactions:
        return self.interactions if self.keep is None else self.interactions.subset(self.keep)

    @property
    def events(self) -> BasketEvents:
        if self._events is None:
            self._events = basket_events(self._subset())
        return self._events

    @property
    def popularity_events(self) -> tuple[np.ndarray, np.ndarray]:
        if self._popularity_events is None:
            self._popularity_events = popularity_events(self.events)
        return self._popularity_events

    def history(self, half_life: float) -> History:
        """The customers' histories as of the last line."""
        # Read once: the refit's thread and the champion gate's fit may ask for two half-lives at once.
        cached = self._history
        if cached is None or cached[0] != half_life:
            history = build_history(
                interactions=self.interactions,
                reference_day=self.reference_day,
                half_life=half_life,
                events=self.events,
            )
            cached = self._history = (half_life, history)
        return cached[1]

    def popularity(self, half_life: float) -> np.ndarray:
        if half_life not in self._popularity:
            self._popularity[half_life] = popularity(
                interactions=self.interactions,
                reference_day=self.reference_day,
                half_life=half_life,
                events=self.popularity_events,
            )
        return self._popularity[half_life]

    def category_baskets(self, catalog: Catalog) -> CategoryBaskets:
        """Baskets per pair of categories over these lines (one entry per basket and item), counted a
        million events at a time: the events come by customer, and a basket is one customer's."""
        if self._category_baskets is None:
            item, _ = self.popularity_events  # each event's item
            self._category_baskets = CategoryBaskets.count(
                basket=self.events.basket,
                category=catalog.item_category[item],
                n_categories=len(catalog.categories),
                cuts=customer_cuts(self.events, every=1_000_000),
            )
        return self._category_baskets

    def timeline(self, half_life: float) -> PopularityTimeline:
        if half_life not in self._timelines:
            self._timelines[half_life] = popularity_timeline(
                interactions=self.interactions, half_life=half_life, events=self.popularity_events
            )
        return self._timelines[half_life]

    def bundle(
        self,
        *,
        half_life: float,
        popularity_half_life: float,
        blend: Blend,
        collaborative: Collaborative | None,
        catalog: Catalog,
        timeline: bool = False,
        copurchase: bool = False,
        reranker: Reranker | None = None,
    ) -> ModelBundle:
        """A bundle of these lines; `timeline` adds popularity as of past days, for evaluation on held-out
        baskets; `copurchase` the aisles' basket counts that basket completion explains with (the
        served bundle's: evaluation does not read them)."""
        interactions = self.interactions
        return ModelBundle(
            user_ids=interactions.user_ids,
            item_ids=interactions.item_ids,
            history=self.history(half_life),
            popularity=self.popularity(popularity_half_life),
            in_stock=catalog.in_stock,
            item_category=catalog.item_category,
            categories=catalog.categories,
            blend=blend,
            collaborative=collaborative,
            category_baskets=self.category_baskets(catalog) if copurchase else None,
            popularity_timeline=self.timeline(popularity_half_life) if timeline else None,
            reranker=reranker,
        )


def lines_of(interactions: Interactions, keep: np.ndarray | None, *, events: BasketEvents) -> Lines:
    """The lines where `keep` is true (all when None), from every line's events: splits hold whole
    baskets, so their events are taken by mask, not computed again."""
    kept = events if keep is None else events.of_baskets(baskets_of(interactions, keep))
    return Lines(interactions, keep=keep, events=kept)


def customer_cuts(events: BasketEvents, *, every: int) -> list[int]:
    """Event positions about `every` apart where one customer's events end and the next one's begin
    (events come by (customer, item) pair, so by customer)."""
    cuts: list[int] = []
    for target in range(every, len(events.pair), every):
        customer = int(events.keys[events.pair[target]]) // events.n_items
        first_pair = int(np.searchsorted(events.keys, customer * events.n_items))
        cut = int(np.searchsorted(events.pair, first_pair))
        if cut > (cuts[-1] if cuts else 0):
            cuts.append(cut)
    return cuts
