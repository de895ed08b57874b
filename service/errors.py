"""Errors named for what went wrong, and the one place that turns them (and everything else) into JSON.

Every error answer is `{"detail": ..., "request_id": ...}`. Dependency outages are not errors here:
they become fallback answers with `degraded: true` (see service.recommendations.service).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.observability import current_request_id
from training.core.errors import RecoError

log = logging.getLogger("reco.service")


class ServiceError(RecoError):
    """Base class: `status` is the HTTP status, the message the `detail`."""

    status = 500
    headers: ClassVar[dict[str, str] | None] = None


class MissingApiKey(ServiceError):
    """No X-API-Key header."""

    status = 401
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "APIKey"}


class UnknownApiKey(ServiceError):
    """An X-API-Key that is not in RECO_API_KEYS."""

    status = 401
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "APIKey"}


class MissingScope(ServiceError):
    """The key is valid but does not grant the endpoint's scope."""

    status = 403


class InvalidRecapLink(ServiceError):
    """A view-in-browser token that was not signed for this customer and year (or no key to check it)."""

    status = 403


class NotFound(ServiceError):
    """The requested thing does not exist (a recipe, a recap)."""

    status = 404


class UnknownItem(NotFound):
    """An item id the model and the catalog do not know."""


class UnknownCategory(NotFound):
    """A category the model and the catalog do not know."""


class InvalidInput(ServiceError):
    """Input that passed the schema but cannot be served (e.g. an unknown context)."""

    status = 422


class ReloadFailed(ServiceError):
    """The model URI did not resolve or load; the previous model keeps serving."""

    status = 409


class RecapsUnavailable(ServiceError):
    """Recaps live only in the online store; when it is down there is nothing to fall back to."""

    status = 503
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "5"}


class BodyTooLarge(ServiceError):
    """A request body over RECO_MAX_BODY_BYTES (service/edge.py)."""

    status = 413


class Overloaded(ServiceError):
    """More requests in flight on this worker than RECO_MAX_REQUESTS_IN_FLIGHT (service/edge.py)."""

    status = 503
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}


class EventsUnavailable(ServiceError):
    """The event log (Redis, or the local SQLite file) cannot be written; nothing was stored: retry."""

    status = 503
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "5"}


def _body(detail: Any) -> dict[str, Any]:
    return {"detail": detail, "request_id": current_request_id()}


def error_response(exc: ServiceError, *, extra_headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON answer to a ServiceError (also sent by the middlewares of service/edge.py)."""
    headers = {**(exc.headers or {}), **(extra_headers or {})}
    return JSONResponse(_body(str(exc)), status_code=exc.status, headers=headers or None)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    return JSONResponse(_body(detail), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(_body(exc.detail), status_code=exc.status_code, headers=getattr(exc, "headers", None))


def log_unexpected(scope: dict[str, Any], exc: BaseException) -> None:
    """A bug, not an outage: its type, route template and stack at ERROR; its message only at DEBUG,
    because messages carry data (a KeyError names the customer id). Never the raw path either."""
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    stack = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unhandled %s on %s %s\n%s", type(exc).__name__, scope.get("method", "?"), route, stack.rstrip())
    log.debug("unhandled error message: %r", exc)


def unexpected_error(scope: dict[str, Any], exc: BaseException) -> JSONResponse:
    """The answer to an exception no handler took: logged (`log_unexpected`), a JSON 500.

    Called by the request middleware (service.observability), where the exception stops: Starlette's
    own handler for `Exception` answers and then re-raises, and uvicorn logs the re-raised exception
    with its message at ERROR."""
    log_unexpected(scope, exc)
    return JSONResponse(_body("Internal error; the request id identifies it in the logs."), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to a JSON answer with a clear `detail` and the request id."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
