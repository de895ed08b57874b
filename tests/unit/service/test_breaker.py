"""The online store's breaker (service.online.features): after a failure the store is skipped for the
back-off, then one read probes it while the others still skip it, and the first success closes it.
So answers are whole again within one back-off of the store's return, and a store that is still down
costs one read per back-off, not one per request."""

from __future__ import annotations

import asyncio

import pytest

from service.config import ServiceSettings
from service.online.features import OnlineFeatures, OnlineStoreDown

BACKOFF = 0.2


def _features(settings: ServiceSettings) -> OnlineFeatures:
    features = OnlineFeatures(settings.model_copy(update={"feature_backoff_seconds": BACKOFF}))
    features.store = object()  # opened (the reads below stand in for the store's)
    return features


async def _refused() -> None:
    raise ConnectionError("refused")


async def _answer(value: str, delay: float = 0.0) -> str:
    await asyncio.sleep(delay)
    return value


async def _outcome(features: OnlineFeatures, read: object) -> str:
    try:
        return str(await features._bounded(read, group="customer"))  # type: ignore[arg-type]
    except OnlineStoreDown as exc:
        return str(exc)


def test_one_probe_after_the_backoff_and_its_success_closes_the_breaker(settings: ServiceSettings) -> None:
    features = _features(settings)

    async def scenario() -> list[object]:
        failed = await _outcome(features, _refused)
        skipped = await _outcome(features, lambda: _answer("row"))  # within the back-off: not even tried
        await asyncio.sleep(BACKOFF * 1.2)
        # Back-off over: the first read probes (slowly); a read meanwhile still skips the store.
        probe, meanwhile = await asyncio.gather(
            _outcome(features, lambda: _answer("probe", 0.02)), _outcome(features, lambda: _answer("row"))
        )
        after = await _outcome(features, lambda: _answer("row"))
        return [failed, skipped, probe, meanwhile, after]

    assert asyncio.run(scenario()) == [
        "online-store-error",
        "online-store-backoff",
        "probe",
        "online-store-backoff",
        "row",
    ]


def test_a_failed_probe_opens_the_breaker_again(settings: ServiceSettings) -> None:
    features = _features(settings)

    async def scenario() -> list[str]:
        first = await _outcome(features, _refused)
        await asyncio.sleep(BACKOFF * 1.2)
        probe = await _outcome(features, _refused)
        skipped = await _outcome(features, lambda: _answer("row"))
        await asyncio.sleep(BACKOFF * 1.2)
        back = await _outcome(features, lambda: _answer("row"))
        return [first, probe, skipped, back]

    assert asyncio.run(scenario()) == ["online-store-error", "online-store-error", "online-store-backoff", "row"]


@pytest.mark.parametrize("populated", [False, None])
def test_an_emptied_store_degrades_every_customer_read(settings: ServiceSettings, populated: bool | None) -> None:
    """Without the marker of a complete load (populated False) even a row found is not trusted; an
    unknown state (the store never answered the check) changes nothing."""
    features = _features(settings)
    features.kind = "redis"
    features.populated = populated

    async def read(_user: str) -> dict[str, object]:
        return {"orders": 3, "recent_items": ["I1"], "recent_item_times": [0]}

    features._read_customer_async = read  # type: ignore[method-assign]
    got = asyncio.run(features.customer("C1"))
    if populated is False:
        assert got.features is None and got.degraded_reason == "online-store-empty"
    else:
        assert got.features is not None and got.features.known and got.degraded_reason is None
