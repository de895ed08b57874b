"""The integration tests' own backends beside tests/conftest.py's: a PostgreSQL database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    """A new, empty database on the PostgreSQL at 127.0.0.1:5432 (trust auth, user postgres) as a
    SQLAlchemy URI with the psycopg driver, dropped afterwards. Skips when PostgreSQL or psycopg is
    missing, fails instead when CI=true (there the PostgreSQL tests must run)."""
    try:
        import psycopg

        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except Exception as exc:  # ImportError, or the server does not answer
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but PostgreSQL at 127.0.0.1:5432 cannot be used ({exc})")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 cannot be used ({exc}); install reco[postgres] and start it")
    name = f"reco_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
