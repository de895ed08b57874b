"""Customer entity and its feature views: profile (cumulative stats), recent items, and the top
candidates of a model version (written by `reco candidates build`).

The repo imports only Feast (and the standard library): the names are spelled here and in
training/features/names.py, and a test checks both agree. Offline sources are Parquet files under
$RECO_HOME/features/ (`reco` points them at its own home when it applies the definitions).
"""

import os
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Bytes, Float64, Int64, String, UnixTimestamp


def offline_source(view: str) -> str:
    """The offline Parquet file of a view under RECO_HOME (default `.reco` in the working directory)."""
    return os.path.join(os.environ.get("RECO_HOME", ".reco"), "features", f"{view}.parquet")


customer = Entity(
    name="customer",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A shopper of the store, identified by the purchase file's user_id.",
)

customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    # Cumulative over the whole history: valid until a newer row replaces it.
    ttl=timedelta(0),
    schema=[
        Field(name="orders", dtype=Int64, description="Distinct order_ids; a line without one is one order."),
        Field(name="items", dtype=Int64, description="Sum of quantity."),
        Field(name="spend", dtype=Float64, description="Sum of quantity × price (lines without price count 0)."),
        Field(name="distinct_items", dtype=Int64),
        Field(name="first_purchase", dtype=UnixTimestamp),
        Field(name="last_purchase", dtype=UnixTimestamp),
        Field(name="avg_basket_items", dtype=Float64, description="items / orders."),
        Field(name="avg_basket_spend", dtype=Float64, description="spend / orders."),
        Field(name="rebuy_interval_days", dtype=Float64, description="Median days between orders; null below 2."),
        Field(name="top_categories", dtype=Array(String), description="Up to 3 categories by quantity."),
    ],
    source=FileSource(
        name="customer_profile_source",
        path=offline_source("customer_profile"),
        timestamp_field="event_timestamp",
    ),
    online=True,
    tags={"owner": "features", "entity": "customer"},
)

customer_recent_items = FeatureView(
    name="customer_recent_items",
    entities=[customer],
    ttl=timedelta(days=365),
    schema=[
        Field(name="recent_items", dtype=Array(String), description="Last 20 distinct items, newest first."),
        Field(name="recent_item_times", dtype=Array(Int64), description="Their last purchase, epoch seconds UTC."),
        Field(name="buy_again_items", dtype=Array(String), description="Items in 2+ orders, most orders first (20)."),
        Field(name="buy_again_orders", dtype=Array(Int64), description="Orders containing each buy-again item."),
    ],
    source=FileSource(
        name="customer_recent_items_source",
        path=offline_source("customer_recent_items"),
        timestamp_field="event_timestamp",
    ),
    online=True,
    tags={"owner": "features", "entity": "customer"},
)

customer_candidates = FeatureView(
    name="customer_candidates",
    entities=[customer],
    # Valid until the next build replaces it; the service uses the lists whose version is the one it
    # serves (and ranks on the spot when neither is).
    ttl=timedelta(0),
    schema=[
        Field(name="model_version", dtype=String, description="The model version that ranked these lists."),
        Field(
            name="home",
            dtype=Bytes,
            description="Top home items before live filters, best first: the version's item indices "
            "(int32, little-endian), then their scores (float32).",
        ),
        Field(name="discover", dtype=Bytes, description="Top items never bought, packed the same way."),
        # The same for the version published before, so that it keeps its lists while a new version's
        # are written and until the alias moves (or moves back).
        Field(name="previous_version", dtype=String),
        Field(name="previous_home", dtype=Bytes),
        Field(name="previous_discover", dtype=Bytes),
    ],
    source=FileSource(
        name="customer_candidates_source",
        path=offline_source("customer_candidates"),
        timestamp_field="event_timestamp",
    ),
    online=True,
    tags={"owner": "candidates", "entity": "customer"},
)
