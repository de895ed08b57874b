"""The fault probes of tests/faults/ as a table, for this checkout or any other:

    .venv/bin/python -m tests.faults.probe [--reco PATH/.venv/bin/reco] [--out FILE.json]

Starts its own redis-server on a free port, a shop under a temporary directory (generated, trained
and materialized by that `reco`) and `reco serve` with 2 workers, then runs every probe in order
and prints one row per probe (docs/operations.md reads them). About five minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tests.faults import probes
from tests.faults.harness import REPO, RedisServer, Server, make_shop

COLUMNS = (
    ("probe", "probe"),
    ("requests", "requests"),
    ("errors_5xx", "5xx"),
    ("degraded", "degraded"),
    ("flagged_while_out", "flagged while out"),
    ("just_bought", "offered just-bought"),
    ("lost", "lost"),
    ("doubled", "doubled"),
    ("recovery_seconds", "recovery s"),
    ("notes", "notes"),
)


def run_all(reco: str, root: Path) -> list[dict[str, object]]:
    redis = RedisServer(root / "redis")
    redis.start()
    rows = []
    try:
        shop = make_shop(reco, root / "shop", redis.url)
        server = Server(shop, workers=2, RECO_RELOAD_POLL_SECONDS="0")
        try:
            server.wait_live()
            for probe in (
                lambda: probes.redis_killed_then_back_with_data(server, shop, redis),
                lambda: probes.redis_paused(server, shop, redis),
                lambda: probes.redis_emptied(server, shop, redis, how="flush"),
                lambda: probes.redis_emptied(server, shop, redis, how="restart"),
                lambda: probes.reload_reaches_every_worker(server, shop),
            ):
                rows.append(probe().row())
                print(json.dumps(rows[-1]), flush=True)
        finally:
            server.stop()
        for probe in (
            lambda: probes.materialize_killed(shop, redis),
            lambda: probes.mlflow_missing_at_start(shop, root),
            lambda: probes.mlflow_hung_at_start(shop, root),
            lambda: probes.train_killed(shop),
            lambda: probes.server_killed_while_events_posted(shop),
        ):
            rows.append(probe().row())
            print(json.dumps(rows[-1]), flush=True)
    finally:
        redis.stop()
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    body = [
        "| " + " | ".join("–" if row.get(key) is None else str(row.get(key)) for key, _ in COLUMNS) + " |"
        for row in rows
    ]
    return "\n".join([head, rule, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reco", default=str(REPO / ".venv" / "bin" / "reco"), help="the reco executable to probe")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="reco-faults-") as tmp:
        rows = run_all(args.reco, Path(tmp))
    print(markdown(rows))
    print(f"\n{len(rows)} probes in {time.monotonic() - started:.0f} s with {args.reco}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
