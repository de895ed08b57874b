"""The fault probes: each breaks one dependency of a running shop, measures what the storefront got,
and returns its row of the table (harness.Outcome). tests/faults/test_faults.py asserts on the rows;
tests/faults/probe.py prints them for any checkout.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.faults.harness import (
    Load,
    Outcome,
    RedisServer,
    Server,
    Shop,
    copy_home,
    request,
    summarize,
    wait_until,
)

DOWN_SECONDS = 3.0


def redis_killed_then_back_with_data(server: Server, shop: Shop, redis: RedisServer) -> Outcome:
    """Redis SIGKILLed, down DOWN_SECONDS, restarted from its last snapshot."""
    with Load(server, shop) as load:
        time.sleep(2)
        redis.save()
        out = time.monotonic()
        redis.kill(keep_data=True)
        time.sleep(DOWN_SECONDS)
        redis.start()
        back = time.monotonic()
        load.wait_clean(back, timeout=45)
    return summarize("redis killed, restarted with data", load.answers, out=out, back=back, end=time.monotonic())


def redis_paused(server: Server, shop: Shop, redis: RedisServer) -> Outcome:
    """Redis stopped (SIGSTOP) for DOWN_SECONDS: it accepts connections and answers nothing."""
    with Load(server, shop) as load:
        time.sleep(2)
        out = time.monotonic()
        redis.pause()
        time.sleep(DOWN_SECONDS)
        redis.resume()
        back = time.monotonic()
        load.wait_clean(back, timeout=45)
    return summarize("redis paused (SIGSTOP)", load.answers, out=out, back=back, end=time.monotonic())


def redis_emptied(server: Server, shop: Shop, redis: RedisServer, *, how: str) -> Outcome:
    """Redis emptied (`flush`: FLUSHDB; `restart`: killed and restarted without data), then the
    operator runs the documented `reco features materialize`; the features are back when it ends."""
    with Load(server, shop) as load:
        time.sleep(2)
        out = time.monotonic()
        if how == "flush":
            redis.cli("FLUSHDB")
        else:
            redis.kill(keep_data=False)
            redis.start()
        time.sleep(DOWN_SECONDS)
        # The store is whole again when a run leaves its marker (the process exits a moment later);
        # a run that writes no marker: when it ends.
        run = subprocess.Popen(
            [shop.reco, "features", "materialize"], env=shop.env(), stdout=subprocess.PIPE, text=True
        )
        wait_until(lambda: run.poll() is not None or _marked(redis), timeout=300, every=0.05)
        marked, back = _marked(redis), time.monotonic()
        output, _ = run.communicate(timeout=300)
        back = back if marked else time.monotonic()
        load.wait_clean(back, timeout=20)
    name = "redis flushed" if how == "flush" else "redis restarted empty"
    outcome = summarize(name, load.answers, out=out, back=back, end=time.monotonic())
    written = [line.strip() for line in output.splitlines() if "customer_profile" in line]
    written_note = f"materialize: {' '.join(written[0].split()) if written else output.strip()[-80:]}"
    outcome.notes = f"{outcome.notes}; {written_note}" if outcome.notes else written_note
    if not _marked(redis):
        shop.materialize("--full")  # leave the store whole for the next probe, whatever the code under test did
    return outcome


def _marked(redis: RedisServer) -> bool:
    """The marker of a complete materialization is in Redis (training.features.online_state)."""
    return redis.cli("HEXISTS", "reco:reco:state", "materialized") == "1"


def reload_reaches_every_worker(server: Server, shop: Shop) -> Outcome:
    """A new champion, one POST /admin/reload (alias polling off): how long until every answer is from it."""
    before = server.get("/v1/users/C0000001/recommendations?k=5")[1].get("model_version")
    trained = shop.train("--promote", "always")
    if trained.returncode != 0:
        raise RuntimeError(trained.stderr[-2000:])
    new = json.loads(trained.stdout.strip().splitlines()[-1])["version"]
    with Load(server, shop, rate=30) as load:
        time.sleep(1)
        status, _ = server.post("/admin/reload")
        back = time.monotonic()
        deadline = back + 30
        while time.monotonic() < deadline:
            recent = load.since(max(back, time.monotonic() - 2))
            if time.monotonic() - back > 2 and recent and all(a.version == str(new) for a in recent):
                break
            time.sleep(0.2)
        end = time.monotonic()
    after = load.since(back)
    outcome = Outcome("POST /admin/reload, 2 workers", requests=len(after))
    outcome.errors_5xx = sum(a.status >= 500 for a in after)
    outcome.degraded = sum(a.degraded for a in after)
    stale = [a.at for a in after if a.version != str(new)]
    outcome.recovery_seconds = round(max(stale) - back, 2) if stale else 0.0
    if stale and max(stale) > end - 1:
        outcome.recovery_seconds = None  # never converged within the 30 s watched
    outcome.notes = f"v{before} → v{new}; reload {status}; {len(stale)} answers from the old version after it"
    return outcome


def mlflow_missing_at_start(shop: Shop, root: Path) -> Outcome:
    """The SQLite tracking file is gone when the service starts."""
    broken = copy_home(shop, root)
    (broken.home / "mlflow.db").unlink()
    return _start_without_registry(broken, "mlflow store missing at start", {})


def mlflow_hung_at_start(shop: Shop, root: Path) -> Outcome:
    """The tracking server accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    try:
        broken = copy_home(shop, root)
        return _start_without_registry(
            broken, "mlflow server hung at start", {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
        )
    finally:
        listener.close()


def _start_without_registry(shop: Shop, name: str, env: dict[str, str]) -> Outcome:
    server = Server(shop, workers=1, **env)
    try:
        server.wait_live(timeout=120)
        started = server.ready_seconds or 0.0
        ready_status, ready = server.get("/health/ready")
        model = ready.get("model", {}) if isinstance(ready, dict) else {}
        outcome = Outcome(name)
        sources = set()
        for user in sorted(shop.recent)[:20]:
            status, body = server.get(f"/v1/users/{user}/recommendations?k=10")
            outcome.requests += 1
            outcome.errors_5xx += status >= 500
            outcome.degraded += bool(isinstance(body, dict) and body.get("degraded"))
            sources.add(body.get("source") if isinstance(body, dict) else None)
        origin = model.get("source", "registry" if model.get("loaded") else "nowhere")
        outcome.notes = (
            f"live after {started:.1f} s; /health/ready {ready_status}, model {model.get('version')} "
            f"from {origin}; sources {sorted(map(str, sources))}"
        )
        return outcome
    finally:
        server.stop()


def train_killed(shop: Shop, *, runs: int = 2, seed: int = 0) -> Outcome:
    """`reco train` SIGKILLed at random points (and once SIGTERMed, once killed right after the
    version is registered, once right after @champion moved to it), then run to the end, promoting
    (so @champion moves on from the killed run's version): the registry must hold no run RUNNING
    and no version without tags or whose training did not finish but that nobody chose (no alias)."""
    rng = random.Random(seed)
    outcome = Outcome("reco train killed, re-run")
    length = shop.train_seconds
    for n in range(runs):
        running = _running_runs(shop)
        proc = subprocess.Popen(
            [shop.reco, "train", "--purchases", str(shop.data / "purchases.parquet")],
            env=shop.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if n == 0:  # SIGTERM once its run is open: the handler must end it
            wait_until(lambda before=running: _running_runs(shop) > before, timeout=length * 2, every=0.1)
            proc.send_signal(signal.SIGTERM)
        else:  # SIGKILL anywhere
            time.sleep(rng.uniform(0.3, 0.9) * length)
            proc.kill()
        proc.wait()
    _killed_after(shop, "register")
    _killed_after(shop, "promote", "--promote", "always")
    done = shop.train("--promote", "always")
    outcome.requests = runs + 3
    outcome.errors_5xx = int(done.returncode != 0)
    outcome.notes = registry_report(shop)
    return outcome


def _running_runs(shop: Shop) -> int:
    """Runs RUNNING in the shop's SQLite tracking store (read directly: no MLflow import per look)."""
    import sqlite3

    con = sqlite3.connect(f"file:{shop.home / 'mlflow.db'}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone()[0])
    finally:
        con.close()


KILL_AFTER = """
import os, signal, sys
from training.registry import publishing
step = getattr(publishing, sys.argv[1])
def step_then_die(*args, **kwargs):
    step(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
setattr(publishing, sys.argv[1], step_then_die)
from training.cli import app
sys.argv = ["reco", *sys.argv[2:]]
app()
"""


def _killed_after(shop: Shop, step: str, *extra: str) -> None:
    """A real SIGKILL at a worst moment: right after `training.registry.publishing.<step>` (the
    version registered, its alias not yet moved; or the alias moved, the run not yet ended)."""
    python = str(Path(shop.reco).parent / "python")
    subprocess.run(
        [python, "-c", KILL_AFTER, step, "train", "--purchases", str(shop.data / "purchases.parquet"), *extra],
        env=shop.env(),
        capture_output=True,
        timeout=600,
        check=False,
    )


def registry_report(shop: Shop) -> str:
    """Runs left RUNNING, versions without tags, unaliased versions of unfinished runs (debris)."""
    script = """
import json, sys
from mlflow import MlflowClient
c = MlflowClient(tracking_uri=sys.argv[1], registry_uri=sys.argv[1])
runs = [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])]
aliased = set(c.get_registered_model("reco").aliases.values())
versions = c.search_model_versions("name = 'reco'")
status = {r.info.run_id: r.info.status for r in runs}
print(json.dumps({
  "running": sum(s == "RUNNING" for s in status.values()),
  "killed_or_failed": sum(s in ("KILLED", "FAILED") for s in status.values()),
  "versions": len(versions),
  "untagged": sum("gate.decision" not in v.tags for v in versions),
  "debris": sum(
    str(v.version) not in {str(a) for a in aliased} and status.get(v.run_id) != "FINISHED" for v in versions
  ),
}))
"""
    python = str(Path(shop.reco).parent / "python")
    done = subprocess.run(
        [python, "-c", script, f"sqlite:///{shop.home / 'mlflow.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"},
    )
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]


def materialize_killed(shop: Shop, redis: RedisServer, *, seed: int = 0) -> Outcome:
    """On an emptied Redis, `reco features materialize --full` SIGKILLed at a random point, then the
    plain `reco features materialize` an operator runs next: every key must be back."""
    rng = random.Random(seed)
    complete = redis.keys()
    redis.cli("FLUSHDB")
    proc = subprocess.Popen(
        [shop.reco, "features", "materialize", "--full"],
        env=shop.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: redis.keys() > 0, timeout=60, every=0.005)  # the first batch is in
    time.sleep(rng.uniform(0.0, 0.02))
    proc.kill()
    proc.wait()
    partial = redis.keys()
    again = shop.materialize()
    outcome = Outcome("reco features materialize --full killed, re-run")
    outcome.requests = 2
    outcome.errors_5xx = int(again.returncode != 0)
    outcome.notes = f"keys: complete {complete}, after the kill {partial}, after the re-run {redis.keys()}"
    outcome.lost = max(0, complete - redis.keys())
    if redis.keys() < complete:
        shop.materialize("--full")
    return outcome


def server_killed_while_events_posted(shop: Shop, *, batches: int = 60, size: int = 50, seed: int = 0) -> Outcome:
    """Events posted in batches while the server is SIGKILLed and restarted; the client re-posts every
    batch it got no answer for (what a storefront's retry does). Then `reco events export`: each
    acknowledged event exactly once."""
    server = Server(shop, workers=2)
    server.wait_live()
    acked: set[str] = set()
    posted = 0
    errors = 0
    stamp = shop.now.isoformat()
    pending = [
        [
            {"event_id": f"ev-{b}-{i}", "user_id": f"C{b:07d}", "item_id": "P000001", "timestamp": stamp}
            for i in range(size)
        ]
        for b in range(batches)
    ]
    killed = threading.Event()
    rng = random.Random(seed)

    def killer() -> None:
        time.sleep(rng.uniform(0.0, 0.1))  # while the next batches are in flight
        server.kill()
        killed.set()

    restarted: Server | None = None
    target = server
    while pending:
        batch = pending[0]
        try:
            status, _ = request(target.port, "POST", "/v1/events", {"events": batch}, timeout=10)
        except OSError:
            status = 599
        posted += 1
        if posted == batches // 3:
            threading.Thread(target=killer, daemon=True).start()
        if status == 200:
            acked.update(e["event_id"] for e in batch)
            pending.pop(0)
            continue
        errors += status >= 500 and status != 599
        if killed.is_set() and restarted is None:
            restarted = Server(shop, workers=2)
            restarted.wait_live()
            target = restarted
        time.sleep(0.05)
    if restarted is not None:
        restarted.stop()
    export = shop.home / "export"
    done = shop.run("events", "export", "--out", str(export))
    ids: list[str] = []
    if done.returncode == 0:
        import pyarrow.parquet as pq

        for path in sorted(export.glob("*.parquet")):
            ids.extend(pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist())
    outcome = Outcome("server killed while events posted", requests=posted, errors_5xx=errors)
    outcome.lost = len(acked - set(ids))
    outcome.doubled = len(ids) - len(set(ids))
    outcome.notes = f"{len(acked)} acknowledged, {len(ids)} exported"
    return outcome
