"""Müller-Brown committor (Rotskoff's setting): active importance sampling vs plain sampling from pi.

V scaled by 0.1 at beta = 1 (log pi = -0.1 V_MB), A and B discs of radius 0.2 around (-0.5, 1.5) and
(0.5, 0). Reference: the finite-volume solution of div(pi grad q) = 0 (tests/rare/fv_committor.py),
grid-converged (h = 0.01 vs 0.005). For each seed, fs.rare.committor runs with umbrella windows
(importance_sampling=True) and with the same number of plain draws from pi (False, spring 0).
Reported: the pi-weighted RMSE of q over the grid nodes outside A and B (and over all nodes),
|nu_hat / nu - 1| with nu_se / nu, q at the two saddles and the intermediate minimum.

    python benchmarks/committor.py [--seeds 5] [--rounds 60]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import flowsamp as fs
from _fv import MB_MIN_C, MB_SADDLES, grid_convergence, mb_problem

A, B, R = np.array([-0.5, 1.5]), np.array([0.5, 0.0]), 0.2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=60)
    args = p.parse_args()
    lp_np, a_np, b_np, box = mb_problem()
    coarse, fine, conv = grid_convergence(lp_np, a_np, b_np, box, 0.01)
    ref = fine
    print("reference nu", ref.nu, "grid change", conv, flush=True)
    pts = np.vstack([MB_SADDLES, MB_MIN_C])
    q_ref_pts = ref.interpolate(pts)
    X, Y = np.meshgrid(coarse.x, coarse.y, indexing="ij")
    grid = np.stack([X, Y], -1).reshape(-1, 2)
    w = coarse.pi.reshape(-1)
    out_mask = ~coarse.inside.reshape(-1)
    q_grid_ref = coarse.q.reshape(-1)
    target = fs.targets.muller_brown(beta=0.1)
    in_A = lambda x: jnp.sum((x - A) ** 2, -1) < R**2  # noqa: E731
    in_B = lambda x: jnp.sum((x - B) ** 2, -1) < R**2  # noqa: E731
    rows = []
    for seed in range(args.seeds):
        for is_ in (True, False):
            t0 = time.perf_counter()
            res = fs.rare.committor(jax.random.key(seed), target.log_prob, in_A, in_B, jnp.asarray(np.stack([A, B]), jnp.float32),
                                    importance_sampling=is_, num_rounds=args.rounds)
            q = np.concatenate([np.asarray(res.q(jnp.asarray(grid[i:i + 65536], jnp.float32))) for i in range(0, len(grid), 65536)])
            err2 = (q - q_grid_ref) ** 2
            row = {
                "seed": seed, "importance_sampling": is_,
                "rmse_outside": float(np.sqrt(np.sum(w * err2 * out_mask) / np.sum(w * out_mask))),
                "rmse_all": float(np.sqrt(np.sum(w * err2))),
                "nu": res.nu, "nu_se": res.nu_se, "nu_rel_err": abs(res.nu / ref.nu - 1), "nu_rel_se": res.nu_se / ref.nu,
                "q_points": np.asarray(res.q(jnp.asarray(pts, jnp.float32))).tolist(),
                "converged": res.converged, "problems": res.problems, "wall_s": time.perf_counter() - t0,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for is_ in (True, False):
        sel = [r for r in rows if r["importance_sampling"] == is_]
        summary["is" if is_ else "plain"] = {
            k: (float(np.mean([r[k] for r in sel])), float(np.std([r[k] for r in sel], ddof=1) / np.sqrt(len(sel))) if len(sel) > 1 else float("nan"))
            for k in ("rmse_outside", "rmse_all", "nu_rel_err")
        }
    wins = sum(ri["rmse_outside"] < rp["rmse_outside"] and ri["nu_rel_err"] < rp["nu_rel_err"]
               for ri, rp in zip(rows[0::2], rows[1::2]))
    print("summary (mean, SE over seeds)", json.dumps(summary), f"IS better on both metrics in {wins}/{args.seeds} seeds")
    out = Path(__file__).parent / "results" / "committor.json"
    out.write_text(json.dumps({"reference": {"nu": ref.nu, "grid": conv, "q_points": q_ref_pts.tolist(),
                                             "points": pts.tolist()},
                               "rows": rows, "summary": summary, "is_wins_both": wins}, indent=1))


if __name__ == "__main__":
    main()
