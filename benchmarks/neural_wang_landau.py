"""Neural and hybrid Wang-Landau vs classic 1/t WL on the 8x8 Ising model: error vs wall time.

Mean |ln g(E) - ln g_exact(E)| (ln g(E_0) = ln 2) at every check against wall seconds (compile
included) for ``fs.samplers.wang_landau(schedule="1/t")``, ``fs.samplers.neural_wang_landau``
(purely neural proposals) and its hybrid (``local_sweeps=1``: one classic single-spin sweep per
walker per neural proposal), all in one run; plus the final Σ 1/q estimate's error.

    python benchmarks/neural_wang_landau.py [--L 8] [--iterations 1500] [--batch 128]

Writes ``benchmarks/results/neural_wang_landau.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

import flowsamp as fs


def _first(times, errors, level=0.02):
    hit = np.nonzero(np.asarray(errors) <= level)[0]
    return float(np.asarray(times)[hit[0]]) if hit.size else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--L", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--max-sweeps", type=int, default=200_000)
    args = parser.parse_args()
    t = fs.targets.ising(L=args.L, beta=0.0)
    exact = t.exact_log_dos()
    out = {}
    r = fs.samplers.wang_landau(jax.random.key(0), t, schedule="1/t", stop_error=0.02,
                                exact_log_g=exact, max_sweeps=args.max_sweeps)
    out["classic_1/t"] = {"elapsed": r.elapsed.tolist(), "errors": r.errors.tolist(),
                          "t_0.02": _first(r.elapsed, r.errors)}
    for name, loc in (("neural", 0), ("hybrid", 1)):
        r = fs.samplers.neural_wang_landau(jax.random.key(0), t, batch_size=args.batch,
                                           max_iterations=args.iterations, local_sweeps=loc,
                                           exact_log_g=exact, stop_error=0.02)
        out[name] = {"elapsed": r.elapsed.tolist(), "errors": r.errors.tolist(),
                     "acceptance": r.acceptance.tolist(), "t_0.02": _first(r.elapsed, r.errors),
                     "error_dos": r.diagnostics["error_dos"], "levels_missing": r.diagnostics["levels_missing"]}
    print(f"Ising L={args.L}: wall seconds to mean |d ln g| <= 0.02 (None: not reached), final error")
    for k, v in out.items():
        extra = (f"  acc {v['acceptance'][-1]:.3f}  Σ1/q error {v['error_dos']:.4f} "
                 f"({v['levels_missing']} levels never drawn)" if "acceptance" in v else "")
        print(f"{k:>12} t_0.02 {v['t_0.02']}  final {v['errors'][-1]:.4f} at {v['elapsed'][-1]:.1f} s{extra}")
    path = Path(__file__).parent / "results" / "neural_wang_landau.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
