"""The tracking URI, checked before a command does any work: a URI that cannot work stops it with one
sentence (exit 2) instead of a traceback after minutes of fitting.

    sqlite:///PATH                          its directory must be creatable
    postgresql+psycopg://USER@HOST/DB       the driver named and installed (`pip install 'reco[postgres]'`),
    mysql+pymysql://…                       the database answering within the timeout
    http(s)://HOST:PORT                     a tracking server answering within the timeout
    databricks…                             left to MLflow

A plain path or file: URI is refused (MLflow 3.17 refuses file stores), and so is a database URI
without a driver (SQLAlchemy 2 then picks psycopg2, which is not installed).
"""

from __future__ import annotations

import importlib.util
import re
import urllib.error
import urllib.request
from pathlib import Path

from training.core.errors import RecoError

TIMEOUT_SECONDS = 5
# The Python module of each SQLAlchemy driver name we can check for.
DRIVER_MODULES = {
    "psycopg": "psycopg",
    "psycopg2": "psycopg2",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "pymysql": "pymysql",
    "mysqldb": "MySQLdb",
    "mysqlconnector": "mysql.connector",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}
DATABASES = {"postgresql": "postgres", "mysql": "mysql", "mssql": "mssql"}  # scheme → the reco extra to install


class TrackingUnavailable(RecoError):
    """The MLflow tracking URI cannot be used: unknown scheme, missing driver, unreachable store."""


def redacted(uri: str) -> str:
    """The URI with any password replaced by ***."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", uri)


def check_tracking_uri(uri: str, *, timeout: float = TIMEOUT_SECONDS) -> None:
    """Raise TrackingUnavailable (one sentence) unless the tracking store at `uri` can be used."""
    shown = redacted(uri)
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme == "file":
        raise TrackingUnavailable(
            f"MLFLOW_TRACKING_URI {shown!r} is a file store, which MLflow 3.17 refuses: use sqlite:///PATH, "
            "a database (postgresql+psycopg://…) or a tracking server (http://…)."
        )
    base, _, driver = scheme.partition("+")
    if base == "sqlite":
        path = Path(rest[1:]) if rest.startswith("/") else Path(rest)
        try:
            path.expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingUnavailable(
                f"MLFLOW_TRACKING_URI {shown!r}: cannot create {path.parent} ({exc.strerror})."
            ) from None
    elif base in DATABASES or base == "postgres":
        _check_database(uri, base=base, driver=driver, shown=shown, timeout=timeout)
    elif base in ("http", "https"):
        _check_server(uri, shown=shown, timeout=timeout)
    elif not base.startswith("databricks"):
        raise TrackingUnavailable(
            f"MLFLOW_TRACKING_URI {shown!r} has an unknown scheme {scheme!r}: use sqlite:///PATH, "
            "postgresql+psycopg://…, mysql+pymysql://… or http(s)://…."
        )


def _check_database(uri: str, *, base: str, driver: str, shown: str, timeout: float) -> None:
    if base == "postgres" or not driver:
        example = {"mysql": "mysql+pymysql", "mssql": "mssql+pyodbc"}.get(base, "postgresql+psycopg")
        raise TrackingUnavailable(
            f"MLFLOW_TRACKING_URI {shown!r} names no database driver, which SQLAlchemy 2 needs: "
            f"write {example}://… (pip install 'reco[{DATABASES.get(base, 'postgres')}]')."
        )
    module = DRIVER_MODULES.get(driver, driver)
    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise TrackingUnavailable(
            f"MLFLOW_TRACKING_URI {shown!r} needs the {driver} driver, which is not installed "
            f"(pip install 'reco[{DATABASES[base]}]')."
        )
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": int(max(timeout, 1))})
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as exc:  # the driver's own errors: refused, unknown database, authentication
        raise TrackingUnavailable(f"Cannot use the tracking database {shown} ({_first_line(exc)}).") from None


def _check_server(uri: str, *, shown: str, timeout: float) -> None:
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answers (an auth proxy or an older server without /health)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingUnavailable(f"The tracking server {shown} does not answer ({reason}).") from None


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return redacted(text)[:200]
