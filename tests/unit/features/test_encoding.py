"""Keys, Redis layout, values and freshness: written once (training/features/encoding.py) and equal
to what Feast itself computes, so our writer, the service's reader and Feast read each other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Int64List, StringList, Value
from feast.type_map import feast_value_type_to_python_type

from training.features.encoding import (
    RedisLayout,
    customer_key,
    decode,
    fresh,
    item_key,
    present,
    python_value,
    recap_key,
    string_entity_keys,
)


def test_entity_keys_from_wire_form_equal_feasts() -> None:
    """The materializer's fast path builds the very protos of the readable construction."""
    ids = ["C1", "", "é" * 62, "x" * 125, "y" * 126, "z" * 300]
    want = [EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=i)]) for i in ids]
    assert string_entity_keys("user_id", pa.array(ids)) == want
    assert [customer_key(i) for i in ids] == want


def test_redis_keys_and_fields_equal_feasts_own() -> None:
    """RedisLayout's keys (the one-string-key fast path and the general case) and hashed field names
    are byte-equal to Feast's Redis store's (its private helpers, compared here only)."""
    layout = RedisLayout("reco", 3)
    for key in (customer_key("C0001"), item_key("é-42"), customer_key(""), recap_key("C0001", 2025)):
        assert layout.key(key) == _redis_key("reco", key, entity_key_serialization_version=3)
    assert layout.string_key("user_id", "C0001") == layout.key(customer_key("C0001"))
    for name in ("customer_profile:orders", "item_stats:in_stock", "customer_year_recap:recap_json", "é:x"):
        view, _, feature = name.partition(":")
        assert layout.field(view, feature) == _mmh3(name)
    assert layout.ts_field("item_stats") == "_ts:item_stats"


def test_values_decode_as_feast_decodes_them() -> None:
    values = {
        "orders": Value(int64_val=5),
        "spend": Value(double_val=12.5),
        "in_stock": Value(bool_val=False),
        "top_categories": Value(string_list_val=StringList(val=["Milk", "Bread"])),
        "recent_item_times": Value(int64_list_val=Int64List(val=[1, 2])),
        "last_purchase": Value(unix_timestamp_val=1_700_000_000),
        "missing": Value(),
    }
    for value in values.values():
        assert python_value(value) == (feast_value_type_to_python_type(value) if value.WhichOneof("val") else None)
    assert decode([values, None]) == {name: python_value(v) for name, v in values.items()}
    assert present(values) and not present({"a": Value()}) and not present(None)


def test_freshness_against_the_view_ttl() -> None:
    now = datetime(2026, 1, 10, tzinfo=UTC)
    assert fresh(now - timedelta(days=29), timedelta(days=30), now)
    assert not fresh(now - timedelta(days=31), timedelta(days=30), now)
    assert fresh(now - timedelta(days=999), timedelta(0), now), "ttl 0: never expires"
    assert fresh(None, timedelta(days=1), now)
    assert fresh(datetime(2026, 1, 9), timedelta(days=2), now), "a naive time is UTC"
