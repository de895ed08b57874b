"""A realistic synthetic grocery store, generated with vectorized numpy in chunks of customers.

What makes it look like a real shop (and gives models and recaps something to find):

- a catalog of departments → categories → items, with brands, price levels, a popularity long
  tail and about 4% of items out of stock;
- customers with tastes: each mixes two of `SEGMENTS` latent taste profiles, so customers who
  share a profile buy the same things (signal for collaborative filtering);
- staples each customer re-buys on a personal rhythm (every m-th order, the order gap being
  personal too), occasional discovery purchases from their taste, recipe baskets (the
  ingredients of one recipe bought together) and seasonal gifts before Christmas;
- baskets (`order_id`) of several lines; a weekly pattern (weekends busier) and a December peak
  (orders are laid on a personal grid in "shopping time", then mapped to calendar time through
  the store's daily intensity, so busy days get more orders without breaking rhythms);
- customers arriving over the whole period and churning after an exponential lifetime.

Deterministic for a seed: chunk k draws from `SeedSequence(seed).spawn(...)[k]` with a fixed
chunk size, so the files do not depend on the machine. History ends on 2025-12-31, so the
last full calendar year always exists for recaps.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from training.core import columns as col
from training.data.contract import CATALOG_SCHEMA, PURCHASE_SCHEMA

END = datetime(2026, 1, 1, tzinfo=UTC)
SEGMENTS = 48
LATENT_DIM = 16
CHUNK_USERS = 50_000
SEASONAL_CATEGORY = "Gifts & Seasonal"


class Category(NamedTuple):
    department: str
    name: str
    products: tuple[str, ...]
    median_price: float
    staple: float  # how likely items of this category become someone's staple (0..1)
    share: float  # share of the catalog


CATEGORIES: tuple[Category, ...] = (
    Category("Dairy & Eggs", "Milk", ("Whole Milk", "Semi-Skimmed Milk", "Oat Milk", "Almond Milk"), 1.3, 0.95, 1.0),
    Category("Dairy & Eggs", "Eggs", ("Free Range Eggs", "Organic Eggs", "Large Eggs"), 2.9, 0.85, 0.5),
    Category("Dairy & Eggs", "Butter", ("Salted Butter", "Unsalted Butter", "Spreadable Butter"), 2.4, 0.6, 0.6),
    Category("Dairy & Eggs", "Cheese", ("Cheddar", "Mozzarella", "Parmesan", "Brie", "Feta"), 3.6, 0.6, 2.0),
    Category("Dairy & Eggs", "Yogurt", ("Greek Yogurt", "Natural Yogurt", "Fruit Yogurt", "Skyr"), 1.6, 0.75, 1.5),
    Category("Bakery", "Bread", ("Sourdough", "Wholemeal Loaf", "Baguette", "Rye Bread", "Bagels"), 2.2, 0.9, 1.5),
    Category("Bakery", "Pastries", ("Croissants", "Cinnamon Buns", "Muffins", "Pain au Chocolat"), 2.6, 0.3, 1.0),
    Category("Produce", "Fruit", ("Bananas", "Apples", "Blueberries", "Oranges", "Grapes", "Avocados"), 2.4, 0.85, 2.0),
    Category(
        "Produce", "Vegetables", ("Carrots", "Spinach", "Tomatoes", "Onions", "Peppers", "Broccoli"), 1.7, 0.85, 2.5
    ),
    Category("Produce", "Herbs", ("Basil", "Coriander", "Parsley", "Mint"), 1.1, 0.3, 0.6),
    Category("Meat & Fish", "Meat", ("Chicken Breast", "Beef Mince", "Pork Sausages", "Bacon"), 5.8, 0.55, 2.0),
    Category("Meat & Fish", "Fish", ("Salmon Fillets", "Cod Fillets", "Prawns", "Tuna Steaks"), 6.9, 0.35, 1.2),
    Category("Pantry", "Pasta", ("Spaghetti", "Penne", "Fusilli", "Tagliatelle"), 1.4, 0.5, 1.5),
    Category("Pantry", "Rice", ("Basmati Rice", "Jasmine Rice", "Risotto Rice", "Brown Rice"), 2.3, 0.4, 1.0),
    Category("Pantry", "Flour", ("Plain Flour", "Self-Raising Flour", "Bread Flour"), 1.3, 0.2, 0.6),
    Category("Pantry", "Sugar & Syrup", ("Caster Sugar", "Maple Syrup", "Honey", "Brown Sugar"), 2.2, 0.25, 0.8),
    Category("Pantry", "Canned Tomatoes", ("Chopped Tomatoes", "Passata", "Tomato Puree"), 1.0, 0.45, 0.7),
    Category("Pantry", "Oils & Vinegar", ("Olive Oil", "Sunflower Oil", "Balsamic Vinegar"), 4.8, 0.3, 0.8),
    Category("Pantry", "Spices", ("Curry Powder", "Paprika", "Cumin", "Black Pepper", "Cinnamon"), 2.1, 0.1, 1.2),
    Category("Pantry", "Breakfast Cereal", ("Granola", "Porridge Oats", "Corn Flakes", "Muesli"), 3.2, 0.7, 1.2),
    Category("Pantry", "Sauces", ("Pesto", "Ketchup", "Mayonnaise", "Soy Sauce", "BBQ Sauce"), 2.4, 0.3, 1.5),
    Category("Beverages", "Coffee", ("Ground Coffee", "Coffee Beans", "Instant Coffee", "Coffee Pods"), 5.9, 0.9, 1.5),
    Category("Beverages", "Tea", ("English Breakfast Tea", "Green Tea", "Earl Grey", "Herbal Tea"), 2.8, 0.7, 1.0),
    Category("Beverages", "Juice", ("Orange Juice", "Apple Juice", "Smoothie"), 2.3, 0.55, 0.8),
    Category("Beverages", "Soft Drinks", ("Cola", "Lemonade", "Sparkling Water", "Ginger Beer"), 1.7, 0.5, 1.0),
    Category("Beverages", "Water", ("Still Water 6x1.5L", "Sparkling Water 6x1.5L"), 2.9, 0.75, 0.4),
    Category("Wine & Beer", "Wine", ("Red Wine", "White Wine", "Rosé", "Prosecco"), 8.5, 0.3, 1.5),
    Category("Wine & Beer", "Beer", ("Lager", "IPA", "Stout", "Alcohol-Free Beer"), 1.9, 0.45, 1.0),
    Category("Snacks", "Chocolate", ("Milk Chocolate", "Dark Chocolate", "Chocolate Bar"), 2.1, 0.4, 1.2),
    Category("Snacks", "Crisps", ("Sea Salt Crisps", "Tortilla Chips", "Popcorn"), 1.8, 0.4, 1.0),
    Category("Snacks", "Biscuits", ("Digestives", "Shortbread", "Oat Biscuits", "Cookies"), 1.7, 0.45, 1.0),
    Category(
        "Frozen", "Frozen Meals", ("Frozen Pizza", "Frozen Lasagne", "Fish Fingers", "Frozen Peas"), 3.3, 0.4, 1.2
    ),
    Category("Frozen", "Ice Cream", ("Vanilla Ice Cream", "Chocolate Ice Cream", "Sorbet"), 3.9, 0.2, 0.6),
    Category("Household", "Cleaning", ("Washing-Up Liquid", "Surface Cleaner", "Bin Bags"), 3.1, 0.35, 1.0),
    Category("Household", "Paper Goods", ("Toilet Roll 9-pack", "Kitchen Roll", "Tissues"), 4.2, 0.55, 0.5),
    Category("Household", "Laundry", ("Laundry Liquid", "Fabric Conditioner", "Laundry Pods"), 6.8, 0.35, 0.6),
    Category("Personal Care", "Shampoo", ("Shampoo", "Conditioner", "Shower Gel"), 3.9, 0.25, 0.8),
    Category("Personal Care", "Oral Care", ("Toothpaste", "Toothbrush", "Mouthwash"), 2.9, 0.3, 0.6),
    Category("Health", "Pharmacy", ("Pain Relief", "Allergy Relief", "Vitamins", "Cold & Flu"), 5.5, 0.1, 0.6),
    Category("Baby", "Baby Care", ("Nappies", "Baby Wipes", "Baby Food"), 8.9, 0.6, 0.5),
    Category("Pet", "Pet Food", ("Dog Food", "Cat Food", "Cat Litter"), 5.4, 0.7, 0.6),
    Category("Seasonal", SEASONAL_CATEGORY, ("Advent Calendar", "Gift Box", "Mince Pies", "Panettone"), 11.0, 0.0, 0.5),
)

BRANDS = (
    "Greenvale",
    "Nordhof",
    "Sunny Acres",
    "Old Mill",
    "Blue Harbour",
    "Hillcrest",
    "Maison Claire",
    "Red Barn",
    "Willow & Co",
    "Highland",
    "Casa Bella",
    "Urban Pantry",
    "Little Oak",
    "Golden Fields",
)
STORE_BRAND = "Basics"
VARIANTS = ("", "Organic ", "Classic ", "Light ", "Family ", "Premium ", "Everyday ", "Fairtrade ")
SIZES = ("Small", "Medium", "Large", "Value Pack")

# Each ingredient: what the recipe calls it (products whose name holds it are preferred) and its aisle.
RECIPES = (
    (
        "pancakes",
        "Pancakes",
        (
            ("Plain Flour", "Flour"),
            ("Eggs", "Eggs"),
            ("Milk", "Milk"),
            ("Butter", "Butter"),
            ("Maple Syrup", "Sugar & Syrup"),
        ),
    ),
    (
        "spaghetti-bolognese",
        "Spaghetti Bolognese",
        (
            ("Spaghetti", "Pasta"),
            ("Beef Mince", "Meat"),
            ("Chopped Tomatoes", "Canned Tomatoes"),
            ("Onions", "Vegetables"),
            ("Parmesan", "Cheese"),
            ("Basil", "Herbs"),
        ),
    ),
    (
        "full-breakfast",
        "Weekend Breakfast",
        (("Bread", "Bread"), ("Butter", "Butter"), ("Eggs", "Eggs"), ("Coffee", "Coffee"), ("Orange Juice", "Juice")),
    ),
    (
        "fish-supper",
        "Fish Supper",
        (
            ("Cod Fillets", "Fish"),
            ("Peppers", "Vegetables"),
            ("Olive Oil", "Oils & Vinegar"),
            ("Parsley", "Herbs"),
            ("White Wine", "Wine"),
        ),
    ),
    (
        "risotto",
        "Mushroom Risotto",
        (
            ("Risotto Rice", "Rice"),
            ("Parmesan", "Cheese"),
            ("Butter", "Butter"),
            ("Onions", "Vegetables"),
            ("White Wine", "Wine"),
        ),
    ),
    (
        "movie-night",
        "Movie Night",
        (("Popcorn", "Crisps"), ("Chocolate", "Chocolate"), ("Cola", "Soft Drinks"), ("Ice Cream", "Ice Cream")),
    ),
    (
        "curry-night",
        "Curry Night",
        (
            ("Basmati Rice", "Rice"),
            ("Chicken Breast", "Meat"),
            ("Curry Powder", "Spices"),
            ("Onions", "Vegetables"),
            ("Natural Yogurt", "Yogurt"),
        ),
    ),
    (
        "baking-day",
        "Baking Day",
        (
            ("Self-Raising Flour", "Flour"),
            ("Caster Sugar", "Sugar & Syrup"),
            ("Eggs", "Eggs"),
            ("Butter", "Butter"),
            ("Dark Chocolate", "Chocolate"),
        ),
    ),
    (
        "picnic",
        "Picnic",
        (
            ("Baguette", "Bread"),
            ("Cheddar", "Cheese"),
            ("Apples", "Fruit"),
            ("Apple Juice", "Juice"),
            ("Crisps", "Crisps"),
        ),
    ),
    (
        "afternoon-tea",
        "Afternoon Tea",
        (("Tea", "Tea"), ("Shortbread", "Biscuits"), ("Milk", "Milk"), ("Croissants", "Pastries")),
    ),
    (
        "barbecue",
        "Barbecue",
        (
            ("Pork Sausages", "Meat"),
            ("Lager", "Beer"),
            ("BBQ Sauce", "Sauces"),
            ("Bread", "Bread"),
            ("Peppers", "Vegetables"),
        ),
    ),
    (
        "pesto-pasta",
        "Pesto Pasta",
        (
            ("Fusilli", "Pasta"),
            ("Pesto", "Sauces"),
            ("Parmesan", "Cheese"),
            ("Basil", "Herbs"),
            ("Olive Oil", "Oils & Vinegar"),
        ),
    ),
)

# Orders per calendar month (Jan..Dec) and weekday (Mon..Sun), relative.
MONTH_INTENSITY = np.array([0.85, 0.85, 0.95, 0.95, 1.0, 1.0, 0.95, 0.95, 1.0, 1.0, 1.1, 1.55])
WEEKDAY_INTENSITY = np.array([0.85, 0.8, 0.85, 0.9, 1.1, 1.35, 1.15])
HOUR_WEIGHTS = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 6, 5, 5, 6, 8, 9, 8, 6, 4, 2, 1], dtype=float)


@dataclass(frozen=True)
class StoreSummary:
    """What `generate_store` wrote, and how long it took."""

    out: Path
    customers: int
    items: int
    purchases: int
    orders: int
    first_day: str
    last_day: str
    seconds: float

    def format_text(self) -> str:
        return (
            f"wrote {self.out}/purchases.parquet ({self.purchases:,} lines, {self.orders:,} orders, "
            f"{self.customers:,} customers, {self.first_day} .. {self.last_day}), "
            f"catalog.parquet ({self.items:,} items), recipes.json ({len(RECIPES)} recipes) "
            f"in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class _Catalog:
    table: pa.Table
    category: np.ndarray  # category index per item (items are grouped by category)
    price: np.ndarray
    explore_cdf: np.ndarray  # flattened, see _flat_cdf
    staple_cdf: np.ndarray
    category_cdf: np.ndarray  # within-category CDFs per segment, for recipes and seasonal gifts
    category_bounds: np.ndarray


def generate_store(
    out: str | Path, *, users: int, items: int, years: int, seed: int, progress: bool = False
) -> StoreSummary:
    """Write purchases.parquet, catalog.parquet and recipes.json for a synthetic store to `out`."""
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_chunks = -(-users // CHUNK_USERS)
    seeds = np.random.SeedSequence(seed).spawn(n_chunks + 1)
    catalog, segments = _make_catalog(np.random.default_rng(seeds[0]), items)
    pq.write_table(catalog.table, out / "catalog.parquet")
    (out / "recipes.json").write_text(json.dumps(_recipes(), indent=2) + "\n")

    start = END.replace(year=END.year - years)
    days = (END - start).days
    op_time = _shopping_time(start, days)
    width = len(str(users))
    user_names = [f"C{u:0{width}d}" for u in range(1, users + 1)]
    item_names = catalog.table.column(col.ITEM_ID)

    lines = orders = 0
    with pq.ParquetWriter(out / "purchases.parquet", PURCHASE_SCHEMA, compression="zstd") as writer:
        for k in tqdm(range(n_chunks), desc="customers", unit="chunk", disable=not progress):
            first = k * CHUNK_USERS
            n = min(CHUNK_USERS, users - first)
            chunk = _purchases_for_chunk(
                np.random.default_rng(seeds[k + 1]),
                n,
                catalog,
                segments,
                np.datetime64(start.date(), "D"),
                op_time,
                orders,
            )
            table = _chunk_table(chunk, start, user_names[first : first + n], item_names)
            writer.write_table(table, row_group_size=1 << 20)
            lines += table.num_rows
            orders += chunk.n_orders
    return StoreSummary(
        out=out,
        customers=users,
        items=items,
        purchases=lines,
        orders=orders,
        first_day=start.date().isoformat(),
        last_day=(END.date().fromordinal(END.date().toordinal() - 1)).isoformat(),
        seconds=time.perf_counter() - started,
    )


# --- catalog ---------------------------------------------------------------------------------


def _make_catalog(rng: np.random.Generator, n_items: int) -> tuple[_Catalog, np.ndarray]:
    n_cat = len(CATEGORIES)
    shares = np.array([c.share for c in CATEGORIES])
    per_cat = np.maximum(1, np.floor(n_items * shares / shares.sum()).astype(int))
    per_cat[np.argmax(per_cat)] += n_items - per_cat.sum()
    category = np.repeat(np.arange(n_cat), per_cat)
    bounds = np.concatenate([[0], np.cumsum(per_cat)])

    brands = np.array([*BRANDS, STORE_BRAND])
    brand = rng.integers(0, len(brands), n_items)
    brand[rng.random(n_items) < 0.15] = len(brands) - 1
    brand_tier = np.linspace(-0.4, 0.5, len(BRANDS))[rng.permutation(len(BRANDS))]
    tier = np.where(brand == len(brands) - 1, -0.6, brand_tier[np.minimum(brand, len(BRANDS) - 1)])
    median = np.array([c.median_price for c in CATEGORIES])[category]
    price = np.round(median * np.exp(tier + rng.normal(0, 0.25, n_items)), 2).clip(0.25)

    product = [CATEGORIES[c].products for c in category]
    noun = rng.random(n_items)
    variant = rng.integers(0, len(VARIANTS), n_items)
    size = rng.integers(0, len(SIZES), n_items)
    names = [
        f"{brands[b]} {VARIANTS[v]}{p[int(x * len(p))]} ({SIZES[s]})"
        for b, v, p, x, s in zip(brand, variant, product, noun, size, strict=True)
    ]

    # Latent taste space: categories are centres, items scatter around them, one axis is price level.
    centres = rng.normal(0, 1, (n_cat, LATENT_DIM))
    vectors = centres[category] + rng.normal(0, 0.8, (n_items, LATENT_DIM))
    vectors[:, 0] = tier * 2.5
    segments = rng.normal(0, 1, (SEGMENTS, LATENT_DIM))
    popularity = rng.lognormal(0, 1.1, n_items)
    affinity = segments @ vectors.T / np.sqrt(LATENT_DIM)
    weights = popularity * np.exp(1.6 * affinity)  # (SEGMENTS, n_items)
    staple_weight = np.array([c.staple for c in CATEGORIES])[category] ** 2
    seasonal = np.array([c.name == SEASONAL_CATEGORY for c in CATEGORIES])[category]
    explore = np.where(seasonal, 0.0, weights)

    in_stock = rng.random(n_items) > np.where(popularity < np.quantile(popularity, 0.3), 0.09, 0.02)
    width = len(str(n_items))
    table = pa.table(
        {
            col.ITEM_ID: [f"P{i:0{width}d}" for i in range(1, n_items + 1)],
            col.NAME: names,
            col.CATEGORY: [CATEGORIES[c].name for c in category],
            col.BRAND: brands[brand].tolist(),
            col.PRICE: price,
            col.IN_STOCK: in_stock,
        },
        schema=CATALOG_SCHEMA,
    ).append_column("department", pa.array([CATEGORIES[c].department for c in category]))
    catalog = _Catalog(
        table=table,
        category=category,
        price=price,
        explore_cdf=_flat_cdf(explore),
        staple_cdf=_flat_cdf(weights * staple_weight),
        category_cdf=_flat_cdf(weights, groups=bounds),
        category_bounds=bounds,
    )
    return catalog, segments


def _flat_cdf(weights: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Row r's CDF over items (or over each group of items), offset by r so one sorted array holds
    all: sampling is `searchsorted(cdf, offset + u)` for every draw at once."""
    n_rows, n_items = weights.shape
    bounds = np.array([0, n_items]) if groups is None else groups
    cdf = np.empty_like(weights)
    for g, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        block = np.cumsum(weights[:, lo:hi], axis=1)
        cdf[:, lo:hi] = g + block / np.maximum(block[:, -1:], 1e-300)
        cdf[:, hi - 1] = g + 1 - 1e-12
    offsets = np.arange(n_rows)[:, None] * (len(bounds) - 1)
    return (cdf + offsets).ravel()


def _sample(
    cdf: np.ndarray, n_items: int, n_groups: int, row: np.ndarray, group: np.ndarray | int, rng: np.random.Generator
) -> np.ndarray:
    """One item per draw from row `row`'s distribution (within `group` when the CDF is grouped)."""
    target = row * n_groups + group + rng.random(len(row)) * (1 - 1e-9)
    return np.searchsorted(cdf, target, side="right") - row * n_items


def _recipes() -> dict[str, object]:
    return {
        "schema_version": 1,
        "recipes": [
            {"recipe_id": rid, "name": name, "ingredients": [{"name": n, "category": c} for n, c in ingredients]}
            for rid, name, ingredients in RECIPES
        ],
    }


# --- time --------------------------------------------------------------------------------------


def _shopping_time(start: datetime, days: int) -> np.ndarray:
    """Cumulative store intensity at each day boundary, scaled to one unit per average day."""
    ordinals = start.toordinal() + np.arange(days)
    dates = [datetime.fromordinal(int(o)) for o in ordinals]
    month = np.array([d.month - 1 for d in dates])
    weekday = ordinals % 7  # ordinal 1 (0001-01-01) was a Monday
    weekday = (weekday - 1) % 7
    peak = np.array([1.25 if d.month == 12 and 8 <= d.day <= 23 else 1.0 for d in dates])
    peak[np.array([d.month == 12 and d.day in (25, 26) for d in dates])] = 0.1
    intensity = MONTH_INTENSITY[month] * WEEKDAY_INTENSITY[weekday] * peak
    intensity /= intensity.mean()
    return np.concatenate([[0.0], np.cumsum(intensity)])


# --- purchases ---------------------------------------------------------------------------------


class _Chunk(NamedTuple):
    user: np.ndarray
    item: np.ndarray
    quantity: np.ndarray
    price: np.ndarray
    seconds: np.ndarray  # since start
    order: np.ndarray  # global order number
    n_orders: int


def _within(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups of the given sizes laid end to end: (group of each element, index within it)."""
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return group, np.arange(counts.sum()) - starts[group]


def _purchases_for_chunk(
    rng: np.random.Generator,
    n_users: int,
    catalog: _Catalog,
    segments: np.ndarray,
    start_date: np.datetime64,
    op_time: np.ndarray,
    order_offset: int,
) -> _Chunk:
    n_items = len(catalog.price)
    n_seg = len(segments)
    n_groups = len(catalog.category_bounds) - 1
    horizon = op_time[-1]
    days = len(op_time) - 1

    # Customers: two taste profiles, arrival, lifetime, personal order gap, appetite for discovery.
    primary = rng.integers(0, n_seg, n_users)
    secondary = rng.integers(0, n_seg, n_users)
    mix = rng.beta(2, 5, n_users)
    arrival_day = np.where(rng.random(n_users) < 0.35, 0.0, rng.random(n_users) * days)
    churn_day = arrival_day + rng.exponential(540, n_users)
    start_op = np.interp(arrival_day, np.arange(days + 1), op_time)
    end_op = np.minimum(np.interp(np.minimum(churn_day, days), np.arange(days + 1), op_time), horizon)
    gap = np.exp(rng.normal(np.log(26), 0.5, n_users)).clip(4, 120)
    phase = rng.random(n_users) * gap
    n_orders = np.maximum(0, np.floor((end_op - start_op - phase) / gap) + 1).astype(np.int64)
    n_orders[end_op - start_op - phase < 0] = 0
    discovery = rng.gamma(2.0, 0.9, n_users)

    # Orders on each customer's grid in shopping time, mapped to calendar time.
    order_user, order_k = _within(n_orders)
    n_ord = len(order_user)
    op = start_op[order_user] + phase[order_user] + order_k * gap[order_user]
    op = (op + rng.normal(0, 0.15, n_ord) * gap[order_user]).clip(start_op[order_user], horizon - 1e-6)
    day = np.floor(np.interp(op, op_time, np.arange(days + 1))).clip(0, days - 1)
    hour = rng.choice(24, n_ord, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    seconds = (day * 86400 + hour * 3600 + rng.integers(0, 3600, n_ord)).astype(np.int64)
    order_segment = np.where(rng.random(n_ord) < mix[order_user], secondary[order_user], primary[order_user])

    # Staples: K items each customer re-buys every m-th order.
    n_staples = np.minimum(1 + rng.poisson(3.0, n_users), 10)
    staple_user, _ = _within(n_staples)
    staple_seg = np.where(
        rng.random(len(staple_user)) < mix[staple_user] / 2, secondary[staple_user], primary[staple_user]
    )
    staple_item = _sample(catalog.staple_cdf, n_items, 1, staple_seg, 0, rng)
    period = rng.choice([1, 2, 3, 4], len(staple_user), p=[0.35, 0.3, 0.2, 0.15])
    staple_phase = rng.integers(0, 4, len(staple_user)) % period
    staple_first = np.cumsum(n_staples) - n_staples
    cand_order, cand_j = _within(n_staples[order_user])
    cand_staple = staple_first[order_user[cand_order]] + cand_j
    due = (order_k[cand_order] + staple_phase[cand_staple]) % period[cand_staple] == 0
    keep = (due & (rng.random(len(due)) < 0.85)) | (rng.random(len(due)) < 0.03)
    s_order, s_item = cand_order[keep], staple_item[cand_staple[keep]]
    s_qty = 1 + rng.poisson(0.35, len(s_order)) + (period[cand_staple[keep]] >= 3)

    # Discovery lines from the order's taste profile (at least one line per order).
    n_explore = rng.poisson(discovery[order_user])
    n_explore[(np.bincount(s_order, minlength=n_ord) == 0) & (n_explore == 0)] = 1
    e_order, _ = _within(n_explore)
    e_item = _sample(catalog.explore_cdf, n_items, 1, order_segment[e_order], 0, rng)

    # Recipe baskets: about one order in twelve buys every ingredient of a recipe.
    category_index = {c.name: i for i, c in enumerate(CATEGORIES)}
    recipe_cats = [np.array([category_index[c] for _, c in r[2]]) for r in RECIPES]
    r_orders = np.flatnonzero(rng.random(n_ord) < 1 / 12)
    r_choice = rng.integers(0, len(RECIPES), len(r_orders))
    r_sizes = np.array([len(recipe_cats[r]) for r in r_choice], dtype=np.int64)
    r_order = r_orders[np.repeat(np.arange(len(r_orders)), r_sizes)]
    r_cat = np.concatenate([recipe_cats[r] for r in r_choice]) if len(r_choice) else np.zeros(0, np.int64)
    r_item = _sample(catalog.category_cdf, n_items, n_groups, order_segment[r_order], r_cat, rng)

    # Seasonal gifts in the run-up to Christmas.
    g_orders = np.flatnonzero(_is_christmas_run_up(start_date, seconds) & (rng.random(n_ord) < 0.45))
    seasonal = category_index[SEASONAL_CATEGORY]
    g_item = _sample(
        catalog.category_cdf, n_items, n_groups, order_segment[g_orders], np.full(len(g_orders), seasonal), rng
    )

    order = np.concatenate([s_order, e_order, r_order, g_orders])
    item = np.concatenate([s_item, e_item, r_item, g_item])
    qty = np.concatenate([s_qty, np.ones(len(e_order) + len(r_order) + len(g_orders), np.int64)])

    # One line per (order, item): merge repeats into the quantity.
    key = order.astype(np.int64) * n_items + item
    unique, inverse = np.unique(key, return_inverse=True)
    quantity = np.bincount(inverse, weights=qty).astype(np.int32)
    line_order, line_item = unique // n_items, unique % n_items
    promo = np.where(rng.random(len(unique)) < 0.1, 0.8, 1.0)
    return _Chunk(
        user=order_user[line_order],
        item=line_item,
        quantity=quantity,
        price=np.round(catalog.price[line_item] * promo, 2),
        seconds=seconds[line_order],
        order=order_offset + line_order,
        n_orders=n_ord,
    )


def _is_christmas_run_up(start_date: np.datetime64, seconds: np.ndarray) -> np.ndarray:
    """Orders placed between 15 November and 24 December."""
    dates = start_date + (seconds // 86400).astype("timedelta64[D]")
    month = dates.astype("datetime64[M]").astype(int) % 12 + 1
    day_of_month = (dates - dates.astype("datetime64[M]")).astype(int) + 1
    return ((month == 11) & (day_of_month >= 15)) | ((month == 12) & (day_of_month <= 24))


def _chunk_table(chunk: _Chunk, start: datetime, user_names: list[str], item_names: pa.ChunkedArray) -> pa.Table:
    order = np.argsort(chunk.seconds, kind="stable")
    epoch_us = (int(start.timestamp()) + chunk.seconds[order]) * 1_000_000
    order_ids = pc.binary_join_element_wise("O", pc.cast(pa.array(chunk.order[order] + 1), pa.string()), "")
    return pa.table(
        {
            col.USER_ID: pa.array(np.asarray(user_names, dtype=object)[chunk.user[order]], pa.string()),
            col.ITEM_ID: item_names.take(pa.array(chunk.item[order])).combine_chunks(),
            col.TIMESTAMP: pa.array(epoch_us, pa.timestamp("us", tz="UTC")),
            col.QUANTITY: pa.array(chunk.quantity[order], pa.int32()),
            col.PRICE: pa.array(chunk.price[order], pa.float64()),
            col.ORDER_ID: order_ids,
        },
        schema=PURCHASE_SCHEMA,
    )
