"""The settings every `reco` process shares: flags, then the environment, then these defaults.

One validated object per process (`load_settings`; the service extends it in service/config.py).
Building one reads the environment only, and each field reads exactly one variable (a field is
never filled from the shell's `HOME`). Nothing here touches disk or network, so importing this
module is free. A bad value stops start-up with one sentence (`build_settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from training.core.errors import RecoError
from training.features.names import OFFLINE_DIR


def _default_home() -> Path:
    """`.reco/` in the source checkout when running from one, else in the working directory."""
    root = Path(__file__).resolve().parents[1]
    return (root if (root / "pyproject.toml").exists() else Path.cwd()) / ".reco"


class Settings(BaseSettings):
    """What the CLI and the service share, each field with the one environment variable it reads."""

    # Init arguments by field name go through `build_settings` (it maps them to their variables);
    # `Settings(home=...)` is refused rather than silently ignored.
    model_config = SettingsConfigDict(extra="forbid")

    home: Path = Field(
        default_factory=_default_home,
        validation_alias="RECO_HOME",
        description="Every piece of generated state: MLflow's SQLite store, the Feast registry, offline "
        "Parquet, the SQLite online store, the model cache, accepted events (without REDIS_URL). Two homes never "
        "touch each other. "
        "Default: `.reco/` in the source checkout, else in the working directory.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias="MLFLOW_TRACKING_URI",
        description="Any MLflow tracking server or database (default: sqlite:///$RECO_HOME/mlflow.db).",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias="REDIS_URL",
        description="Redis online store, e.g. redis://127.0.0.1:6379/0 (unset: the SQLite online store).",
    )
    redis_cluster: bool = Field(
        default=False,
        validation_alias="RECO_REDIS_CLUSTER",
        description="REDIS_URL names one node of a Redis Cluster (redis://host:port, no database number): the online "
        "store (Feast's redis_type redis_cluster), the service's reads and the events use the cluster client, which "
        "finds the other nodes.",
    )
    model_uri: str = Field(
        default="models:/reco@champion",
        validation_alias="RECO_MODEL_URI",
        description="The model the service and the batch jobs use.",
    )
    registered_name: str = Field(
        default="reco",
        validation_alias="RECO_REGISTERED_NAME",
        description="Registered model name of `reco train` and `reco promote`.",
    )
    experiment: str = Field(
        default="reco",
        min_length=1,
        validation_alias="RECO_EXPERIMENT",
        description="MLflow experiment `reco train` logs its runs to (created on first use).",
    )
    artifact_root: str | None = Field(
        default=None,
        validation_alias="RECO_ARTIFACT_ROOT",
        description="Where a new experiment keeps its runs' artifacts (models, reports) when the tracking URI is a "
        "database (sqlite, postgresql+psycopg, mysql+pymysql): a directory or an object-store URI every reader can "
        "reach (default: $RECO_HOME/mlartifacts). A tracking server (http://…) decides its own.",
    )
    materialize_workers: int | None = Field(
        default=None,
        ge=1,
        validation_alias="RECO_MATERIALIZE_WORKERS",
        description="Writer processes for big Redis loads (default: one per core, at most 2).",
    )
    redis_key_ttl_seconds: int | None = Field(
        default=None,
        gt=0,
        validation_alias="RECO_REDIS_KEY_TTL_SECONDS",
        description="Expire a customer's or item's Redis hash when not rewritten for this long (unset: never).",
    )

    recap_brand_file: Path | None = Field(
        default=None,
        validation_alias="RECO_BRAND",
        description="The shop settings of the recap emails and page: a TOML or JSON file (docs/recaps.md); "
        "`reco recaps build --brand` overrides it.",
    )
    recap_store_name: str | None = Field(
        default=None,
        min_length=1,
        validation_alias="RECO_STORE_NAME",
        description="The shop's name in recaps when no brand file names it (unset and no brand file: a placeholder "
        "that `reco recaps build` refuses outside --preview).",
    )
    recap_currency: str | None = Field(
        default=None,
        min_length=3,
        max_length=3,
        validation_alias="RECO_CURRENCY",
        description="ISO 4217 code of recap money when no brand file gives one (unset: GBP).",
    )
    recap_signing_key: SecretStr | None = Field(
        default=None,
        min_length=16,
        validation_alias="RECO_RECAP_SIGNING_KEY",
        description="Secret (at least 16 characters) signing the per-customer token of the recap's unsubscribe and "
        "view-in-browser links (HMAC-SHA256). Never logged, never written to a manifest.",
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the environment's, else a SQLite store under RECO_HOME."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str:
        """RECO_ARTIFACT_ROOT as a URI (a plain path becomes file://), else RECO_HOME/mlartifacts."""
        root = self.artifact_root
        if not root:
            return (self.home / "mlartifacts").as_uri()
        return root if "://" in root else Path(root).expanduser().resolve().as_uri()

    @property
    def feature_data_dir(self) -> Path:
        """Offline Parquet sources that `reco features build` writes for the Feast repo."""
        return self.home / OFFLINE_DIR


S = TypeVar("S", bound=Settings)


def load_settings(**overrides: object) -> Settings:
    """The settings from the environment, with `overrides` (field names) on top."""
    return build_settings(Settings, **overrides)


def build_settings(cls: type[S], **overrides: object) -> S:
    """`cls` from the environment with the given field values on top (None values dropped); a
    validation error becomes one readable sentence naming the variable."""
    fields = cls.model_fields
    given = {_alias(cls, k): v for k, v in overrides.items() if v is not None}
    unknown = [k for k in overrides if k not in fields]
    if unknown:
        raise TypeError(f"{cls.__name__} has no setting {', '.join(unknown)}")
    try:
        return cls(**given)  # type: ignore[arg-type]  # values are validated here
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RecoError(f"Invalid setting {'.'.join(map(str, first['loc']))}: {first['msg']}.") from None


def _alias(cls: type[Settings], name: str) -> str:
    alias = cls.model_fields[name].validation_alias if name in cls.model_fields else None
    return alias if isinstance(alias, str) else name


DOC_BEGIN, DOC_END = "<!-- settings:begin -->", "<!-- settings:end -->"


def settings_table(cls: type[Settings]) -> str:
    """A Markdown table of every setting of `cls`: its environment variable, default and meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in cls.model_fields.items():
        if field.default_factory is not None:
            default = "see meaning"
        elif field.default is None:
            default = "unset"
        else:
            default = f"`{field.default}`"
        rows.append(f"| `{field.validation_alias or name}` | {default} | {field.description or ''} |")
    return "\n".join(rows)


def write_settings_doc(path: str | Path, cls: type[Settings]) -> bool:
    """Replace the table between the markers of a Markdown page with `settings_table(cls)`; True when it changed."""
    page = Path(path)
    text = page.read_text()
    head, _, rest = text.partition(DOC_BEGIN)
    _, _, tail = rest.partition(DOC_END)
    updated = f"{head}{DOC_BEGIN}\n{settings_table(cls)}\n{DOC_END}{tail}"
    if updated != text:
        page.write_text(updated)
    return updated != text
