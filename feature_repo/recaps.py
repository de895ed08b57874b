"""Yearly recaps ("your year with us"), written by `reco recaps build`, keyed by customer and year."""

from datetime import timedelta

from customers import customer, offline_source
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Int64, String

year = Entity(
    name="year",
    join_keys=["year"],
    value_type=ValueType.INT64,
    description="Calendar year (UTC) a recap covers.",
)

customer_year_recap = FeatureView(
    name="customer_year_recap",
    entities=[customer, year],
    ttl=timedelta(0),
    schema=[
        Field(
            name="recap_json",
            dtype=String,
            description="The recap record (docs/recaps.md, 'What a recap holds') as JSON.",
        ),
        Field(name="schema_version", dtype=Int64),
        Field(name="model_version", dtype=String),
    ],
    source=FileSource(
        name="customer_year_recap_source",
        path=offline_source("customer_year_recap"),
        timestamp_field="event_timestamp",
    ),
    online=True,
    tags={"owner": "recaps", "entity": "customer"},
)
