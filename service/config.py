"""The service's settings: the shared `training.settings.Settings` plus what only serving needs
(API keys and their scopes, timeouts, filters).

Built once per process (in `create_app`); reading the environment is all it does. Each field reads
one environment variable, named in its `validation_alias` (docs/configuration.md lists them all).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from training.recaps.brand import Brand, load_brand
from training.settings import Settings, build_settings

SCOPES = ("recommend", "recaps", "events", "admin")


class ServiceSettings(Settings):
    """Settings of `reco serve`."""

    api_keys_json: str = Field(
        default="{}",
        validation_alias="RECO_API_KEYS",
        description='JSON {"<key>": [scopes]}; scopes among recommend, recaps, events, admin.',
    )
    auth: Literal["enabled", "disabled"] = Field(
        default="enabled", validation_alias="RECO_AUTH", description="`disabled` only for a local demo."
    )
    recipes_path: Path | None = Field(
        default=None,
        validation_alias="RECO_RECIPES",
        description="Recipes for shop-by-recipe (default: RECO_HOME/recipes.json, else the demo store's).",
    )
    reload_poll_seconds: float = Field(
        default=30.0,
        ge=0,
        validation_alias="RECO_RELOAD_POLL_SECONDS",
        description="How often the service checks where the model alias points (0: never).",
    )
    feature_timeout_ms: float = Field(
        default=50.0,
        gt=0,
        le=5_000,
        validation_alias="RECO_FEATURE_TIMEOUT_MS",
        description="Online-store read budget per request before answering degraded.",
    )
    feature_backoff_seconds: float = Field(
        default=1.0,
        ge=0,
        validation_alias="RECO_FEATURE_BACKOFF_SECONDS",
        description="Skip the online store this long after it failed (answers degraded at once); then one "
        "read probes it and the first success ends the back-off.",
    )
    registry_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        validation_alias="RECO_REGISTRY_TIMEOUT_SECONDS",
        description="Longest wait for MLflow to say where RECO_MODEL_URI points; at start-up without an answer "
        "the version served last is loaded from the local model cache.",
    )
    state_poll_seconds: float = Field(
        default=1.0,
        ge=0,
        validation_alias="RECO_STATE_POLL_SECONDS",
        description="How often each worker reads the online store's shared state: the marker of a complete "
        "materialization (answers are degraded without it) and the reload signal of POST /admin/reload (0: never).",
    )
    item_refresh_seconds: float = Field(
        default=60.0,
        ge=0,
        validation_alias="RECO_ITEM_REFRESH_SECONDS",
        description="How often the service checks item_stats for availability (0: never).",
    )
    features: bool = Field(
        default=True, validation_alias="RECO_FEATURES", description="Read the online store at all (false: model only)."
    )
    just_bought_hours: float = Field(
        default=24.0,
        ge=0,
        validation_alias="RECO_JUST_BOUGHT_HOURS",
        description="Items bought this recently (online features or posted events) are not recommended.",
    )
    now: datetime | None = Field(
        default=None,
        validation_alias="RECO_NOW",
        description="The service's 'now' for demos and tests on historical data (unset: the wall clock).",
    )
    max_events_per_request: int = Field(
        default=1_000,
        ge=1,
        le=1_000,
        validation_alias="RECO_MAX_EVENTS",
        description="Events accepted per request (at most 1,000, the request schema's cap).",
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1_024,
        validation_alias="RECO_MAX_BODY_BYTES",
        description="Largest request body in bytes (413 above it: a Content-Length before any byte is read, a "
        "chunked body as soon as it passes it). 1,000 events take about 200 kB.",
    )
    max_requests_in_flight: int = Field(
        default=512,
        ge=1,
        validation_alias="RECO_MAX_REQUESTS_IN_FLIGHT",
        description="Requests inside the app per worker before the next ones answer 503 at once (`reco serve "
        "--limit-concurrency`); idle and half-sent connections do not count.",
    )
    request_read_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        validation_alias="RECO_REQUEST_READ_TIMEOUT_SECONDS",
        description="A request (head and body) must arrive within this time of its first byte, a connection's "
        "first request within this time of the connection's opening; else the connection is closed (408 when a "
        "head was begun).",
    )
    max_request_head_bytes: int = Field(
        default=65_536,
        ge=4_096,
        validation_alias="RECO_MAX_REQUEST_HEAD_BYTES",
        description="Largest request line plus headers in bytes (431 and the connection closed above it).",
    )
    sensitive_categories_list: str = Field(
        default="Pharmacy",
        validation_alias="RECO_SENSITIVE_CATEGORIES",
        description="Comma-separated categories never cross-sold: similar items, basket completion, discover, "
        "home and shelves offer them only when the anchor (the item, a cart item, something the customer bought) "
        "is of the same category. The recap job's `--sensitive-category` default. Empty: none.",
    )
    reason_similarity_quantile: float = Field(
        default=0.95,
        ge=0,
        le=1,
        validation_alias="RECO_REASON_SIMILARITY_QUANTILE",
        description='"Because you bought X" only when X adds more to the item\'s score than this share of item '
        "pairs add to each other (the model's own item-item similarity); otherwise a generic reason.",
    )
    home_explore_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        validation_alias="RECO_HOME_EXPLORE_SHARE",
        description="Share of `context=home` items that are new to the customer (explore slots; the request's "
        "`diversity` overrides it; 0: the plain blend). Unset: the model's own share (`reco train --param "
        "explore_share`, default 0.1), the list its offline metrics measured.",
    )

    @field_validator("api_keys_json")
    @classmethod
    def _valid_api_keys(cls, value: str) -> str:
        try:
            keys = json.loads(value or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"RECO_API_KEYS is not valid JSON ({exc.msg})") from None
        if not isinstance(keys, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and set(v) <= set(SCOPES) for k, v in keys.items()
        ):
            raise ValueError(
                'RECO_API_KEYS must be a JSON object {"<key>": [scopes]} with scopes among ' + ", ".join(SCOPES)
            )
        return value

    @field_validator("now")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @property
    def sensitive_categories(self) -> tuple[str, ...]:
        """RECO_SENSITIVE_CATEGORIES as a tuple of category names."""
        return tuple(c.strip() for c in self.sensitive_categories_list.split(",") if c.strip())

    @cached_property
    def api_keys(self) -> dict[str, frozenset[str]]:
        """API key → the scopes it grants."""
        return {key: frozenset(scopes) for key, scopes in json.loads(self.api_keys_json or "{}").items()}

    @cached_property
    def recap_brand(self) -> Brand:
        """The shop of the recap page (RECO_BRAND, RECO_STORE_NAME, RECO_CURRENCY), as the recap job reads it."""
        return load_brand(self)

    @property
    def events_db(self) -> Path:
        """SQLite file holding accepted events until `reco events export` drains them."""
        return self.home / "events" / "events.db"

    def clock(self) -> datetime:
        """The service's "now" (RECO_NOW when set)."""
        return self.now or datetime.now(UTC)

    def recipes_file(self) -> Path | None:
        """recipes.json: RECO_RECIPES, else RECO_HOME/recipes.json, else the demo store's under RECO_HOME."""
        candidates = (
            [self.recipes_path]
            if self.recipes_path
            else [self.home / "recipes.json", self.home / "demo" / "store" / "recipes.json"]
        )
        return next((p for p in candidates if p is not None and p.exists()), None)


def load_service_settings(**overrides: object) -> ServiceSettings:
    """The service's settings from the environment, with `overrides` (field names) on top."""
    return build_settings(ServiceSettings, **overrides)
