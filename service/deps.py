"""Route dependencies as named `Annotated` aliases: what a route needs reads like its signature.

All dependencies are `async def`: a sync dependency would take a thread of the shared pool per call.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from service.config import ServiceSettings
from service.errors import MissingApiKey, MissingScope, UnknownApiKey
from service.events.store import EventStore
from service.model import LoadedModel
from service.online.features import OnlineFeatures
from service.state import Services

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="A key from RECO_API_KEYS; each endpoint needs one scope."
)


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_model(request: Request) -> LoadedModel | None:
    """The model serving this request (read once: a concurrent swap does not affect it)."""
    return request.app.state.services.holder.current


async def get_features(request: Request) -> OnlineFeatures:
    return request.app.state.services.features


async def get_events(request: Request) -> EventStore:
    return request.app.state.services.events


ModelDep = Annotated[LoadedModel | None, Depends(get_model)]
FeaturesDep = Annotated[OnlineFeatures, Depends(get_features)]
EventsDep = Annotated[EventStore, Depends(get_events)]


def authorize(settings: ServiceSettings, key: str | None, scope: str) -> str:
    """Checks an X-API-Key against RECO_API_KEYS: no key → 401, unknown key → 401, no scope → 403."""
    if settings.auth == "disabled":
        return "anonymous"
    if not key:
        raise MissingApiKey("Missing X-API-Key header.")
    scopes = None
    # Compare against every key in constant time (no early exit that times the key).
    for known, granted in settings.api_keys.items():
        if hmac.compare_digest(known.encode(), key.encode()):
            scopes = granted
    if scopes is None:
        raise UnknownApiKey("Unknown API key.")
    if scope not in scopes:
        raise MissingScope(f"This API key lacks the '{scope}' scope.")
    return scope


class RequireScope:
    """The `authorize` check as a dependency (and the X-API-Key security scheme in OpenAPI)."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, request: Request, key: Annotated[str | None, Security(api_key_header)]) -> str:
        return authorize(request.app.state.services.settings, key, self.scope)


RecommendKey = Annotated[str, Security(RequireScope("recommend"))]
EventsKey = Annotated[str, Security(RequireScope("events"))]
AdminKey = Annotated[str, Security(RequireScope("admin"))]
