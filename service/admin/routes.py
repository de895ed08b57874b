"""POST /admin/reload and the health endpoints."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.admin.schemas import Live, Ready, ReloadAnswer
from service.admin.service import event_log_status, readiness, reload_model
from service.config import ServiceSettings
from service.deps import AdminKey, ServicesDep, authorize
from service.errors import ServiceError
from service.observability import current_request_id, metrics_body
from service.schemas import BODY_ERRORS, ERRORS

router = APIRouter()


@router.post(
    "/admin/reload",
    response_model=ReloadAnswer,
    tags=["admin"],
    responses={**BODY_ERRORS, 409: ERRORS[401] | {"description": "Reload failed; the old model keeps serving."}},
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
async def ready(request: Request, services: ServicesDep) -> JSONResponse:
    """Ready when a model is loaded (200, else 503), with which dependency is missing; with an admin
    key (X-API-Key, not required) also what is loaded and from where, and the errors."""
    events = await asyncio.to_thread(event_log_status, store=services.events)
    body = readiness(holder=services.holder, features=services.features, settings=services.settings, events=events)
    if not _is_admin(services.settings, request.headers.get("x-api-key")):
        body = body.public()
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if body.ready else 503)


def _is_admin(settings: ServiceSettings, key: str | None) -> bool:
    try:
        authorize(settings, key, "admin")
    except ServiceError:
        return False
    return True


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition (latency per route, answers per source, degraded counts, model version)."""
    body, content_type = metrics_body()
    return Response(body, media_type=content_type)
