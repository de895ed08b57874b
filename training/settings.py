"""One validated settings object per process (flags, then environment, then these defaults).

Building a `Settings` reads the environment only; nothing here touches disk or network, so
importing this module is free. Bad values stop start-up with one sentence (see `load_settings`).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from training.errors import RecoError

SCOPES = ("recommend", "recaps", "events", "admin")


def _default_home() -> Path:
    """`.reco/` in the source checkout when running from one, else in the working directory."""
    root = Path(__file__).resolve().parents[1]
    return (root if (root / "pyproject.toml").exists() else Path.cwd()) / ".reco"


class Settings(BaseSettings):
    """Every setting of the CLI and the service, with the environment variable it comes from."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    home: Path = Field(default_factory=_default_home, validation_alias=AliasChoices("RECO_HOME", "home"))
    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri")
    )
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "redis_url"))
    model_uri: str = Field(
        default="models:/reco@champion", validation_alias=AliasChoices("RECO_MODEL_URI", "model_uri")
    )
    registered_name: str = Field(
        default="reco", validation_alias=AliasChoices("RECO_REGISTERED_NAME", "registered_name")
    )
    api_keys_json: str = Field(default="{}", validation_alias=AliasChoices("RECO_API_KEYS", "api_keys_json"))
    auth: Literal["enabled", "disabled"] = Field(default="enabled", validation_alias=AliasChoices("RECO_AUTH", "auth"))

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

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

    @cached_property
    def api_keys(self) -> dict[str, frozenset[str]]:
        """API key → the scopes it grants."""
        return {key: frozenset(scopes) for key, scopes in json.loads(self.api_keys_json or "{}").items()}

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the environment's, else a SQLite store under RECO_HOME."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def feature_data_dir(self) -> Path:
        """Offline Parquet sources that `reco features build` writes for the Feast repo."""
        return self.home / "features"


S = TypeVar("S", bound="Settings")


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning a validation error into one readable sentence."""
    return build_settings(Settings, **overrides)


def build_settings(cls: type[S], **overrides: object) -> S:
    """`cls(**overrides)` (None overrides dropped) with a validation error as one readable sentence."""
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RecoError(f"Invalid setting {'.'.join(map(str, first['loc']))}: {first['msg']}.") from None
