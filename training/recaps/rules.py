"""The rules of a yearly "Your year with us" recap (docs/recaps.md, "What a recap holds"): what a customer sees.

Rules that decide what a customer sees:

- Opted-out customers are removed before anything is computed, so they have no recap and do
  not count in anyone's comparisons.
- Sensitive categories (default: Pharmacy) are never highlighted: they are left out of top
  categories, items and brands, the staple, discoveries, comparisons, the persona's evidence and
  the picks. Totals (orders, items, spend, days, spend by month) still include them.
- Comparisons with other customers are aggregates only ("you shopped more than 80% of
  customers", "top 3% of Coffee buyers") and appear only when the cohort behind the number has
  at least `min_cohort` customers. No other customer's data is ever in a recap.
- A customer with fewer than `min_orders` orders in the year gets a short recap (`kind` =
  "short"): the same fields, no comparisons, persona "Occasional Shopper".

Definitions: `orders` counts distinct order ids (a line without one is an order of its own);
an order's time is its first line's time, and it counts in the month, weekday, week and day of
that time (`days_shopped` = distinct UTC dates with an order). `items` sums quantity, `spend`
sums quantity × price (lines without a price add nothing), as an exact decimal sum so that the same
input always gives byte-identical recaps (a float sum depends on DuckDB's thread order). The
calendar year is in UTC.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass

from training.core.errors import RecoError

SCHEMA_VERSION = 1
DEFAULT_SENSITIVE_CATEGORIES = ("Pharmacy",)
DEFAULT_MIN_COHORT = 100
DEFAULT_MIN_ORDERS = 3
TOP_N = 5
PICKS_K = 5
PICKS_CONTEXT = "discover"
# Candidates asked of the model per pick: the picks drop items the customer bought this year and
# sold-out items (the model may have been trained before either happened), and should still be full.
PICKS_CANDIDATES_PER_PICK = 2
MAX_SPILL = "20GiB"  # DuckDB's disk spill: fail clearly rather than fill the disk
MONTHS = tuple(calendar.month_name[m] for m in range(1, 13))
WEEKDAYS = tuple(calendar.day_name[d] for d in range(7))  # ISO weekday 1 = Monday

# Comparisons are shown only when they flatter and the cohort is big enough.
ORDERS_PERCENTILE_MIN = 50  # "you shopped more than X% of customers" when X >= this
CATEGORY_TOP_PERCENT_MAX = 10  # "top X% of <category> buyers" when X <= this


@dataclass(frozen=True)
class PersonaRule:
    """One documented persona rule: the first rule whose SQL condition holds names the persona."""

    name: str
    rule: str  # for marketing (the record and the preview's summary), with the numbers of the condition
    condition: str  # SQL over the per-customer features (the `features` step of `_final_sql`)
    reason: str  # SQL producing the customer's own evidence as text
    article: str = "a"  # "You are an Explorer": written out, not guessed from the spelling
    description: str = ""  # what the persona means, in a shopper's words (the email shows this, not the rule)

    @property
    def title(self) -> str:
        """The persona with its article: "an Explorer"."""
        return f"{self.article} {self.name}"


# In order: the first matching rule wins. Features: orders, weekend_share (orders on Saturday or
# Sunday), units_per_order, categories (distinct non-sensitive categories bought), new_categories
# (categories bought for the first time, returning customers only), top5_share (share of
# non-sensitive units that were the customer's top 5 items).
PERSONA_RULES: tuple[PersonaRule, ...] = (
    PersonaRule(
        "Weekend Planner",
        "at least 4 orders, and at least 60% of them on a Saturday or Sunday",
        "orders >= 4 AND weekend_share >= 0.6",
        "format('{}% of your orders were on a weekend', round(100 * weekend_share)::INTEGER)",
        description="You like to get your shopping done at the weekend.",
    ),
    PersonaRule(
        "Loyalist",
        "at least 6 orders, and at least half of your items were your 5 favourites",
        "orders >= 6 AND top5_share >= 0.5",
        "format('{}% of your items were your 5 favourites', round(100 * top5_share)::INTEGER)",
        description="You know what you like, and you come back for it.",
    ),
    PersonaRule(
        "Explorer",
        "items from at least 18 different categories, or at least 5 categories new to you this year",
        "categories >= 18 OR new_categories >= 5",
        "CASE WHEN new_categories > 0 THEN format('{} categories, {} of them new to you', categories, new_categories)"
        " ELSE format('{} different categories', categories) END",
        article="an",
        description="You love trying something new.",
    ),
    PersonaRule(
        "Stock-Up Shopper",
        "10 or more items per order on average",
        "units_per_order >= 10",
        "format('{} items per order on average', round(units_per_order, 1))",
        description="You shop big and keep the cupboards full.",
    ),
    PersonaRule(
        "Steady Regular",
        "none of the other rules matched: a bit of everything, regularly",
        "TRUE",
        "format('{} orders this year', orders)",
        description="A bit of everything, week in, week out.",
    ),
)
SHORT_PERSONA = PersonaRule(
    "Occasional Shopper",
    "fewer than {min_orders} orders in the year",
    "TRUE",
    "format('{} order{} this year', orders, CASE WHEN orders = 1 THEN '' ELSE 's' END)",
    article="an",
    description="Thanks for shopping with us this year.",
)
PERSONAS = {p.name: p for p in (*PERSONA_RULES, SHORT_PERSONA)}


@dataclass(frozen=True)
class RecapOptions:
    """What a recap run computes: the year and the guardrails."""

    year: int
    sensitive_categories: tuple[str, ...] = DEFAULT_SENSITIVE_CATEGORIES
    min_cohort: int = DEFAULT_MIN_COHORT
    min_orders: int = DEFAULT_MIN_ORDERS
    top_n: int = TOP_N
    picks_k: int = PICKS_K

    def __post_init__(self) -> None:
        if not 1970 <= self.year <= 9998:
            raise RecoError(f"The recap year {self.year} is out of range (1970..9998).")
        if self.min_cohort < 1 or self.min_orders < 1 or self.top_n < 1 or self.picks_k < 0:
            raise RecoError("min_cohort, min_orders and top_n must be at least 1, picks_k at least 0.")
