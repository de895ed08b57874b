"""Model reloads and the readiness report, as plain functions over the app state."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from service.admin.schemas import Ready
from service.errors import ReloadFailed

if TYPE_CHECKING:
    from service.config import ServiceSettings
    from service.events.store import EventStore
    from service.model import ModelHolder, ReloadResult
    from service.online.features import OnlineFeatures


def reload_model(*, holder: ModelHolder, features: OnlineFeatures, force: bool) -> ReloadResult:
    """Re-resolve the model URI and swap when it names another version (blocking); ReloadFailed otherwise.
    Then signal the other workers (and replicas) through the online store: each reloads within
    RECO_STATE_POLL_SECONDS (service.app._watch_state_forever)."""
    try:
        result = holder.reload(force=force)
    except Exception as exc:
        raise ReloadFailed(f"Reload failed, still serving the previous model: {exc}") from None
    features.signal_reload(json.dumps({"id": uuid.uuid4().hex, "version": result.version}))
    return result


def event_log_status(*, store: EventStore) -> dict[str, Any]:
    """Where the event log is and its pending events (blocking); a broken log is reported, not raised."""
    try:
        return {"store": store.kind, "pending": store.pending(), "error": None}
    except Exception as exc:  # a broken event log must not turn the health check into a 500
        return {"store": store.kind, "pending": None, "error": str(exc).split(":")[0][:80] or type(exc).__name__}


def candidates_status(holder: ModelHolder) -> str | None:
    """How `home` is answered: from the served version's offline candidates once `reco candidates build`
    published them, per request until then (None: no model, or not a registered version)."""
    if holder.current is None or holder.candidates_published is None:
        return None
    if holder.candidates_published:
        return "published"
    return f"not published for version {holder.current.version}: home is ranked per request"


def readiness(
    *, holder: ModelHolder, features: OnlineFeatures, settings: ServiceSettings, events: dict[str, Any]
) -> Ready:
    """What is loaded and from where; ready when a model is loaded."""
    current = holder.current
    catalog = features.catalog
    error = features.error
    if features.populated is False:
        error = "the online store holds no complete materialization (emptied?): run `reco features materialize`"
    return Ready(
        ready=current is not None,
        model={
            "loaded": current is not None,
            "version": current.version if current else None,
            "uri": settings.model_uri,
            "resolved_uri": current.resolved_uri if current else None,
            "source": current.source if current else None,
            "loaded_at": current.loaded_at.isoformat() if current else None,
            "load_seconds": round(current.load_seconds, 3) if current else None,
            "items": int(current.bundle.n_items) if current else None,
            "customers": len(current.bundle.user_ids) if current else None,
            "last_error": holder.last_error,
            "candidates": candidates_status(holder),
        },
        features={
            "online_store": features.kind,
            "available": features.available and features.populated is not False,
            "materialized": features.populated,
            "items_cached": len(catalog.items),
            "items_stale": catalog.stale,
            "items_refreshed_at": catalog.refreshed_at.isoformat() if catalog.refreshed_at else None,
            "error": error,
        },
        events=events,
        checks={
            "model": current is not None,
            "online_store": bool(features.available) and features.populated is not False,
            "event_log": events.get("error") is None,
        },
    )
