"""Benchmark: the recommendation service under load, against the bare stack and `mlflow models serve`.

Steps (everything under a temp RECO_HOME, features in Redis DB 11, flushed at the end):
generate a store → `reco train` → `reco features build` + `materialize` (Redis) → `reco candidates
build` (the champion's) → a second registered version of the same model, without candidates → then
  A. `reco serve` of the version without candidates (every `home` ranked per request),
  B. `reco serve` of the champion: the time from the process start to the first answer and the p99
     of the first seconds after it; then the steady state; then a model swap (`reco candidates
     build` of the second version, the alias moved to it): the time until every answer comes from
     the new version and the p99 of the first seconds after it,
`wrk` at 16 connections for a fixed time on
  1. GET /v1/users/{random known customer}/recommendations?k=10 (with the API key),
  2. GET /health/live of the same server (the bare FastAPI/uvicorn reference), alternating with 1
     for --rounds rounds (the ratio reported is the median round's: this machine drifts),
  3. POST /invocations of `mlflow models serve` on the same registered model (random customers),
and prints rps, p50, p99 for each plus the ratios (the load generator shares the 2 cores), and
each worker's memory (RSS, and USS: the pages no other process shares). Latency is measured with
LATENCY_CONNECTIONS requests in flight (the steady state's `latency_steady`; after a start or a swap,
back-to-back 1-s runs, and the time from which each of them has p99 <= 10 ms); the throughput runs
saturate the machine.

    .venv/bin/python experiments/bench_service.py [--users 100000] [--items 50000] [--years 2] [--duration 10]
        [--rounds 5] [--workers 2] [--home DIR (reuse a trained home)] [--skip-mlflow] [--start-only]

--start-only measures only server B's start (time to the first answer, first seconds' p99, worker
memory): what the 1M-customer run needs.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECO = ROOT / ".venv" / "bin" / "reco"
MLFLOW = ROOT / ".venv" / "bin" / "mlflow"
KEY = "bench-key"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")


def run(cmd: list[str], env: dict[str, str]) -> str:
    started = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed:\n{out.stderr[-2000:]}")
    print(
        f"  {' '.join(Path(c).name if '/' in c else c for c in cmd[:3])}: {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return out.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{url} did not become ready")


def lua_get(users: list[str], path: str, key: str) -> str:
    ids = ",".join(json.dumps(u) for u in users)
    return f"""
local users = {{{ids}}}
math.randomseed(7)
request = function()
  local u = users[math.random(#users)]
  return wrk.format("GET", string.format("{path}", u), {{["X-API-Key"] = "{key}"}})
end
"""


def lua_mlflow(users: list[str]) -> str:
    ids = ",".join(json.dumps(u) for u in users)
    return f"""
local users = {{{ids}}}
math.randomseed(7)
request = function()
  local u = users[math.random(#users)]
  local body = '{{"dataframe_records": [{{"user_id": "' .. u .. '", "k": 10, "context": "home"}}]}}'
  return wrk.format("POST", "/invocations", {{["Content-Type"] = "application/json"}}, body)
end
"""


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
# Latency is measured with this many requests in flight (one wrk thread): the storefront's load,
# well below what saturates 2 cores. At 16 connections (the throughput runs) every request also
# waits for the 15 ahead of it, so p99 there is queueing, not the answer's speed.
LATENCY_CONNECTIONS = 4


def wrk(
    url: str, *, script: Path | None, duration: int, connections: int = 16, threads: int = 2, quiet: bool = False
) -> dict[str, float]:
    label = url if script is None else f"{url} ({script.stem})"
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if not quiet:
        print(
            f"    wrk {label} {duration}s: {rps:.0f} rps p50 {latency('50'):.2f} ms p99 {latency('99'):.2f} ms",
            flush=True,
        )
    return {
        "rps": rps,
        "requests": requests,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",  # type: ignore[dict-item]
    }


def latency(url: str, script: Path, *, duration: int, quiet: bool = False) -> dict[str, float]:
    """`wrk` with LATENCY_CONNECTIONS requests in flight: the p99 of an answer, not of a queue."""
    return wrk(url, script=script, duration=duration, connections=LATENCY_CONNECTIONS, threads=1, quiet=quiet)


def by_second(url: str, script: Path, *, seconds: int, since: float) -> dict[str, Any]:
    """Back-to-back 1-s latency runs: each one's p99 with its start in seconds after `since` (a
    perf_counter time), and `full_speed_s`, the start of the first of two runs in a row whose p99 is
    at most 10 ms (None when there are none). Two, not every later one: the steady state itself has
    a second above 10 ms now and then (a background refresh, a collection)."""
    runs = []
    for _ in range(seconds):
        at = time.perf_counter() - since
        runs.append((round(at, 1), latency(url, script, duration=1, quiet=True)["p99_ms"]))
    fast = [at for (at, p99), (_, after) in itertools.pairwise(runs) if p99 <= 10 and after <= 10]
    return {"p99_ms_by_second": runs, "full_speed_s": fast[0] if fast else None}


def wrk_in_background(url: str, script: Path, *, duration: int) -> Callable[[], dict[str, float]]:
    """`wrk` started in a thread; the function returned waits for its figures."""
    import threading

    out: dict[str, dict[str, float]] = {}
    thread = threading.Thread(target=lambda: out.update(result=wrk(url, script=script, duration=duration)))
    thread.start()

    def result() -> dict[str, float]:
        thread.join()
        return out["result"]

    return result


def against_bare(
    base: str, script: Path, *, duration: int, rounds: int, cpu: Callable[[], float]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The endpoint and the bare `/health/live` in alternating rounds, so that both see the same
    machine (its speed drifts within minutes here). Returns (endpoint, bare): the figures of the
    round with the median throughput ratio, that ratio, every round's ratio, the median and the
    worst of the rounds' p99 and, over all rounds, the CPU time per request of the server and Redis (`cpu()`, in
    seconds; steal time is not in it, so it drifts less than throughput)."""

    def timed(url: str, script: Path | None) -> dict[str, Any]:
        before = cpu()
        result = wrk(url, script=script, duration=duration)
        return {**result, "cpu_seconds": cpu() - before}

    pairs = [(timed(base, script), timed(f"{base}/health/live", None)) for _ in range(rounds)]
    ratios = [recs["rps"] / bare["rps"] for recs, bare in pairs]
    recs, bare = sorted(pairs, key=lambda pair: pair[0]["rps"] / pair[1]["rps"])[len(pairs) // 2]

    def cpu_us(side: int) -> float:
        runs = [pair[side] for pair in pairs]
        return 1e6 * sum(r["cpu_seconds"] for r in runs) / max(sum(r["requests"] for r in runs), 1.0)

    return {
        **recs,
        "ratio": recs["rps"] / bare["rps"],
        "round_ratios": ratios,
        "median_p99_ms": sorted(r["p99_ms"] for r, _ in pairs)[len(pairs) // 2],
        "worst_p99_ms": max(r["p99_ms"] for r, _ in pairs),
        "cpu_us_per_request": cpu_us(0),
    }, {**bare, "cpu_us_per_request": cpu_us(1)}


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes of a process group (from /proc)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:  # state, ppid, pgrp, ..., utime (11), stime (12)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds() -> float:
    import redis

    info = redis.Redis.from_url(REDIS_URL).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@contextlib.contextmanager
def serve(
    home: Path, env: dict[str, str], workers: int, **extra: str
) -> Iterator[tuple[str, Callable[[], float], int]]:
    """`reco serve` on a free port with extra environment; yields the base URL once ready, a
    function that reads the CPU seconds its processes and Redis used so far, and its process group."""
    port = free_port()
    with open(home / "serve.log", "a") as log:
        server = subprocess.Popen(
            [str(RECO), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            env={**env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health/ready")
        yield base, lambda: group_cpu_seconds(server.pid) + redis_cpu_seconds(), server.pid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def worker_memory(pgid: int) -> list[dict[str, float]]:
    """RSS, USS (private pages, file-backed ones included while no other process maps them) and
    anonymous memory (heap: what the worker itself allocated, not the memory-mapped model files in the
    page cache) in MiB of each worker process of a `reco serve` process group."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            if int(fields[2]) != pgid:
                continue
            rollup = dict(
                (line.split(":")[0], float(line.split()[1]) / 1024)
                for line in (stat.parent / "smaps_rollup").read_text().splitlines()[1:]
            )
        except (OSError, ValueError, IndexError):
            continue
        out.append(
            {
                "pid": pid,
                "rss_mib": rollup["Rss"],
                "uss_mib": rollup["Private_Clean"] + rollup["Private_Dirty"],
                "anon_mib": rollup["Anonymous"],
            }
        )
    # With several workers the group leader is uvicorn's supervisor, not a worker.
    workers = [m for m in out if m["pid"] != pgid]
    return workers or out


def published_versions(home: Path) -> set[str]:
    """The model versions whose candidates the home's candidates file holds (both slots)."""
    import pyarrow.parquet as pq

    path = home / "features" / "customer_candidates.parquet"
    if not path.exists() or pq.read_metadata(path).num_rows == 0:
        return set()
    first = pq.read_table(path, columns=["model_version", "previous_version"]).slice(0, 1).to_pylist()[0]
    return {v for v in first.values() if v}


def register_version(env: dict[str, str], name: str = "reco") -> str:
    """A new registered version with the champion's artifacts (no candidates published for it)."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])  # the registry resolves the source through it
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias(name, "champion")
    new = client.create_model_version(name, source=champion.source, run_id=champion.run_id)
    for _ in range(100):
        if client.get_model_version(name, new.version).status == "READY":
            break
        time.sleep(0.1)
    return str(new.version)


def set_champion(env: dict[str, str], version: str, name: str = "reco") -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    client.set_registered_model_alias(name, "champion", version)


def until_version(base: str, users: list[str], version: str, *, streak: int = 20, timeout: float = 120) -> float:
    """Seconds until `streak` answers in a row (random customers, any worker) come from `version`."""
    started, run, n = time.perf_counter(), 0, 0
    while run < streak:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"version {version} was not served within {timeout:.0f} s")
        answer, _ = sample_answer(base, users[n % len(users)], ready=False)
        run = run + 1 if answer["model_version"] == version else 0
        n += 1
        time.sleep(0.02)
    return time.perf_counter() - started


def candidate_counts(base: str) -> str:
    """How `home` answers used the offline candidates so far (all workers), from /metrics."""
    with urllib.request.urlopen(f"{base}/metrics") as r:
        text = r.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'reco_candidates_total\{outcome="([a-z-]+)"\} ([\d.e+]+)', line)
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0.0) + float(m.group(2))
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(counts.items())) or "none"


def answer_counts(base: str) -> str:
    """Answers and degraded answers so far (all workers), from /metrics."""
    with urllib.request.urlopen(f"{base}/metrics") as r:
        text = r.read().decode()
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("reco_answers_total{") and 'endpoint="recommendations"' in line
    )
    degraded = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("reco_degraded_total{") and 'endpoint="recommendations"' in line
    )
    return f"{total:.0f} answers, {degraded:.0f} degraded"


def sample_answer(base: str, user: str, *, ready: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    request = urllib.request.Request(f"{base}/v1/users/{user}/recommendations?k=10", headers={"X-API-Key": KEY})
    with urllib.request.urlopen(request) as r:
        answer = json.loads(r.read())
    if not ready:
        return answer, {}
    # The details (model, features) are for a key with the admin scope.
    with urllib.request.urlopen(urllib.request.Request(f"{base}/health/ready", headers={"X-API-Key": KEY})) as r:
        return answer, json.loads(r.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--years", type=int, default=2, help="years of purchases generated")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating endpoint / bare rounds per server")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--home", type=Path, default=None, help="reuse (or create) this RECO_HOME")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--model", default=None, help="reco train --model (default: the trainer's default)")
    parser.add_argument("--start-only", action="store_true", help="only server B's start: time, p99, memory")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")

    home = args.home or Path(tempfile.mkdtemp(prefix="reco-bench-service-"))
    home.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        RECO_HOME=str(home),
        MLFLOW_TRACKING_URI=f"sqlite:///{home}/mlflow.db",
        REDIS_URL=REDIS_URL,
        RECO_API_KEYS=json.dumps({KEY: ["recommend", "admin"]}),
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="1",
        # `mlflow models serve` execs `uvicorn` by name: the venv's bin must be on PATH.
        PATH=f"{RECO.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    store = home / "store"
    print(f"RECO_HOME={home}  store {args.users:,} customers x {args.items:,} items", flush=True)
    if not (store / "purchases.parquet").exists():
        run(
            [
                str(RECO),
                "data",
                "generate",
                "--out",
                str(store),
                "--users",
                str(args.users),
                "--items",
                str(args.items),
                "--years",
                str(args.years),
                "--seed",
                "3",
            ],
            env,
        )
    if not (home / "trained.json").exists():
        extra = ["--model", args.model] if args.model else []
        out = run(
            [
                str(RECO),
                "train",
                "--purchases",
                str(store / "purchases.parquet"),
                "--catalog",
                str(store / "catalog.parquet"),
                "--promote",
                "always",
                *extra,
            ],
            env,
        )
        (home / "trained.json").write_text(out.strip().splitlines()[-1])
        run(
            [
                str(RECO),
                "features",
                "build",
                "--purchases",
                str(store / "purchases.parquet"),
                "--catalog",
                str(store / "catalog.parquet"),
            ],
            env,
        )
    import pyarrow.parquet as pq

    run([str(RECO), "features", "materialize", "--full"], env)
    trained = json.loads((home / "trained.json").read_text())
    # The service's clock starts where the store's history ends, as for a shop whose data is current
    # (otherwise every item_stats row is past its ttl and availability reads as unknown).
    import pyarrow.compute as pc

    last = pc.max(pq.read_table(store / "purchases.parquet", columns=["timestamp"]).column(0)).as_py()
    env["RECO_NOW"] = last.isoformat()
    print(f"  model {trained['model_uri']}", flush=True)

    users = sorted(set(pq.read_table(store / "purchases.parquet", columns=["user_id"]).column(0).to_pylist()))
    sample = random.Random(1).sample(users, min(5_000, len(users)))
    scripts = Path(tempfile.mkdtemp(prefix="reco-bench-lua-"))
    (scripts / "recs.lua").write_text(lua_get(sample, "/v1/users/%s/recommendations?k=10", KEY))
    (scripts / "mlflow.lua").write_text(lua_mlflow(sample))

    champion = str(trained["version"])
    started = time.perf_counter()
    if champion in published_versions(home):  # a reused home: its lists are there (materialized above)
        print(f"  candidates of version {champion} already built", flush=True)
    else:
        print(f"  {run([str(RECO), 'candidates', 'build'], env).strip().splitlines()[-1]}", flush=True)
    candidates_seconds = time.perf_counter() - started
    second = register_version(env)  # no candidates published for it (yet)

    results: dict[str, dict[str, float]] = {}
    memory: dict[str, list[dict[str, float]]] = {}
    if not args.start_only:
        # Server A serves a version without candidates: every `home` is ranked per request.
        with serve(home, env, args.workers, RECO_MODEL_URI=f"models:/reco/{second}") as (base, cpu, _):
            wrk(f"{base}/health/live", script=None, duration=3)  # warm-up
            wrk(base, script=scripts / "recs.lua", duration=3)
            results["recommendations_uncached"], results["health_live"] = against_bare(
                base, scripts / "recs.lua", duration=args.duration, rounds=args.rounds, cpu=cpu
            )
            print(f"    {answer_counts(base)}; candidates: {candidate_counts(base)}", flush=True)
            answer, ready = sample_answer(base, sample[0])
        print(
            f"  sample answer: source={answer['source']} degraded={answer['degraded']} items={len(answer['items'])}"
            f" online_store={ready['features']['online_store']} candidates={ready['model']['candidates']!r}",
            flush=True,
        )
    # Server B: the champion, whose candidates are published. From the process start to full speed.
    spawned = time.perf_counter()
    with serve(home, env, args.workers, RECO_RELOAD_POLL_SECONDS="1") as (base, cpu, pgid):
        first_answer = time.perf_counter()
        sample_answer(base, sample[1], ready=False)
        start: dict[str, Any] = {
            "ready_s": first_answer - spawned,
            "first_answer_ms": 1e3 * (time.perf_counter() - first_answer),
        }
        start["after_start"] = by_second(base, scripts / "recs.lua", seconds=10, since=spawned)
        print(
            f"  start: ready {start['ready_s']:.1f} s after the process started, first answer"
            f" {start['first_answer_ms']:.1f} ms; at full speed (p99 <= 10 ms, 1-s runs) from"
            f" {start['after_start']['full_speed_s']} s; p99 by second {start['after_start']['p99_ms_by_second']}"
            f"; candidates: {candidate_counts(base)}",
            flush=True,
        )
        memory["after_start"] = worker_memory(pgid)
        if not args.start_only:
            results["recommendations_cached"], results["health_live_b"] = against_bare(
                base, scripts / "recs.lua", duration=args.duration, rounds=args.rounds, cpu=cpu
            )
            results["latency_steady"] = latency(base, scripts / "recs.lua", duration=args.duration)
            print(f"    {answer_counts(base)}; candidates: {candidate_counts(base)}", flush=True)
            # A model swap: publish the second version's candidates (the champion keeps its own meanwhile),
            # then move the alias; the workers poll it every second.
            publishing = wrk_in_background(base, scripts / "recs.lua", duration=30)
            print(
                f"  {run([str(RECO), 'candidates', 'build', '--model-uri', f'models:/reco/{second}'], env).strip()}",
                flush=True,
            )
            results["while_publishing"] = publishing()
            moved = time.perf_counter()
            set_champion(env, second)
            swap = until_version(base, sample, second)
            after = start["after_swap"] = by_second(base, scripts / "recs.lua", seconds=8, since=moved)
            print(
                f"  swap: every answer from version {second} {swap:.1f} s after the alias moved; at full speed"
                f" from {after['full_speed_s']} s; p99 by second {after['p99_ms_by_second']}"
                f"; candidates: {candidate_counts(base)}",
                flush=True,
            )
            start["swap_s"] = swap
            memory["after_swap"] = worker_memory(pgid)
            set_champion(env, champion)
    for when, workers in memory.items():
        listed = ", ".join(
            f"RSS {m['rss_mib']:.0f} / USS {m['uss_mib']:.0f} / anonymous {m['anon_mib']:.0f} MiB" for m in workers
        )
        print(f"  worker memory {when}: {listed}", flush=True)

    if not args.skip_mlflow and not args.start_only:
        mport = free_port()
        with open(home / "mlflow-serve.log", "w") as log:
            mlflow = subprocess.Popen(
                [
                    str(MLFLOW),
                    "models",
                    "serve",
                    "-m",
                    trained["model_uri"],
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(mport),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_http(f"http://127.0.0.1:{mport}/ping")
            wrk(f"http://127.0.0.1:{mport}", script=scripts / "mlflow.lua", duration=3)
            results["mlflow_models_serve"] = wrk(
                f"http://127.0.0.1:{mport}", script=scripts / "mlflow.lua", duration=args.duration
            )
        finally:
            os.killpg(mlflow.pid, signal.SIGTERM)
            mlflow.wait(timeout=60)

    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    print(f"\n{'endpoint':<22}{'rps':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    for name, r in results.items():
        print(
            f"{name:<22}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['non_2xx']:>10.0f}"
            f"  {r['socket_errors']}"
        )
    if "latency_steady" in results:
        steady = results["latency_steady"]["p99_ms"]
        print(f"\nsteady p99 at {LATENCY_CONNECTIONS} connections: {steady:.2f} ms (goal <= 10)")
    for name, bare_name in (("recommendations_uncached", "health_live"), ("recommendations_cached", "health_live_b")):
        if name not in results:
            continue
        recs = results[name]
        rounds = ", ".join(f"{r:.2f}" for r in recs["round_ratios"])
        bare_cpu = results[bare_name]["cpu_us_per_request"]
        print(
            f"\n{name} / {bare_name} throughput: {recs['ratio']:.2f} (median of {len(recs['round_ratios'])}"
            f" alternating rounds: {rounds}; goal >= 0.5); p99 {recs['median_p99_ms']:.2f} ms in the median round"
            f" by p99, {recs['worst_p99_ms']:.2f} ms in the worst (16 connections: mostly queueing)\n"
            f"  CPU per request (server + Redis, all rounds): {recs['cpu_us_per_request']:.0f} µs against"
            f" {bare_cpu:.0f} µs bare ({bare_cpu / recs['cpu_us_per_request']:.2f})"
        )
        if "mlflow_models_serve" in results:
            print(
                f"{name} / mlflow models serve throughput: "
                f"{recs['rps'] / results['mlflow_models_serve']['rps']:.1f} (goal >= 3)"
            )
    summary = {
        "users": args.users,
        "items": args.items,
        "workers": args.workers,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "connections": 16,
        "latency_connections": LATENCY_CONNECTIONS,
        "candidates_build_s": candidates_seconds,
        "start": start,
        "worker_memory": memory,
        "results": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
