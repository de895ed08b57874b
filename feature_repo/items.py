"""Item entity and its stats: catalog attributes and popularity windows."""

from datetime import timedelta

from customers import offline_source
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Bool, Float64, Int64, String, UnixTimestamp

item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.STRING,
    description="A catalog item (or an item seen in purchases but missing from the catalog).",
)

item_stats = FeatureView(
    name="item_stats",
    entities=[item],
    # Popularity windows end at the build's as-of time: stale once a few builds are missed.
    ttl=timedelta(days=30),
    schema=[
        Field(name="name", dtype=String),
        Field(name="category", dtype=String),
        Field(name="brand", dtype=String),
        Field(name="price", dtype=Float64, description="Catalog price, else the last unit price sold."),
        Field(name="in_stock", dtype=Bool, description="Catalog flag; null for items missing from the catalog."),
        Field(name="popularity_7d", dtype=Int64, description="Units sold in the 7 days up to the as-of time."),
        Field(name="popularity_30d", dtype=Int64),
        Field(name="popularity_365d", dtype=Int64),
        Field(name="buyers_365d", dtype=Int64, description="Distinct customers in the 365 days up to as-of."),
        Field(name="last_sold", dtype=UnixTimestamp),
    ],
    source=FileSource(
        name="item_stats_source",
        path=offline_source("item_stats"),
        timestamp_field="event_timestamp",
    ),
    online=True,
    tags={"owner": "features", "entity": "item"},
)
