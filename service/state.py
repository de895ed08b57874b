"""The app state: everything the routes use, created once per process in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.config import ServiceSettings
    from service.events.store import EventStore
    from service.model import ModelHolder
    from service.online.features import OnlineFeatures


@dataclass
class Services:
    """Everything the routes use, created once per process in the lifespan (app.state.services)."""

    settings: ServiceSettings
    holder: ModelHolder
    features: OnlineFeatures
    events: EventStore
    recipes: dict[str, dict[str, Any]]
