"""POST /admin/reload and the health endpoints."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from service.admin.schemas import Live, Ready, ReloadAnswer
from service.admin.service import event_log_status, readiness, reload_model
from service.deps import AdminKey, ServicesDep
from service.observability import current_request_id, metrics_body
from service.schemas import ERRORS

router = APIRouter()


@router.post(
    "/admin/reload",
    response_model=ReloadAnswer,
    tags=["admin"],
    responses={**ERRORS, 409: ERRORS[401] | {"description": "Reload failed; the old model keeps serving."}},
)
async def reload(_key: AdminKey, services: ServicesDep, force: bool = False) -> ReloadAnswer:
    """Re-resolve RECO_MODEL_URI now and swap atomically when it names another version (force: always)."""
    result = await asyncio.to_thread(reload_model, holder=services.holder, features=services.features, force=force)
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
    events = await asyncio.to_thread(event_log_status, store=services.events)
    body = readiness(holder=services.holder, features=services.features, settings=services.settings, events=events)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition (latency per route, answers per source, degraded counts, model version)."""
    body, content_type = metrics_body()
    return Response(body, media_type=content_type)
