"""Models of POST /admin/reload and the health endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ReloadAnswer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "changed": True,
                    "version": "4",
                    "previous": "3",
                    "seconds": 0.8,
                    "request_id": "7f3c9e1a2b4d4c6e8f0a1b2c3d4e5f60",
                }
            ]
        }
    )

    changed: bool
    version: str | None
    previous: str | None
    seconds: float
    request_id: str


class Live(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class Ready(BaseModel):
    """What is loaded and from where."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ready": True,
                    "model": {
                        "loaded": True,
                        "version": "3",
                        "uri": "models:/reco@champion",
                        "resolved_uri": "models:/reco/3",
                        "loaded_at": "2026-11-23T19:00:00+00:00",
                        "load_seconds": 1.8,
                        "items": 50000,
                        "customers": 100000,
                        "last_error": None,
                        "candidates_filled": 1.0,
                        "candidates_seconds": 41.2,
                    },
                    "features": {
                        "online_store": "redis",
                        "available": True,
                        "items_cached": 50000,
                        "items_stale": 0,
                        "items_refreshed_at": "2026-11-23T19:01:00+00:00",
                        "error": None,
                    },
                    "events": {"store": "redis", "pending": 12, "error": None},
                }
            ]
        }
    )

    ready: bool
    model: dict[str, Any]
    features: dict[str, Any]
    events: dict[str, Any]
