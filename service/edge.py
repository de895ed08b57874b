"""What stands in front of the routes: the limits every request meets before any of it is used.

In the order a request meets them:

1. The HTTP protocol (`RequestDeadlineProtocol`, uvicorn's httptools protocol with two checks
   uvicorn lacks): the whole request must arrive within RECO_REQUEST_READ_TIMEOUT_SECONDS of its
   first byte (of the connection's opening for the first request), and its head (request line and
   headers) must fit in RECO_MAX_REQUEST_HEAD_BYTES. uvicorn's own `timeout_keep_alive` only
   covers the silence between requests and restarts on every byte, so a client trickling a request
   held its connection for ever.
2. `RequestsInFlight`: at most RECO_MAX_REQUESTS_IN_FLIGHT requests per worker inside the app, the
   next ones answered 503 at once. It counts requests whose head has arrived, never connections:
   uvicorn's `limit_concurrency` counts open connections too, and 2,000 half-sent ones made every
   legitimate request answer 503.
3. `KeyBeforeBody`: a request that may carry a body (any method but GET and HEAD) to an endpoint
   that needs a key is authorized (`service.deps.authorize`: 401, then 403) before its body is
   read. FastAPI reads and parses a declared body before it solves the route's dependencies, the
   key check among them: an unauthenticated 200 MB JSON cost 678 MB of worker memory.
4. `BodyLimit` (RECO_MAX_BODY_BYTES): a Content-Length over it is refused before the first byte is
   read, a chunked body as soon as the running count passes it (413, JSON like every error).
   FastAPI's own `max_body_size` answers a Content-Length over the limit in plain text, whatever
   the route or a middleware answered.

Refusals made before the body was read close the connection (`Connection: close`), so a client
that keeps sending is not read further.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.config import ServiceSettings, load_service_settings
from service.deps import RequireScope, authorize
from service.errors import BodyTooLarge, Overloaded, ServiceError, error_response

CLOSE = {"Connection": "close"}
_BODILESS = frozenset({"GET", "HEAD"})


class RequestsInFlight:
    """ASGI middleware: 503 (Retry-After) beyond `limit` requests inside the app of this worker;
    /health/* is never refused (an orchestrator must not restart a busy worker)."""

    def __init__(self, app: Any, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.current = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/health/"):
            await self.app(scope, receive, send)
            return
        if self.current >= self.limit:
            limit = self.limit
            error = Overloaded(f"More than {limit} requests in flight on this worker; retry in a second.")
            await error_response(error)(scope, receive, send)
            return
        self.current += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.current -= 1


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, before reading it when its Content-Length
    says so, else as soon as the bytes read pass the limit."""

    def __init__(self, app: Any, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in _BODILESS:
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await error_response(BodyTooLarge(self._sentence()), extra_headers=CLOSE)(scope, receive, send)
            return
        received = 0

        async def counted() -> dict[str, Any]:
            nonlocal received
            message: dict[str, Any] = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                # An HTTPException: FastAPI re-raises those from a body read (others become a 400).
                raise HTTPException(413, self._sentence(), headers=CLOSE)
            return message

        await self.app(scope, counted, send)

    def _sentence(self) -> str:
        return f"The request body is larger than {self.limit:,} bytes (RECO_MAX_BODY_BYTES)."


class KeyBeforeBody:
    """ASGI middleware: the key check of an endpoint (its `RequireScope` dependency) done before a
    request that may carry a body reaches the route, which would read and parse the body first."""

    def __init__(self, app: Any, *, routes: Callable[[], list[tuple[APIRoute, str]]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] not in _BODILESS:
            needed = self._scope_of(scope)
            if needed is not None:
                key = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-api-key"), None)
                try:
                    authorize(scope["app"].state.services.settings, key, needed)
                except ServiceError as exc:
                    await error_response(exc, extra_headers=CLOSE)(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _scope_of(self, scope: dict[str, Any]) -> str | None:
        for route, needed in self.routes():
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return needed
        return None


def keyed_routes(routers: list[APIRouter]) -> Callable[[], list[tuple[APIRoute, str]]]:
    """The routes of `routers` that need a key, with the scope each needs (read from their
    dependencies on first use)."""

    @functools.cache
    def routes() -> list[tuple[APIRoute, str]]:
        found = []
        for router in routers:
            for route in router.routes:
                if isinstance(route, APIRoute):
                    needs = [d.call.scope for d in route.dependant.dependencies if isinstance(d.call, RequireScope)]
                    if needs:
                        found.append((route, needs[0]))
        return found

    return routes


def install_limits(app: FastAPI, settings: ServiceSettings, routers: list[APIRouter]) -> None:
    """Add the in-flight limit, the key-before-body check for the endpoints of `routers` and the
    body limit, in the module docstring's order. Call before the request-id middleware is added, so
    that refusals carry a request id."""
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(KeyBeforeBody, routes=keyed_routes(routers))
    app.add_middleware(RequestsInFlight, limit=settings.max_requests_in_flight)


# --- the HTTP protocol ---------------------------------------------------------------------------


@functools.cache
def _protocol_limits() -> tuple[float, int]:
    """(read timeout in seconds, head size limit in bytes) of this process's settings."""
    settings = load_service_settings()
    return settings.request_read_timeout_seconds, settings.max_request_head_bytes


class RequestDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (`uvicorn --http service.edge:RequestDeadlineProtocol`) with a
    deadline for receiving each request and a cap on the size of its head (module docstring)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timeout, self._max_head = _protocol_limits()
        self._head_bytes = 0
        self._reading_head = True
        self._started = False  # a request has begun on this connection and is not complete
        self._deadline: asyncio.TimerHandle | None = self.loop.call_later(self._timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._reading_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                self._refuse(431, b"Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._started, self._reading_head, self._head_bytes = True, True, 0
        if self._deadline is None:
            self._deadline = self.loop.call_later(self._timeout, self._too_slow)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._started = False
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._started and self._reading_head:
            self._refuse(408, b"Request Timeout")
        else:  # silent since the connection opened, or mid-body (the route sees a disconnect)
            self.transport.close()

    def _refuse(self, status: int, reason: bytes) -> None:
        body = b'{"detail": "' + reason + b'"}'
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason, len(body), body)
        )
        self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    """The uvicorn settings of `reco serve` (and of the tests' real servers) that bound a request."""
    return {
        "http": "service.edge:RequestDeadlineProtocol",
        "limit_concurrency": None,  # RequestsInFlight counts requests, not connections
        "timeout_keep_alive": 5,
    }
