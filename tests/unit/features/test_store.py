"""The Feast store for the settings: the REDIS_URL translation and the repo as the stock CLI sees it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.core.errors import RecoError
from training.features.store import FEATURE_REPO, redis_connection_string


def test_redis_url_becomes_a_fail_fast_connection_string() -> None:
    assert redis_connection_string("redis://127.0.0.1:6379/14") == (
        "127.0.0.1:6379,db=14,socket_timeout=0.1,socket_connect_timeout=0.1,retry=null"
    )
    assert redis_connection_string("rediss://u:s3cret@cache:6380", socket_timeout=5).endswith(
        "username=u,password=s3cret,ssl=true"
    )
    with pytest.raises(RecoError, match="database must be a number"):
        redis_connection_string("redis://h:1/x")


def test_a_cluster_url_names_one_node_and_no_database() -> None:
    from training.features.store import repo_config
    from training.settings import load_settings

    assert redis_connection_string("redis://node-1:7000", cluster=True) == (
        "node-1:7000,socket_timeout=0.1,socket_connect_timeout=0.1,retry=null"
    )
    with pytest.raises(RecoError, match="only database 0"):
        redis_connection_string("redis://node-1:7000/3", cluster=True)
    settings = load_settings(home="/tmp/reco-unused", redis_url="redis://node-1:7000", redis_cluster=True)
    assert repo_config(settings).online_store.redis_type == "redis_cluster"
    assert repo_config(load_settings(redis_url="redis://h:1/0")).online_store.redis_type == "redis"


def test_plain_feast_apply_accepts_the_repo(tmp_path: Path) -> None:
    """`feast apply` from inside feature_repo/ with what `reco features env` exports."""
    from training.features.store import cli_environment
    from training.settings import load_settings

    env = {**os.environ, **cli_environment(load_settings(home=tmp_path))}
    env.pop("REDIS_URL", None)
    feast = Path(sys.executable).with_name("feast")
    done = subprocess.run([str(feast), "apply"], cwd=FEATURE_REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "feast" / "registry.db").exists()
    assert not list(FEATURE_REPO.glob("*.db")), "Feast state must live under RECO_HOME, not in the repo"
