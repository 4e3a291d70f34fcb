"""Shared pieces of the FAB benchmarks (many_well.py, fab_gmm40.py): the run record and the JSON file."""

from __future__ import annotations

import json
import os
import subprocess
import time

import numpy as np


def fab_record(out) -> dict:
    """Verdict, history (every 50th iteration), final HMC step sizes, git revision and time of a FAB result."""
    return {
        "fab_converged": bool(out.converged), "fab_problems": list(out.problems),
        "history_every_50": {k: np.asarray(v)[::50].tolist() for k, v in out.history.items()},
        "final_step_sizes": out.step_sizes.tolist(),
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "updated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def write_json(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
