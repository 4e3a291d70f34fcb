"""Run one benchmark cell in a fresh process and read back its ``ROW {json}`` line.

One process per cell keeps compiled programs and memory from accumulating across targets.
"""

from __future__ import annotations

import json
import subprocess
import sys


def worker_row(script: str, args: list[str], name: str) -> dict | None:
    """``python script --worker *args`` and its first ``ROW`` line as a dict; ``None`` (after
    printing the worker's stderr tail) when it wrote none."""
    p = subprocess.run([sys.executable, script, "--worker", *args], capture_output=True, text=True)
    got = [json.loads(line[4:]) for line in p.stdout.splitlines() if line.startswith("ROW ")]
    if not got:
        print(f"{name}: worker failed\n{p.stderr[-2000:]}")
        return None
    return got[0]
