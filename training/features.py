"""Feature store entry points: open the Feast store for these settings, apply the definitions in
`feature_repo/`, build the offline Parquet sources, push them to the online store.

Importing this module is free (no Feast, no disk): `feature_repo/` imports `source_path` from here
on `feast apply`, and the CLI imports Feast only inside its commands. Everything Feast writes lives
under `settings.home` (registry, SQLite online store, offline Parquet); the online store is SQLite
unless `REDIS_URL` is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from training.errors import RecoError
from training.settings import Settings, load_settings

if TYPE_CHECKING:
    import feast

    from training.features_build import BuildResult

PROJECT = "reco"
FEATURE_REPO = Path(__file__).resolve().parents[1] / "feature_repo"
# The definition modules of feature_repo/, in dependency order (see feature_repo/.feastignore).
REPO_MODULES = ("customers", "items", "recaps", "feature_services")

CUSTOMER_VIEWS = ("customer_profile", "customer_recent_items")
ITEM_VIEWS = ("item_stats",)
RECAP_VIEW = "customer_year_recap"
BUILT_VIEWS = CUSTOMER_VIEWS + ITEM_VIEWS  # written by `reco features build`
ALL_VIEWS = (*BUILT_VIEWS, RECAP_VIEW)  # RECAP_VIEW is written by `reco recaps build`
EVENT_TIMESTAMP = "event_timestamp"

# Serving reads fail fast (PITFALLS: redis-py default is no timeout and 3 retries); bulk writes
# send big pipelines, so materialization uses a longer socket timeout (still no retries).
SERVING_TIMEOUT_S = 0.1
BULK_TIMEOUT_S = 30.0


def source_path(view: str, settings: Settings | None = None) -> str:
    """Offline Parquet file of a feature view: `<feature_data_dir>/<view>.parquet`."""
    return str((settings or load_settings()).feature_data_dir / f"{view}.parquet")


def feast_dir(settings: Settings) -> Path:
    """Directory under RECO_HOME holding the Feast registry and the SQLite online store."""
    return settings.home / "feast"


def redis_connection_string(redis_url: str, *, socket_timeout: float = SERVING_TIMEOUT_S) -> str:
    """Translate `redis://[user:pass@]host:port/db` into Feast's `host:port,db=N,...` form,
    with short timeouts and no retries (a dead Redis costs one timeout, not 7.5 s)."""
    parts = urlsplit(redis_url if "://" in redis_url else f"redis://{redis_url}")
    if parts.scheme not in ("redis", "rediss"):
        raise RecoError(f"REDIS_URL must start with redis:// or rediss://, got {parts.scheme}://.")
    try:
        port = parts.port or 6379
    except ValueError:
        raise RecoError(f"REDIS_URL has an invalid port: {redis_url!r}.") from None
    db_text = parts.path.strip("/") or parse_qs(parts.query).get("db", ["0"])[0]
    if not db_text.isdigit():
        raise RecoError(f"REDIS_URL database must be a number, got {db_text!r}.")
    options = [
        f"{parts.hostname or '127.0.0.1'}:{port}",
        f"db={int(db_text)}",
        f"socket_timeout={socket_timeout}",
        f"socket_connect_timeout={min(socket_timeout, 1.0)}",
        "retry=null",
    ]
    for name, value in (("username", parts.username), ("password", parts.password)):
        if value:
            value = unquote(value)
            if "," in value or "=" in value:
                raise RecoError(f"REDIS_URL {name} must not contain ',' or '=' (Feast's connection string format).")
            options.append(f'{name}="{value}"' if value.isdigit() else f"{name}={value}")
    if parts.scheme == "rediss":
        options.append("ssl=true")
    return ",".join(options)


def repo_config(
    settings: Settings,
    *,
    socket_timeout: float = SERVING_TIMEOUT_S,
    key_ttl_seconds: int | None = None,
    skip_dedup: bool = False,
) -> feast.RepoConfig:
    """The Feast config for these settings: file registry and SQLite online store under RECO_HOME,
    Redis online store when REDIS_URL is set."""
    from feast import RepoConfig

    online_store: dict[str, Any]
    if settings.redis_url:
        online_store = {
            # Feast's Redis store with a faster batch write, same layout (training/features_redis.py).
            "type": "training.features_redis.FastRedisOnlineStore",
            "connection_string": redis_connection_string(settings.redis_url, socket_timeout=socket_timeout),
            "key_ttl_seconds": key_ttl_seconds if key_ttl_seconds is not None else _env_key_ttl(),
            "skip_dedup": skip_dedup,
        }
    else:
        online_store = {"type": "sqlite", "path": str(feast_dir(settings) / "online_store.db")}
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry={"registry_type": "file", "path": str(feast_dir(settings) / "registry.db"), "cache_ttl_seconds": 60},
        online_store=online_store,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=FEATURE_REPO,
    )


def _env_key_ttl() -> int | None:
    """`RECO_REDIS_KEY_TTL_SECONDS`: expire a customer's/item's Redis hash when not rewritten for that long."""
    raw = os.environ.get("RECO_REDIS_KEY_TTL_SECONDS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise RecoError(f"RECO_REDIS_KEY_TTL_SECONDS must be a positive number of seconds, got {raw!r}.")
    return int(raw)


def online_store_kind(config: feast.RepoConfig) -> str:
    """ "redis" or "sqlite": which online store a config points at."""
    return "redis" if "redis" in config.online_store.type.lower() else config.online_store.type


def open_store(
    settings: Settings,
    *,
    socket_timeout: float = SERVING_TIMEOUT_S,
    key_ttl_seconds: int | None = None,
    skip_dedup: bool = False,
) -> feast.FeatureStore:
    """A Feast FeatureStore on this RECO_HOME's registry (SQLite online store, or Redis when
    REDIS_URL is set). Does not apply definitions: `materialize` and `apply_definitions` do."""
    from feast import FeatureStore

    feast_dir(settings).mkdir(parents=True, exist_ok=True)
    config = repo_config(
        settings, socket_timeout=socket_timeout, key_ttl_seconds=key_ttl_seconds, skip_dedup=skip_dedup
    )
    return FeatureStore(config=config, repo_path=str(FEATURE_REPO))


def repo_objects(settings: Settings) -> list[Any]:
    """Entities, feature views and services defined in feature_repo/, with sources under this RECO_HOME."""
    import importlib
    import sys

    from feast import Entity, FeatureService, FeatureView, FileSource

    added = str(FEATURE_REPO) not in sys.path
    if added:
        sys.path.insert(0, str(FEATURE_REPO))
    try:
        modules = [importlib.import_module(name) for name in REPO_MODULES]
    finally:
        if added:
            sys.path.remove(str(FEATURE_REPO))
    objects: list[Any] = []
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Entity | FeatureView | FeatureService) and not any(value is o for o in objects):
                objects.append(value)
    for obj in objects:
        # The modules are imported once per process; point their sources at *this* home.
        if isinstance(obj, FeatureView) and isinstance(obj.batch_source, FileSource):
            obj.batch_source.file_options.uri = source_path(obj.name, settings)
    return objects


def apply_definitions(store: feast.FeatureStore, settings: Settings) -> None:
    """`feast apply` in Python: register feature_repo/'s definitions in this home's registry."""
    store.apply(repo_objects(settings))


@dataclass(frozen=True)
class ViewResult:
    """What materialization did for one feature view."""

    view: str
    rows_read: int
    rows_written: int
    seconds: float
    skipped: str | None = None  # why nothing was read (no source file, nothing new)

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class MaterializeResult:
    """Outcome of `materialize`: the store written to and per-view counts."""

    online_store: str  # "sqlite" or "redis"
    full: bool
    views: list[ViewResult] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        return sum(v.rows_written for v in self.views)

    @property
    def seconds(self) -> float:
        return sum(v.seconds for v in self.views)

    def format_text(self) -> str:
        lines = [f"materialized to {self.online_store} ({'full' if self.full else 'incremental'}):"]
        for v in self.views:
            if v.skipped:
                lines.append(f"  {v.view:<24} skipped: {v.skipped}")
            else:
                lines.append(
                    f"  {v.view:<24} {v.rows_written:>10,} rows in {v.seconds:6.1f} s ({v.rows_per_second:,.0f} rows/s)"
                )
        return "\n".join(lines)


def materialize(
    *, settings: Settings, views: list[str] | None = None, full: bool = False, progress: bool = False
) -> MaterializeResult:
    """Push offline feature rows to the online store through Feast's `online_write_batch`.

    Incremental by default: only rows whose event_timestamp is newer than what this online store
    last received (`reco features build` keeps the timestamp of unchanged rows). `full` rewrites
    every row (use after the online store was emptied). `views` defaults to every view whose
    source Parquet exists.
    """
    from training.features_online import materialize_views

    return materialize_views(settings=settings, views=views, full=full, progress=progress)


def build(*, settings: Settings, purchases: Path, catalog: Path | None = None) -> BuildResult:
    """Compute the offline Parquet sources from a purchase file (and catalog)."""
    from training.features_build import build_features

    return build_features(settings=settings, purchases=purchases, catalog=catalog)
