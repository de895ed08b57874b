"""Batch commands keep freed memory in the process (training/cli/train.py, `_keep_freed_memory`)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_batch_commands_reuse_freed_memory_in_pool_threads(tmp_path: Path) -> None:
    """`reco train` keeps freed memory in the process (`_keep_freed_memory`): a 10 M-line array that a
    pool thread frees is reused by the next, not mapped afresh (each first touch of a page costs
    system time; at 10 M lines, seconds). Set after numpy's import, glibc's arena limit did not hold
    and pool threads mapped their arrays afresh. Runs in a new interpreter, as the command does."""
    import json
    import platform
    import subprocess
    import sys

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator settings are glibc's")
    script = f"""
import json
import resource
from concurrent.futures import ThreadPoolExecutor
from training.cli.train import _keep_freed_memory
_keep_freed_memory()
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

pq.write_table(pa.table({{"a": np.arange(1000)}}), {str(tmp_path / "a.parquet")!r})
pq.read_table({str(tmp_path / "a.parquet")!r})  # Arrow's threads allocate, as when reco reads purchases

def faults(_):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    values = np.ones(10_000_000)
    values += 1
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

with ThreadPoolExecutor(1) as pool:
    print(json.dumps(list(pool.map(faults, range(3)))))
"""
    # Three interpreters: with the settings after numpy's import, about two runs in three failed here
    # (whether an Arrow thread allocated first is a race).
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
        first, *again = json.loads(done.stdout.strip().splitlines()[-1])
        assert first > 0  # the first array's pages are new
        assert again == [0, 0], (first, again)
