"""Online features without a store: Feast value decoding, the freshness rule Feast does not apply,
and the breaker that skips a failing store."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from training.features.encoding import fresh as _fresh
from training.features.encoding import present as _present

NOW = datetime.fromisoformat("2025-12-31T12:00:00+00:00")


def test_feature_decoding_equals_feasts_for_every_value_kind() -> None:
    """encoding.decode (the service's decoding) reads plain scalars and lists itself: the same values as Feast's."""
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type

    from training.features.encoding import decode as _decode

    values = {
        "s": Value(string_val="Oat Milk"),
        "i32": Value(int32_val=7),
        "i64": Value(int64_val=1 << 40),
        "d": Value(double_val=2.5),
        "f": Value(float_val=0.25),
        "b": Value(bool_val=True),
        "sl": Value(string_list_val={"val": ["a", "b"]}),
        "il": Value(int64_list_val={"val": [1, 2]}),
        "dl": Value(double_list_val={"val": [0.5]}),
        "ts": Value(unix_timestamp_val=1_735_689_600),
        "tsl": Value(unix_timestamp_list_val={"val": [1_735_689_600, 1_735_776_000]}),
        "missing": Value(),
    }
    assert _decode([values]) == {name: feast_value_type_to_python_type(v) for name, v in values.items()}


def test_freshness_rule() -> None:
    from feast.protos.feast.types.Value_pb2 import Value

    day = timedelta(days=1)
    assert _fresh(NOW - 30 * day, 30 * day, NOW) and not _fresh(NOW - 31 * day, 30 * day, NOW)
    assert _fresh(NOW - 10_000 * day, timedelta(0), NOW)  # ttl 0: never expires
    assert _fresh(None, day, NOW)
    assert not _fresh((NOW - 2 * day).replace(tzinfo=None), day, NOW)  # naive = UTC
    # Redis answers a missing key with empty values (and event time 0): missing, not stale
    assert not _present({"recent_items": Value()}) and not _present(None)
    assert _present({"recent_items": Value(), "orders": Value(int64_val=3)})


def test_a_burst_of_timeouts_under_load_does_not_open_the_breaker() -> None:
    """Concurrent requests time out together when the process is starved of CPU for a moment: that is
    not an outage. Timeouts open the breaker only when they are half of the recent reads."""
    from service.config import load_service_settings
    from service.online.features import BREAKER_MIN_TIMEOUTS, BREAKER_WINDOW, OnlineFeatures

    features = OnlineFeatures(load_service_settings(feature_backoff_seconds=5))
    skipping = lambda: features._skip_until > time.monotonic()  # noqa: E731
    for _ in range(BREAKER_WINDOW):
        features._recent_timeouts.append(False)  # what a successful read records
    for _ in range(BREAKER_WINDOW // 2 - 1):  # a burst just under half of the window
        features._fail("customer", "timeout", time.perf_counter())
    assert not skipping()
    features._fail("customer", "timeout", time.perf_counter())
    assert skipping(), "half of the recent reads timed out: skip the store"

    fresh = OnlineFeatures(load_service_settings(feature_backoff_seconds=5))
    for n in range(1, BREAKER_MIN_TIMEOUTS + 1):
        fresh._fail("customer", "timeout", time.perf_counter())
        assert (fresh._skip_until > time.monotonic()) == (n == BREAKER_MIN_TIMEOUTS)
    fresh._skip_until = 0.0
    fresh._fail("customer", "error", time.perf_counter())
    assert fresh._skip_until > time.monotonic(), "a refused connection backs off at once"
