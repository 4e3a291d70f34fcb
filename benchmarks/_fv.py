"""Bridge to the finite-volume reference committor that lives with the tests (tests/rare/fv_committor.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "rare"))

from fv_committor import MB_MIN_C, MB_SADDLES, grid_convergence, mb_problem, solve  # noqa: E402,F401
