"""The Feast store for these settings: the same definitions (feature_repo/) and a registry under
RECO_HOME, with the online store chosen from the environment: SQLite unless REDIS_URL is set.

Importing this module is free (no Feast, no disk): Feast is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from training.core.errors import RecoError
from training.features.names import PROJECT, offline_source
from training.settings import Settings

if TYPE_CHECKING:
    import feast

FEATURE_REPO = Path(__file__).resolve().parents[2] / "feature_repo"
STORE_TYPE = "training.features.redis_store.FastRedisOnlineStore"
# The definition modules of feature_repo/, in dependency order (see feature_repo/.feastignore).
REPO_MODULES = ("customers", "items", "recaps", "feature_services")

# Serving reads fail fast (PITFALLS: redis-py default is no timeout and 3 retries); bulk writes
# send big pipelines, so materialization uses a longer socket timeout (still no retries).
SERVING_TIMEOUT_S = 0.1
BULK_TIMEOUT_S = 30.0


def source_path(view: str, settings: Settings) -> Path:
    """Offline Parquet file of a feature view under this RECO_HOME."""
    return Path(offline_source(view, settings.home))


def feast_dir(settings: Settings) -> Path:
    """Directory under RECO_HOME holding the Feast registry and the SQLite online store."""
    return settings.home / "feast"


def redis_connection_string(redis_url: str, *, socket_timeout: float = SERVING_TIMEOUT_S, cluster: bool = False) -> str:
    """Translate `redis://[user:pass@]host:port/db` into Feast's `host:port,db=N,...` form,
    with short timeouts and no retries (a dead Redis costs one timeout, not 7.5 s). For a Redis
    Cluster (RECO_REDIS_CLUSTER) the URL names one node and no database (a cluster has only 0)."""
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
    if cluster and int(db_text) != 0:
        raise RecoError(f"A Redis Cluster has only database 0: drop /{db_text} from REDIS_URL.")
    options = [
        f"{parts.hostname or '127.0.0.1'}:{port}",
        *([] if cluster else [f"db={int(db_text)}"]),
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
            # Feast's Redis store with a faster batch write, same layout (training/features/redis_store.py).
            "type": STORE_TYPE,
            "connection_string": redis_connection_string(
                settings.redis_url, socket_timeout=socket_timeout, cluster=settings.redis_cluster
            ),
            "redis_type": "redis_cluster" if settings.redis_cluster else "redis",
            "key_ttl_seconds": key_ttl_seconds if key_ttl_seconds is not None else settings.redis_key_ttl_seconds,
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


def cli_environment(settings: Settings) -> dict[str, str]:
    """The variables feature_repo/feature_store.yaml reads, for the stock `feast` CLI: RECO_HOME and
    RECO_FEAST_ONLINE_STORE, the online store these settings choose (SQLite, or Redis when REDIS_URL
    is set) as Feast's own store type and a YAML (JSON) mapping, with bulk-write timeouts."""
    import json

    online = repo_config(settings, socket_timeout=BULK_TIMEOUT_S).online_store
    store: dict[str, Any]
    if settings.redis_url:
        redis_type = getattr(online, "redis_type", "redis")
        store = {
            "type": "redis",  # the stock store: the same layout as ours (tests compare the bytes)
            "connection_string": online.connection_string,
            "redis_type": getattr(redis_type, "value", redis_type),
        }
        if online.key_ttl_seconds:
            store["key_ttl_seconds"] = online.key_ttl_seconds
    else:
        store = {"type": "sqlite", "path": online.path}
    return {"RECO_HOME": str(settings.home), "RECO_FEAST_ONLINE_STORE": json.dumps(store)}


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

    # Imported as `feast apply` imports them: by module name, with the repo directory on the path
    # (the definition files import each other by name).
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
            obj.batch_source.file_options.uri = str(source_path(obj.name, settings))
    return objects


def write_missing_sources(settings: Settings) -> list[str]:
    """An empty offline source (the view's columns, no rows) for each view that has none yet (recaps
    before the first `reco recaps build`, candidates before the first `reco candidates build`), so
    that the stock `feast materialize` finds nothing there rather than crashing on a missing file.
    Returns the views given one."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq
    from feast import Entity, FeatureView
    from feast.type_map import feast_value_type_to_pa

    from training.features.names import EVENT_TIMESTAMP

    objects = repo_objects(settings)
    keys = {e.name: (e.join_key, e.value_type) for e in objects if isinstance(e, Entity)}
    written = []
    for view in objects:
        path = source_path(view.name, settings) if isinstance(view, FeatureView) else None
        if path is None or path.exists():
            continue
        schema = pa.schema(
            [
                *(pa.field(keys[e][0], feast_value_type_to_pa(keys[e][1])) for e in view.entities),
                *(pa.field(f.name, feast_value_type_to_pa(f.dtype.to_value_type())) for f in view.features),
                pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
            ]
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pq.write_table(schema.empty_table(), tmp)
        os.replace(tmp, path)
        written.append(view.name)
    return written


def apply_definitions(store: feast.FeatureStore, settings: Settings) -> None:
    """`feast apply` in Python: register feature_repo/'s definitions in this home's registry."""
    store.apply(repo_objects(settings))
