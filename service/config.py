"""The service's settings: the shared `training.settings.Settings` plus what only serving needs.

Built once per process (in `create_app`); reading the environment is all it does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator

from training.settings import Settings, build_settings


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower().removeprefix("reco_"))


class ServiceSettings(Settings):
    """Settings of `reco serve` (environment variable names in the aliases)."""

    recipes_path: Path | None = Field(default=None, validation_alias=_env("RECO_RECIPES"))
    reload_poll_seconds: float = Field(default=30.0, ge=0, validation_alias=_env("RECO_RELOAD_POLL_SECONDS"))
    feature_timeout_ms: float = Field(default=50.0, gt=0, le=5_000, validation_alias=_env("RECO_FEATURE_TIMEOUT_MS"))
    # After a failed online-store read, skip the store for this long (answer degraded at once).
    feature_backoff_seconds: float = Field(default=5.0, ge=0, validation_alias=_env("RECO_FEATURE_BACKOFF_SECONDS"))
    item_refresh_seconds: float = Field(default=60.0, ge=0, validation_alias=_env("RECO_ITEM_REFRESH_SECONDS"))
    features: bool = Field(default=True, validation_alias=_env("RECO_FEATURES"))
    # Items bought this recently (online features or posted events) are not recommended again.
    just_bought_hours: float = Field(default=24.0, ge=0, validation_alias=_env("RECO_JUST_BOUGHT_HOURS"))
    # "Now" for demos and tests on historical data; unset = the wall clock.
    now: datetime | None = Field(default=None, validation_alias=_env("RECO_NOW"))
    # Per-customer top-N "home" candidates cached per model version (0 = rank every request).
    candidates: int = Field(default=50, ge=0, le=1_000, validation_alias=_env("RECO_CANDIDATES"))
    precompute_candidates: bool = Field(default=True, validation_alias=_env("RECO_PRECOMPUTE_CANDIDATES"))
    # At most 1,000 (the request schema's hard cap); lower it to bound a request's write.
    max_events_per_request: int = Field(default=1_000, ge=1, le=1_000, validation_alias=_env("RECO_MAX_EVENTS"))
    # The recap email page (format=html), as `reco recaps build --store-name/--currency` renders it.
    recap_store_name: str = Field(default="us", min_length=1, validation_alias=_env("RECO_STORE_NAME"))
    recap_currency: str = Field(default="£", min_length=1, validation_alias=_env("RECO_CURRENCY"))

    @field_validator("now")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @property
    def events_db(self) -> Path:
        """SQLite file holding accepted events until `reco events export` drains them."""
        return self.home / "events" / "events.db"

    def clock(self) -> datetime:
        """The service's "now" (RECO_NOW when set)."""
        return self.now or datetime.now(UTC)

    def recipes_file(self) -> Path | None:
        """recipes.json: RECO_RECIPES, else the demo store's under RECO_HOME, else RECO_HOME/recipes.json."""
        candidates = (
            [self.recipes_path]
            if self.recipes_path
            else [
                self.home / "recipes.json",
                self.home / "demo" / "store" / "recipes.json",
            ]
        )
        return next((p for p in candidates if p is not None and p.exists()), None)


def load_service_settings(**overrides: object) -> ServiceSettings:
    """Build the settings, turning a validation error into one readable sentence."""
    return build_settings(ServiceSettings, **overrides)
