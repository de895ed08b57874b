"""The limits in front of the routes on a real `reco serve` process (service/edge.py): half-sent and
silent connections neither block legitimate requests nor stay open, oversized heads and bodies are
refused without being read, and an unauthenticated upload costs the worker no memory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.service.support import free_port

KEY = "edge-key"
READ_TIMEOUT = 1.5
IN_FLIGHT = 100

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, int]]:
    """(base URL, port, pid) of `reco serve --workers 1` with no model and no online store (fallbacks
    only, which is all these tests need; a registry that refuses connections makes start-up quick)."""
    home = tmp_path_factory.mktemp("edge-home")
    port = free_port()
    env = {
        **os.environ,
        "RECO_HOME": str(home),
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        "RECO_FEATURES": "false",
        "RECO_API_KEYS": json.dumps({KEY: ["recommend", "events"]}),
        "RECO_AUTH": "enabled",
        "RECO_RELOAD_POLL_SECONDS": "0",
        "RECO_REQUEST_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
    }
    reco = Path(sys.executable).with_name("reco")
    command = [str(reco), "serve", "--workers", "1", "--port", str(port), "--limit-concurrency", str(IN_FLIGHT)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"reco serve did not start: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(0.2)
    try:
        yield url, port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def half_open(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /v1/users/C1/recommendations HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        socks.append(s)
    return socks


def closed_by_server(s: socket.socket, wait: float) -> bytes | None:
    """What the server sent before closing within `wait` seconds, or None when it is still open."""
    s.settimeout(wait)
    received = b""
    try:
        while chunk := s.recv(4096):
            received += chunk
    except TimeoutError:
        return None
    except OSError:
        pass
    return received


def test_half_sent_connections_do_not_count_against_the_request_limit(server: tuple[str, int, int]) -> None:
    url, port, _ = server
    socks = half_open(port, 3 * IN_FLIGHT)  # uvicorn's limit_concurrency counted these: 503 for everyone
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=10) as client:
            statuses = [client.get("/v1/users/C1/recommendations?k=5").status_code for _ in range(30)]
        assert statuses == [200] * 30
    finally:
        for s in socks:
            s.close()


def test_the_server_closes_connections_that_do_not_finish_their_request(server: tuple[str, int, int]) -> None:
    _, port, _ = server
    socks = half_open(port, 50)
    silent = socket.create_connection(("127.0.0.1", port))  # connects and sends nothing
    trickle = socket.create_connection(("127.0.0.1", port))
    try:
        for byte in b"GET /health/live HTTP/1.1\r\nHost: x\r\n":  # one byte every 0.1 s: never in time
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                break  # closed by the server
            time.sleep(0.1)
        answers = [closed_by_server(s, READ_TIMEOUT + 3) for s in socks]
        assert all(a is not None and a.startswith(b"HTTP/1.1 408") for a in answers), answers[:3]
        assert closed_by_server(silent, 3) == b""
        trickled = closed_by_server(trickle, 3)
        assert trickled is not None and trickled.startswith(b"HTTP/1.1 408")
    finally:
        for s in [*socks, silent, trickle]:
            s.close()


def test_an_oversized_head_is_refused(server: tuple[str, int, int]) -> None:
    _, port, _ = server
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        for n in range(100):
            try:
                s.sendall(b"X-Padding-%d: %s\r\n" % (n, b"a" * 4000))
            except OSError:
                break
        answer = closed_by_server(s, 5)
    assert answer is not None and answer.startswith(b"HTTP/1.1 431")


def peak_growth_mb(pid: int, action: Callable[[], Any]) -> tuple[float, Any]:
    """The worker's peak memory growth (VmHWM) during `action()`, and what it returned."""

    def field(name: str) -> int:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(name))
        return int(line.split()[1])

    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = field("VmRSS")
    result = action()
    return (field("VmHWM") - before) / 1024, result


def test_an_unauthenticated_upload_is_refused_before_it_is_read(server: tuple[str, int, int]) -> None:
    _, port, pid = server

    def upload() -> tuple[bytes, int]:
        """POST 50 MB chunked without a key; (answer, bytes sent before the answer came)."""
        sent = 0
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"100000\r\n" + b"[" * 0x100000 + b"\r\n"
            s.settimeout(0.05)
            answer = b""
            while sent < 50 << 20:
                try:
                    s.sendall(chunk)
                except OSError:
                    break
                sent += 0x100000
                try:
                    answer = s.recv(4096)
                    break
                except TimeoutError:
                    continue
            s.settimeout(5)
            return answer or s.recv(4096), sent

    growth, (answer, sent) = peak_growth_mb(pid, upload)
    assert answer.startswith(b"HTTP/1.1 401")
    assert b"connection: close" in answer.lower()
    assert sent < 10 << 20  # answered long before the 50 MB were sent
    assert growth < 20, f"the worker grew by {growth:.0f} MB"


def test_a_body_over_the_limit_is_refused_by_its_length(server: tuple[str, int, int]) -> None:
    url, _, _ = server
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as s:
        s.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n{" % (KEY.encode(), 200 << 20)
        )
        answer = closed_by_server(s, 5)
    assert answer is not None and answer.startswith(b"HTTP/1.1 413")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"].startswith("The request body is larger than")
    assert time.monotonic() - started < 1
