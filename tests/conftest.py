"""Shared fixtures: a small synthetic store (made once per test run), access to the real Redis, and a
local 3-master Redis Cluster."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from training.core import columns as col
from training.data.synthetic import generate_store

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-year synthetic store of 1,500 customers and 400 items (about a second to make)."""
    out = tmp_path_factory.mktemp("store")
    generate_store(out, users=1_500, items=400, years=2, seed=7)
    return out


def redis_url_or_skip(db: int) -> str:
    """URL of the real Redis on loopback with a dedicated DB; skip when it does not answer,
    fail instead when CI=true (there the Redis tests must run)."""
    import redis

    # Two checkouts testing at once keep apart with RECO_TEST_REDIS_DB_OFFSET (e.g. -6: DBs 6 and 8).
    db += int(os.environ.get("RECO_TEST_REDIS_DB_OFFSET", "0"))
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.exceptions.ConnectionError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but Redis does not answer at {REDIS_HOST}:{REDIS_PORT} ({exc})")
        pytest.skip(f"Redis does not answer at {REDIS_HOST}:{REDIS_PORT}; start redis-server to run this test")
    return url


def _skip_or_fail(reason: str) -> None:
    """Skip a test that needs a local backend; fail instead when CI=true (there it must run)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class RedisCluster:
    """A running local Redis Cluster: its masters' ports on 127.0.0.1."""

    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        """REDIS_URL of the cluster (one node; the cluster client finds the others)."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    def flush(self) -> None:
        """Empty every master."""
        import redis

        for port in self.ports:
            with redis.Redis(port=port) as node:
                node.flushall()


def _free_cluster_ports(n: int) -> list[int]:
    """n free ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    with ExitStack() as held:
        while len(ports) < n:
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port >= 55_000:
                continue
            try:
                with socket.socket() as bus:
                    bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
            ports.append(port)
    return ports


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster on loopback, for the whole test run: three `redis-server --cluster-enabled
    yes` processes (no persistence) joined by `redis-cli --cluster create`, stopped by PID and their
    directories removed afterwards. Skips without redis-server, fails instead when CI=true."""
    import redis

    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        _skip_or_fail("redis-server and redis-cli are not installed (apt-get install redis-server)")
    root = tmp_path_factory.mktemp("redis-cluster")
    ports = _free_cluster_ports(3)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            (root / str(port)).mkdir()
            command = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root / str(port))]
            command += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--save", ""]
            command += ["--appendonly", "no"]
            processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 20
        for port in ports:
            while True:
                try:
                    with redis.Redis(port=port, socket_connect_timeout=0.2) as node:
                        node.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on port {port} did not start") from None
                    time.sleep(0.05)
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in ports:  # every node agrees the slots are covered
            while redis.Redis(port=port).execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                if time.monotonic() > deadline + 40:
                    raise RuntimeError("the Redis Cluster did not become ready")
                time.sleep(0.1)
        yield RedisCluster(tuple(ports))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def messy_store(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`small_store` with the contract's optional gaps the generator never makes: about one line in
    nine without an order_id (an order on its own) and one in thirteen without a price."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = tmp_path_factory.mktemp("messy_store")
    table = pq.read_table(small_store / "purchases.parquet")
    line = np.arange(table.num_rows)
    for name, every, offset in (("order_id", 9, 4), ("price", 13, 6)):
        column = table.column(name)
        gapped = pc.if_else(pa.array(line % every == offset), pa.nulls(table.num_rows, column.type), column)
        table = table.set_column(table.schema.get_field_index(name), name, gapped)
    pq.write_table(table, out / "purchases.parquet")
    for extra in ("catalog.parquet", "recipes.json"):
        (out / extra).write_bytes((small_store / extra).read_bytes())
    return out


def purchase_lines(rows: list[tuple], *, price: float | None = None) -> pa.Table:
    """Known-answer purchases: (user, item, time[, order_id]) rows → a contract table, quantity 1 and
    `price` on every line (no order_id column values when the rows have none)."""
    from training.data.contract import PURCHASE_SCHEMA

    n = len(rows)
    return pa.table(
        {
            col.USER_ID: [r[0] for r in rows],
            col.ITEM_ID: [r[1] for r in rows],
            col.TIMESTAMP: pa.array([r[2] for r in rows], type=pa.timestamp("us", tz="UTC")),
            col.QUANTITY: pa.array([1] * n, type=pa.int32()),
            col.PRICE: pa.array([price] * n, type=pa.float64()),
            col.ORDER_ID: pa.array([r[3] if len(r) > 3 else None for r in rows], type=pa.string()),
        },
        schema=PURCHASE_SCHEMA,
    )
