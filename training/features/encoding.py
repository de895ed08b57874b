"""How features are keyed and stored, written once for every writer and reader.

* Entity keys: `customer_key`, `item_key`, `recap_key` (Feast's EntityKey protos), and
  `string_entity_keys`, the materializer's fast path for a column of string keys, beside the
  readable construction it must equal (tests/unit/features/test_encoding.py compares them).
* The Redis layout Feast's Redis store uses, which our writer (redis_store) and the service's
  reader (service/online/redis_reader.py) both follow: one hash per entity key
  (`RedisLayout.key`), field `_ts:<view>` = protobuf Timestamp, fields murmur3(`<view>:<feature>`)
  = serialized ValueProto (`RedisLayout.field`); and `writes_key`, a counter our writer bumps.
* Values: `python_value` / `decode` turn ValueProtos into Python values as Feast does;
  `pack_ranked` / `unpack_ranked` the packed ranked lists of customer_candidates; `present`
  tells a missing row (Redis answers a missing key with empty fields); `fresh` checks a row's age
  against its view's ttl, which Feast does not do on online reads (feast#6821).

Library internals used here and nowhere else, each because Feast has no public equivalent:
`serialize_entity_key` and `compute_versioned_name` (Feast's own key and view-name encodings, so
our keys are byte-equal to Feast's), `feast_value_type_to_python_type`. The murmur3 field hash is
computed here (Feast's `_mmh3` is private); tests compare our bytes with Feast's stock store.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import mmh3
import numpy as np
import pyarrow as pa
from feast import FeatureView, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_versioned_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.protos.feast.types.Value_pb2 import ValueType
from feast.type_map import feast_value_type_to_python_type

from training.core.errors import RecoError
from training.features.names import ITEM_ID, PROJECT, USER_ID, YEAR

_U32 = struct.Struct("<I")

# --- entity keys --------------------------------------------------------------------------------


def customer_key(user_id: str) -> EntityKeyProto:
    """The entity key of a customer (views keyed by user_id)."""
    return EntityKeyProto(join_keys=[USER_ID], entity_values=[ValueProto(string_val=user_id)])


def item_key(item_id: str) -> EntityKeyProto:
    """The entity key of an item (item_stats)."""
    return EntityKeyProto(join_keys=[ITEM_ID], entity_values=[ValueProto(string_val=item_id)])


def recap_key(user_id: str, year: int) -> EntityKeyProto:
    """The entity key of a customer's recap of a year (customer_year_recap)."""
    return EntityKeyProto(
        join_keys=[USER_ID, YEAR], entity_values=[ValueProto(string_val=user_id), ValueProto(int64_val=year)]
    )


def string_entity_keys(join_key: str, column: pa.Array) -> list[EntityKeyProto]:
    """`EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=v)])` for each value,
    parsed from the wire form instead (about 3× faster: a million keys per materialized view)."""
    name = join_key.encode("utf-8")
    if len(name) > 127:
        raise RecoError(f"Join key {join_key!r} is too long.")
    # field 1 = the join key, field 2 = Value{string_val}; lengths below 128 are one varint byte
    prefix = b"\x0a" + bytes((len(name),)) + name + b"\x12"
    parse = EntityKeyProto.FromString
    keys = []
    for value in column.cast(pa.string()).to_pylist():
        if value is None:
            raise RecoError(f"A row has no {join_key}: an entity key cannot be null.")
        encoded = value.encode("utf-8")
        n = len(encoded)
        if n <= 125:
            keys.append(parse(prefix + bytes((n + 2, 0x12, n)) + encoded))
        else:
            keys.append(EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=value)]))
    return keys


# --- the Redis layout ---------------------------------------------------------------------------


def view_name(view: FeatureView, config: RepoConfig) -> str:
    """The view's name as Feast's Redis store writes it (with a version suffix when versioning is on)."""
    return compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)


def writes_key(config: RepoConfig, view: FeatureView) -> str:
    """A counter every batch write to `view` increments: readers re-read a view only when it moved."""
    return f"reco:writes:{config.project}:{view_name(view, config)}"


class RedisLayout:
    """Feast's Redis keys and fields: `key` is Feast's `_redis_key` (serialize_entity_key + project),
    with a fast path for one string join key; `field` the hashed field of a feature."""

    def __init__(self, project: str = PROJECT, version: int = 3) -> None:
        self.project = project.encode("utf-8")
        self.version = version
        self._prefixes: dict[str, bytes] = {}

    def key(self, entity_key: EntityKeyProto) -> bytes:
        """The Redis key of an entity."""
        if self.version >= 3 and len(entity_key.join_keys) == 1:
            value = entity_key.entity_values[0]
            if value.WhichOneof("val") == "string_val":
                return self.string_key(entity_key.join_keys[0], value.string_val)
        return serialize_entity_key(entity_key, entity_key_serialization_version=self.version) + self.project

    def string_key(self, name: str, text: str) -> bytes:
        """The key of an entity with one string join key `name` = `text` (serialization v3)."""
        prefix = self._prefixes.get(name)
        if prefix is None:
            encoded = name.encode("utf8")
            prefix = self._prefixes[name] = (
                _U32.pack(1)
                + _U32.pack(ValueType.STRING)
                + _U32.pack(len(encoded))
                + encoded
                + _U32.pack(ValueType.STRING)
            )
        raw = text.encode("utf8")
        return prefix + _U32.pack(len(raw)) + raw + self.project

    @staticmethod
    def field(view: str, feature: str) -> bytes:
        """The hash field of a feature: murmur3-32 (unsigned, little-endian) of `<view>:<feature>`."""
        return _U32.pack(mmh3.hash(f"{view}:{feature}", signed=False))

    @staticmethod
    def ts_field(view: str) -> str:
        """The hash field holding a view's event timestamp."""
        return f"_ts:{view}"


# --- values -------------------------------------------------------------------------------------

_PLAIN_SCALARS = frozenset({"string_val", "int32_val", "int64_val", "double_val", "float_val", "bool_val", "bytes_val"})
_PLAIN_LISTS = frozenset(
    {"string_list_val", "int32_list_val", "int64_list_val", "double_list_val", "float_list_val", "bool_list_val"}
)


def pack_ranked(items: np.ndarray, scores: np.ndarray) -> bytes:
    """A ranked list as one Bytes feature: the item indices (int32, little-endian), then their
    scores (float32): `unpack_ranked` reads it back without a Python object per item."""
    return np.asarray(items, dtype="<i4").tobytes() + np.asarray(scores, dtype="<f4").tobytes()


def unpack_ranked(packed: bytes) -> tuple[np.ndarray, np.ndarray]:
    """`pack_ranked`'s item indices and scores (read-only views of `packed`)."""
    n = len(packed) // 8
    return np.frombuffer(packed, dtype="<i4", count=n), np.frombuffer(packed, dtype="<f4", count=n, offset=4 * n)


def python_value(value: ValueProto) -> Any:
    """A ValueProto as Feast's `feast_value_type_to_python_type` returns it (None when unset).

    Plain scalars and lists are read directly (Feast's function runs a chain of type checks per
    value, on every request); other types go through Feast's function."""
    kind = value.WhichOneof("val")
    return None if kind is None else python_of(value, kind)


def python_of(value: ValueProto, kind: str) -> Any:
    """`python_value` of a value whose set field `kind` is known."""
    if kind in _PLAIN_SCALARS:
        return getattr(value, kind)
    if kind in _PLAIN_LISTS:
        return list(getattr(value, kind).val)
    return feast_value_type_to_python_type(value)


def decode(per_view: Sequence[dict[str, ValueProto] | None]) -> dict[str, Any]:
    """ValueProtos of several views → one {feature: python value} row (a missing view adds nothing)."""
    return {name: python_value(value) for values in per_view for name, value in (values or {}).items()}


def present(values: dict[str, ValueProto] | None) -> bool:
    """True when a view's read holds at least one value (Redis answers a missing key with empty values)."""
    return values is not None and any(v.WhichOneof("val") is not None for v in values.values())


def fresh(event_ts: datetime | None, ttl: timedelta | None, now: datetime) -> bool:
    """Whether a row written at `event_ts` is still within its view's ttl (None or 0: never expires)."""
    if not ttl or event_ts is None:
        return True
    when = event_ts if event_ts.tzinfo else event_ts.replace(tzinfo=UTC)
    return now - when <= ttl
