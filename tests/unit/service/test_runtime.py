"""`reco serve`'s workers start with -O only when the -O bytecode is there to start from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from service import runtime


def test_the_install_compiled_the_bytecode_the_workers_start_from() -> None:
    # make install (and the Dockerfile) compile it; without it optimize_workers would do nothing and
    # each worker would spend seconds more in Feast's import.
    assert runtime.optimized_bytecode_present()
    spec = importlib.util.find_spec("service.app")
    assert spec is not None and spec.origin is not None
    assert Path(importlib.util.cache_from_source(spec.origin, optimization=1)).exists()


def test_workers_are_optimized_unless_the_environment_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    # Set, then removed: monkeypatch records the variable as it was, so the "1" optimize_workers
    # writes does not outlive the test (a later test's subprocess would skip its asserts at -O).
    monkeypatch.setenv("PYTHONOPTIMIZE", "")
    monkeypatch.delenv("PYTHONOPTIMIZE")
    assert runtime.optimize_workers()
    assert runtime.os.environ["PYTHONOPTIMIZE"] == "1"
    monkeypatch.setenv("PYTHONOPTIMIZE", "0")
    assert not runtime.optimize_workers()
    assert runtime.os.environ["PYTHONOPTIMIZE"] == "0"


def test_without_the_bytecode_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # Compiling every module from source at each start would be slower than no -O at all.
    monkeypatch.delenv("PYTHONOPTIMIZE", raising=False)
    monkeypatch.setattr(runtime, "optimized_bytecode_present", lambda: False)
    assert not runtime.optimize_workers()
    assert "PYTHONOPTIMIZE" not in runtime.os.environ
