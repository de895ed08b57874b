"""Schemathesis against the live OpenAPI of a real server on the trained world: every check (its
default; schemathesis.toml beside this file turns one off for one operation, and says why), zero
findings. Bounded by its example count and seed: about 20 s on 2 cores."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.service.support import KEY_ALL, Live

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_nothing(live: Live, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    command = [
        str(schemathesis),
        "--config-file",
        str(CONFIG),
        "run",
        f"{live.url}/openapi.json",
        "--header",
        f"X-API-Key: {KEY_ALL}",
        "--max-examples",
        "30",
        "--seed",
        "24",
        "--workers",
        "1",
        "--no-color",
        "--request-timeout",
        "10",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
