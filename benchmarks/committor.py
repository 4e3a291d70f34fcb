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
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "committor.json"))
    p.add_argument("--merge", nargs="*", help="only merge the rows of these result files into --out")
    args = p.parse_args()
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        rows = sorted((r for part in parts for r in part["rows"]), key=lambda r: (r["seed"], not r["importance_sampling"]))
        write(Path(args.out), parts[0]["reference"], rows)
        return
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
    FX, FY = np.meshgrid(fine.x, fine.y, indexing="ij")
    fgrid = np.stack([FX, FY], -1).reshape(-1, 2)
    fw = fine.pi.reshape(-1)
    grad_q = None
    in_A = lambda x: jnp.sum((x - A) ** 2, -1) < R**2  # noqa: E731
    in_B = lambda x: jnp.sum((x - B) ** 2, -1) < R**2  # noqa: E731
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for is_ in (True, False):
            t0 = time.perf_counter()
            res = fs.rare.committor(jax.random.key(seed), target.log_prob, in_A, in_B, jnp.asarray(np.stack([A, B]), jnp.float32),
                                    importance_sampling=is_, num_rounds=args.rounds)
            grad_q = jax.jit(jax.vmap(jax.grad(res.q_net, argnums=1), (None, 0)))
            q = np.concatenate([np.asarray(res.q(jnp.asarray(grid[i:i + 65536], jnp.float32))) for i in range(0, len(grid), 65536)])
            err2 = (q - q_grid_ref) ** 2
            # nu[q_theta] by quadrature on the fine grid (what nu_hat estimates): the estimator's own check
            g = np.concatenate([np.asarray(grad_q(res.params, jnp.asarray(fgrid[i:i + 65536], jnp.float32)))
                                for i in range(0, len(fgrid), 65536)]).astype(np.float64)
            nu_quad = float(np.sum(fw * np.sum(g**2, -1)))
            row = {
                "seed": seed, "importance_sampling": is_,
                "rmse_outside": float(np.sqrt(np.sum(w * err2 * out_mask) / np.sum(w * out_mask))),
                "rmse_all": float(np.sqrt(np.sum(w * err2))),
                "nu": res.nu, "nu_se": res.nu_se, "nu_quad_of_q_theta": nu_quad,
                "nu_hat_vs_quad_z": (res.nu - nu_quad) / res.nu_se, "nu_rel_err": abs(res.nu / ref.nu - 1), "nu_rel_se": res.nu_se / ref.nu,
                "q_points": np.asarray(res.q(jnp.asarray(pts, jnp.float32))).tolist(),
                "converged": res.converged, "problems": res.problems, "wall_s": time.perf_counter() - t0,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    write(Path(args.out), {"nu": ref.nu, "grid": conv, "q_points": q_ref_pts.tolist(), "points": pts.tolist()}, rows)


def write(out: Path, reference: dict, rows: list) -> None:
    summary = {}
    for is_ in (True, False):
        sel = [r for r in rows if r["importance_sampling"] == is_]
        summary["is" if is_ else "plain"] = {
            k: (float(np.mean([r[k] for r in sel])), float(np.std([r[k] for r in sel], ddof=1) / np.sqrt(len(sel))) if len(sel) > 1 else float("nan"))
            for k in ("rmse_outside", "rmse_all", "nu_rel_err")
        }
    wins = sum(ri["rmse_outside"] < rp["rmse_outside"] and ri["nu_rel_err"] < rp["nu_rel_err"]
               for ri, rp in zip(rows[0::2], rows[1::2]))
    print("summary (mean, SE over seeds)", json.dumps(summary), f"IS better on both metrics in {wins}/{len(rows) // 2} seeds")
    out.write_text(json.dumps({"reference": reference, "rows": rows, "summary": summary, "is_wins_both": wins,
                               "num_seeds": len(rows) // 2}, indent=1))


if __name__ == "__main__":
    main()
