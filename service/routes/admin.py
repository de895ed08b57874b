"""POST /admin/reload and the health endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from service.deps import AdminKey, ServicesDep
from service.errors import ReloadFailed
from service.observability import current_request_id, metrics_body
from service.schemas import ERRORS, Live, Ready, ReloadAnswer

router = APIRouter()


@router.post(
    "/admin/reload",
    response_model=ReloadAnswer,
    tags=["admin"],
    responses={**ERRORS, 409: ERRORS[401] | {"description": "Reload failed; the old model keeps serving."}},
)
async def reload(_key: AdminKey, services: ServicesDep, force: bool = False) -> ReloadAnswer:
    """Re-resolve RECO_MODEL_URI now and swap atomically when it names another version (force: always)."""
    try:
        result = await asyncio.to_thread(services.holder.reload, force=force)
    except Exception as exc:
        raise ReloadFailed(f"Reload failed, still serving the previous model: {exc}") from None
    return ReloadAnswer(
        changed=result.changed,
        version=result.version,
        previous=result.previous,
        seconds=round(result.seconds, 3),
        request_id=current_request_id(),
    )


@router.get("/health/live", response_model=Live, tags=["health"])
async def live() -> Live:
    """The process answers."""
    return Live(status="ok")


@router.get(
    "/health/ready",
    response_model=Ready,
    tags=["health"],
    responses={503: {"model": Ready, "description": "No model loaded yet."}},
)
async def ready(services: ServicesDep) -> JSONResponse:
    """Ready when a model is loaded; says what is loaded and from where (200, else 503)."""
    current = services.holder.current
    features = services.features
    try:
        events: dict[str, Any] = {"pending": await asyncio.to_thread(services.events.pending), "error": None}
    except Exception as exc:  # a broken event log must not turn the health check into a 500
        events = {"pending": None, "error": type(exc).__name__}
    body = Ready(
        ready=current is not None,
        model={
            "loaded": current is not None,
            "version": current.version if current else None,
            "uri": services.settings.model_uri,
            "resolved_uri": current.resolved_uri if current else None,
            "loaded_at": current.loaded_at.isoformat() if current else None,
            "load_seconds": round(current.load_seconds, 3) if current else None,
            "items": int(current.bundle.n_items) if current else None,
            "customers": len(current.bundle.user_ids) if current else None,
            "last_error": services.holder.last_error,
            "candidates_filled": round(current.candidates.fill_ratio, 4) if current and current.candidates else None,
            "candidates_seconds": current.candidates.precompute_seconds if current and current.candidates else None,
        },
        features={
            "online_store": features.kind,
            "available": features.available,
            "items_cached": len(features.catalog.items),
            "items_stale": features.catalog.stale,
            "items_refreshed_at": features.catalog.refreshed_at.isoformat() if features.catalog.refreshed_at else None,
            "error": features.error,
        },
        events=events,
    )
    return JSONResponse(body.model_dump(), status_code=200 if current is not None else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition (latency per route, answers per source, degraded counts, model version)."""
    body, content_type = metrics_body()
    return Response(body, media_type=content_type)
