"""Models of POST /admin/reload and the health endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
    """Whether the service is ready and which dependency it lacks; what is loaded and from where
    (model, features, events) only for a key with the admin scope: error texts name files and hosts."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ready": True,
                    "checks": {"model": True, "online_store": True, "event_log": True},
                    "model": {
                        "loaded": True,
                        "version": "3",
                        "uri": "models:/reco@champion",
                        "resolved_uri": "models:/reco/3",
                        "source": "registry",
                        "loaded_at": "2026-11-23T19:00:00+00:00",
                        "load_seconds": 1.8,
                        "items": 50000,
                        "customers": 100000,
                        "last_error": None,
                        "candidates": "published",
                    },
                    "features": {
                        "online_store": "redis",
                        "available": True,
                        "materialized": True,
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
    checks: dict[str, bool] = Field(
        description="model: a model is loaded; online_store: it answers; event_log: it can be read."
    )
    model: dict[str, Any] | None = Field(default=None, description="With an admin key only.")
    features: dict[str, Any] | None = Field(default=None, description="With an admin key only.")
    events: dict[str, Any] | None = Field(default=None, description="With an admin key only.")

    def public(self) -> Ready:
        """The answer without a key with the admin scope: readiness and the checks, no details."""
        return Ready(ready=self.ready, checks=self.checks)
