"""Real processes for the fault suite and its probe: a redis-server of its own on a free port, a
shop trained and materialized by a `reco` executable, `reco serve` processes, and a steady stream of
storefront requests whose every answer is recorded.

Everything is started by PID and stopped by PID. The `reco` executable is a parameter so the same
probes measure another checkout (tests/faults/probe.py --reco /path/to/.venv/bin/reco).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

API_KEY = "fault-key"
KEYS = json.dumps({API_KEY: ["recommend", "recaps", "events", "admin"]})
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Any, *, timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:
            pass
        time.sleep(every)
    return False


class RedisServer:
    """A redis-server of its own (no persistence unless `save()` is called before a kill)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(self.dir), "--dbfilename", "dump.rdb"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_until(lambda: self.cli("PING") == "PONG", timeout=10):
            raise RuntimeError("redis-server did not start")

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip()

    def keys(self) -> int:
        return int(self.cli("DBSIZE") or 0)

    def save(self) -> None:
        self.cli("SAVE")

    def kill(self, *, keep_data: bool) -> None:
        """SIGKILL; the next start loads the last `save()` when `keep_data`, else starts empty."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        if not keep_data:
            (self.dir / "dump.rdb").unlink(missing_ok=True)

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


@dataclass
class Shop:
    """A RECO_HOME with a trained model and built features; `env` runs `reco` against it."""

    reco: str
    home: Path
    data: Path
    redis_url: str
    now: datetime
    recent: dict[str, set[str]]  # customer → items bought in the 24 h before `now`
    train_seconds: float = 30.0  # how long `reco train` took on this shop
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECO_", "MLFLOW_", "REDIS_", "PROMETHEUS"))}
        env.update(
            RECO_HOME=str(self.home),
            REDIS_URL=self.redis_url,
            RECO_API_KEYS=KEYS,
            RECO_NOW=self.now.isoformat(),
            RECO_ITEM_REFRESH_SECONDS="0",
            # A read budget a busy 2-core machine keeps: at 50 ms a few percent of reads timed out
            # beside the probes' own processes, which says nothing about a dependency.
            RECO_FEATURE_TIMEOUT_MS="200",
            OPENBLAS_NUM_THREADS="1",
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def run(self, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.reco, *args], env=self.env(**env), capture_output=True, text=True, timeout=timeout, check=False
        )

    def train(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("train", "--purchases", str(self.data / "purchases.parquet"), *extra)

    def materialize(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("features", "materialize", *extra)


def make_shop(reco: str, root: Path, redis_url: str, *, users: int = 600, items: int = 150) -> Shop:
    """Generate a store, train a champion, build and materialize its features (a minute or so)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    data, home = root / "data", root / "home"
    shop = Shop(reco, home, data, redis_url, datetime.now(UTC), {})
    steps = [
        ("data", "generate", "--out", str(data), "--users", str(users), "--items", str(items), "--years", "1"),
    ]
    for step in steps:
        _check(shop.run(*step))
    table = pq.read_table(data / "purchases.parquet", columns=["user_id", "item_id", "timestamp"])
    end = pc.max(table.column("timestamp")).as_py()
    shop.now = end + timedelta(hours=1)
    since = shop.now - timedelta(hours=24)
    for user, item, ts in zip(*(table.column(c).to_pylist() for c in ("user_id", "item_id", "timestamp")), strict=True):
        if ts >= since:
            shop.recent.setdefault(str(user), set()).add(str(item))
    started = time.monotonic()
    _check(shop.train())
    shop.train_seconds = time.monotonic() - started
    _check(
        shop.run(
            "features",
            "build",
            "--purchases",
            str(data / "purchases.parquet"),
            "--catalog",
            str(data / "catalog.parquet"),
        )
    )
    _check(shop.materialize("--full"))
    return shop


def _check(done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode != 0:
        raise RuntimeError(f"{done.args}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


class Server:
    """`reco serve` in its own process group, stopped by PID."""

    def __init__(self, shop: Shop, *, workers: int = 2, **env: str) -> None:
        self.shop, self.port = shop, free_port()
        self.log = shop.home / f"serve-{self.port}.log"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [shop.reco, "serve", "--port", str(self.port), "--workers", str(workers)],
            env=shop.env(**env),
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ready_seconds: float | None = None

    def wait_live(self, timeout: float = 90) -> None:
        if not wait_until(lambda: self.get("/health/live")[0] == 200, timeout=timeout, every=0.2):
            raise RuntimeError(f"reco serve did not start:\n{self.log.read_text()[-3000:]}")
        self.ready_seconds = time.monotonic() - self.started

    def get(self, path: str) -> tuple[int, Any]:
        return request(self.port, "GET", path)

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return request(self.port, "POST", path, body)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def request(port: int, method: str, path: str, body: Any = None, *, timeout: float = 10) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"X-API-Key": API_KEY, **({"Content-Type": "application/json"} if payload else {})}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")
    finally:
        conn.close()


@dataclass
class Answer:
    at: float  # monotonic
    status: int
    degraded: bool
    reasons: list[str]
    just_bought: bool  # offered an item the customer bought in the last 24 h
    version: str | None


class Load:
    """Buy-again requests for the customers with recent purchases, `rate` per second, every answer kept."""

    def __init__(self, server: Server, shop: Shop, *, rate: float = 40.0, threads: int = 4) -> None:
        self.server, self.shop, self.rate, self.threads = server, shop, rate, threads
        self.customers = sorted(shop.recent) or ["C0000001"]
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def __enter__(self) -> Load:
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=15)

    def _run(self, n: int) -> None:
        pause = self.threads / self.rate
        i = n
        while not self._stop.is_set():
            user = self.customers[i % len(self.customers)]
            i += self.threads
            started = time.monotonic()
            try:
                status, body = request(
                    self.server.port, "GET", f"/v1/users/{user}/recommendations?k=10&context=buy-again", timeout=5
                )
            except OSError:
                status, body = 599, {}  # refused or reset: counted with the 5xx
            if not isinstance(body, dict):
                body = {}
            items = {i["item_id"] for i in body.get("items", [])}
            answer = Answer(
                at=time.monotonic(),
                status=status,
                degraded=bool(body.get("degraded")),
                reasons=list(body.get("degraded_reasons") or []),
                just_bought=bool(items & self.shop.recent.get(user, set())),
                version=body.get("model_version"),
            )
            with self._lock:
                self.answers.append(answer)
            time.sleep(max(0.0, pause - (time.monotonic() - started)))

    def since(self, t: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.at >= t]

    def wait_clean(self, since: float, *, seconds: float = 3.0, timeout: float = 60.0) -> None:
        """Until `seconds` of whole answers (or `timeout`) after `since`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recent = self.since(max(since, time.monotonic() - seconds))
            if time.monotonic() - since >= seconds and recent and all(_whole(a) for a in recent):
                return
            time.sleep(0.2)


def _whole(answer: Answer) -> bool:
    """A whole answer: no error, nothing skipped, and nothing offered that was bought in the last 24 h
    (an answer that filters with features that are not there is not whole, flagged or not)."""
    return answer.status < 500 and not answer.degraded and not answer.just_bought


@dataclass
class Outcome:
    """One probe's row of the table."""

    probe: str
    requests: int = 0
    errors_5xx: int = 0
    degraded: int = 0
    just_bought: int = 0
    lost: int | None = None
    doubled: int | None = None
    recovery_seconds: float | None = None
    flagged_while_out: int | None = None  # of the answers while the dependency was out, how many said degraded
    answers_while_out: int | None = None
    notes: str = ""

    def row(self) -> dict[str, Any]:
        return self.__dict__.copy()


def summarize(probe: str, answers: list[Answer], *, out: float, back: float | None, end: float) -> Outcome:
    """The row of a probe: `out`..`back` the dependency was missing, recovery measured from `back`
    (the last answer that is not whole after it, minus `back`)."""
    window = [a for a in answers if out - 1 <= a.at <= end]
    outcome = Outcome(probe, requests=len(window))
    outcome.errors_5xx = sum(a.status >= 500 for a in window)
    outcome.degraded = sum(a.degraded for a in window)
    outcome.just_bought = sum(a.just_bought for a in window)
    # While out: from a second after the fault (answers read just before it may complete late) to a
    # quarter second before the return (the probe sees the return up to a poll late).
    during = [a for a in window if out + 1.0 <= a.at <= (back - 0.25 if back is not None else end)]
    outcome.answers_while_out = len(during)
    outcome.flagged_while_out = sum(a.degraded or a.status >= 500 for a in during)
    if back is not None:
        late = [a.at for a in window if a.at >= back and not _whole(a)]
        outcome.recovery_seconds = round(max(late) - back, 2) if late else 0.0
        if late and max(late) > end - 1.0:  # still not whole when the probe stopped watching
            outcome.recovery_seconds = None
            outcome.notes = f"not whole again {end - back:.0f} s after the return"
    return outcome


@contextmanager
def served(shop: Shop, **env: str) -> Iterator[Server]:
    server = Server(shop, **env)
    try:
        server.wait_live()
        yield server
    finally:
        server.stop()


def copy_home(shop: Shop, root: Path) -> Shop:
    """A copy of the shop's RECO_HOME (to break it without breaking the original)."""
    home = root / f"home-{free_port()}"
    shutil.copytree(shop.home, home, symlinks=True)
    return Shop(
        shop.reco, home, shop.data, shop.redis_url, shop.now, shop.recent, shop.train_seconds, dict(shop.extra_env)
    )
