"""Probe a running `reco serve` the way an attacker and a careless client would (issue: reliability
and security): huge unauthenticated bodies, half-sent connections, bad events, bad query values.

    .venv/bin/python experiments/probe_edges.py                       # this checkout's reco
    .venv/bin/python experiments/probe_edges.py --reco /other/checkout/.venv/bin/reco

Starts `reco serve --workers 1` on a free port with an empty RECO_HOME (no model: the answers are
fallbacks, which is all these probes need), prints one line per probe: requests, 5xx, statuses,
time and the worker's peak memory growth (VmHWM), then stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

KEY = "probe-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak(pid: int) -> None:
    """Linux ≥ 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def event_json(n_bytes: int) -> tuple[bytes, bytes, int]:
    """(head, repeated element, count) of a JSON events body of about n_bytes."""
    element = b'{"event_id":"e","user_id":"u","item_id":"i","timestamp":0},'
    return b'{"events":[', element, n_bytes // len(element)


def send_big_body(port: int, n_bytes: int, out: list[tuple[int | None, float]]) -> None:
    """POST /v1/events without a key and with an n_bytes JSON body; records (status, seconds)."""
    head, element, count = event_json(n_bytes)
    total = len(head) + len(element) * count - 1 + 2
    started = time.perf_counter()
    status = None
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % total
        )
        chunk = element * (1_048_576 // len(element))
        per_chunk = 1_048_576 // len(element)
        sent = 0
        sock.sendall(head)
        sock.settimeout(0.0)
        while sent + per_chunk < count:
            try:
                sock.setblocking(True)
                sock.sendall(chunk)
            except OSError:
                break  # the server closed: it answered before reading the body
            sent += per_chunk
            sock.setblocking(False)
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                pass
        else:
            sock.setblocking(True)
            sock.sendall(element * (count - sent - 1) + element[:-1] + b"]}")
        sock.setblocking(True)
        sock.settimeout(120)
        reply = sock.recv(64)
        if reply.startswith(b"HTTP/1.1 "):
            status = int(reply[9:12])
    except OSError:
        pass
    finally:
        sock.close()
    out.append((status, time.perf_counter() - started))


def probe_bodies(pid: int, port: int, label: str, sizes: list[int]) -> None:
    reset_peak(pid)
    time.sleep(0.2)
    before = rss_kb(pid, "VmRSS")
    results: list[tuple[int | None, float]] = []
    threads = [threading.Thread(target=send_big_body, args=(port, n, results)) for n in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peak = rss_kb(pid, "VmHWM")
    statuses = Counter(s for s, _ in results)
    slowest = max(s for _, s in results)
    fives = sum(n for s, n in statuses.items() if s and s >= 500)
    print(
        f"{label}: {len(sizes)} requests, {fives} 5xx, statuses {dict(statuses)}, "
        f"slowest answer {slowest * 1000:.0f} ms, "
        f"peak RSS +{(peak - before) / 1024:.0f} MB over {before / 1024:.0f} MB"
    )


def probe_half_open(port: int, n: int, client: httpx.Client, timeout_check: float) -> None:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /v1/users/C1/recommendations HTTP/1.1\r\nHost: x\r\n")  # never finished
        socks.append(s)
    time.sleep(0.5)
    statuses = Counter(client.get("/v1/users/C1/recommendations?k=5").status_code for _ in range(30))
    fives = sum(v for k, v in statuses.items() if k >= 500)
    print(f"{n:,} half-open connections: 30 requests, {fives} 5xx, statuses {dict(statuses)}")
    time.sleep(timeout_check)
    open_count = 0
    for s in socks:
        s.setblocking(False)
        try:
            s.recv(256)  # b"" (closed) or the server's 408 before it closed
        except BlockingIOError:
            open_count += 1
        except OSError:
            pass
        s.close()
    print(f"  after {timeout_check:.0f} s: {open_count:,} of {n:,} still open on the server")


def probe_requests(client: httpx.Client, anonymous: httpx.Client) -> None:
    good = [
        {"event_id": f"ok-{time.time_ns()}-{i}", "user_id": "C1", "item_id": "P1", "timestamp": 1_700_000_000}
        for i in range(999)
    ]
    for label, bad in (
        ("quantity 1e300", {"quantity": 1e300}),
        ("quantity 2^63", {"quantity": 2**63}),
        ("lone surrogate in user_id", {"user_id": "\ud800"}),
        ("NUL in event_id", {"event_id": "bad\x00id"}),
    ):
        stamp = time.time_ns()
        events = [{**e, "event_id": f"{e['event_id']}-{stamp}"} for e in good]
        events.append({**good[0], "event_id": f"bad-{stamp}", **bad})
        body = json.dumps({"events": events}, ensure_ascii=True)
        r = client.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
        stored = r.json().get("accepted") if r.status_code == 200 else 0
        rejected = r.json().get("rejected") if r.status_code == 200 else None
        print(f"999 good events + 1 with {label}: status {r.status_code}, accepted {stored}, rejected {rejected}")
    r = anonymous.post("/v1/events", content=b"{not json", headers={"Content-Type": "application/json"})
    print(f"malformed body without a key: status {r.status_code}")
    r = client.post("/v1/events", content=b"{not json", headers={"Content-Type": "application/json"})
    print(f"malformed body with a key: status {r.status_code}")
    r = client.get("/v1/users/C1/recommendations", params={"k": "10.0"})
    print(f"k=10.0: status {r.status_code}")
    r = client.get("/v1/users/C1%00/recommendations")
    print(f"NUL in a path id: status {r.status_code}")
    r = client.get("/v1/users/C1/recommendations", params={"exclude": "x" * 200})
    print(f"exclude id of 200 characters: status {r.status_code}")
    r = anonymous.get("/health/ready")
    print(f"/health/ready without a key: status {r.status_code}, {len(r.text)} bytes: {r.text[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[1]
    parser.add_argument("--reco", default=str(here / ".venv" / "bin" / "reco"))
    parser.add_argument("--half-open", type=int, default=2_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="reco-probe-"))
    port = free_port()
    env = {
        **os.environ,
        "RECO_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
        "RECO_API_KEYS": json.dumps({KEY: ["recommend", "events", "admin"]}),
        "RECO_RELOAD_POLL_SECONDS": "0",
    }
    server = subprocess.Popen(
        [args.reco, "serve", "--workers", "1", "--port", str(port)],
        env=env,
        cwd=str(Path(args.reco).resolve().parents[2]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}, timeout=60)
        anonymous = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        deadline = time.monotonic() + 180
        while True:
            try:
                if anonymous.get("/health/live").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("the server did not start")
            time.sleep(0.5)
        probe_bodies(server.pid, port, "200 MB unauthenticated body", [200 << 20])
        probe_bodies(server.pid, port, "4 × 100 MB unauthenticated bodies", [100 << 20] * 4)
        probe_half_open(port, args.half_open, client, timeout_check=12)
        probe_requests(client, anonymous)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
