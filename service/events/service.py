"""Posted purchase events: validated one by one, stored, counted (the storage is store.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.errors import EventsUnavailable, InvalidInput
from service.events.store import EventLogDown, EventStore, IngestResult
from service.observability import EVENTS

log = logging.getLogger("reco.service.events")


def check_batch_size(*, events: Sequence[Any], limit: int) -> None:
    """InvalidInput when a request posts more than `limit` events (RECO_MAX_EVENTS)."""
    if len(events) > limit:
        raise InvalidInput(f"At most {limit} events per request (RECO_MAX_EVENTS); got {len(events)}.")


def ingest_events(*, store: EventStore, events: Sequence[Any], now: datetime) -> IngestResult:
    """Store the valid events durably and count every outcome (blocking: SQLite fsyncs, Redis is a
    round trip); EventsUnavailable when the event log cannot be written (nothing was claimed)."""
    try:
        result = store.ingest(events, now=now)
    except EventLogDown as exc:
        log.warning("event log write failed: %s", (str(exc).splitlines() or [""])[0][:200])
        raise EventsUnavailable("The event log cannot be written right now; nothing was stored, retry.") from None
    EVENTS.labels(outcome="accepted").inc(result.accepted)
    EVENTS.labels(outcome="duplicate").inc(result.duplicates)
    EVENTS.labels(outcome="rejected").inc(result.rejected)
    return result
