"""Customer entity and its feature views: profile (cumulative stats) and recent items."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float64, Int64, String, UnixTimestamp

from training.features.names import CUSTOMER_PROFILE, CUSTOMER_RECENT_ITEMS, USER_ID, offline_source

customer = Entity(
    name="customer",
    join_keys=[USER_ID],
    value_type=ValueType.STRING,
    description="A shopper of the store, identified by the purchase file's user_id.",
)

customer_profile = FeatureView(
    name=CUSTOMER_PROFILE,
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
        name=f"{CUSTOMER_PROFILE}_source",
        path=offline_source(CUSTOMER_PROFILE),
        timestamp_field="event_timestamp",
    ),
    online=True,
    tags={"owner": "features", "entity": "customer"},
)

customer_recent_items = FeatureView(
    name=CUSTOMER_RECENT_ITEMS,
    entities=[customer],
    ttl=timedelta(days=365),
    schema=[
        Field(name="recent_items", dtype=Array(String), description="Last 20 distinct items, newest first."),
        Field(name="recent_item_times", dtype=Array(Int64), description="Their last purchase, epoch seconds UTC."),
        Field(name="buy_again_items", dtype=Array(String), description="Items in 2+ orders, most orders first (20)."),
        Field(name="buy_again_orders", dtype=Array(Int64), description="Orders containing each buy-again item."),
    ],
    source=FileSource(
        name=f"{CUSTOMER_RECENT_ITEMS}_source",
        path=offline_source(CUSTOMER_RECENT_ITEMS),
        timestamp_field="event_timestamp",
    ),
    online=True,
    tags={"owner": "features", "entity": "customer"},
)
