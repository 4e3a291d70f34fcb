"""Equivariant CNF on the torus for a 2-D binary soft-sphere mixture (N = 16, periodic).

1. Reference: MALA chains (``fs.sample`` with ``fs.kernels.mala``) from jittered lattices;
   energy per particle and the pair histogram with SE from the bulk ESS.
2. Training data: thinned reference configurations, each shifted by a uniform random
   translation (the target and the flow are translation invariant).
3. ``fs.flows.torus_cnf`` (pair messages over minimum-image displacements, exact structural
   divergence) trained by ``fs.train.flow_matching`` (geodesic interpolant on the torus).
4. ``fs.flows.check_log_q`` (raises if log q is inconsistent), then importance sampling with
   the flow: ESS/N, reweighted energy and g(r) against the reference in SE (4 SE rule).

    python benchmarks/torus_particles.py [--chains 64 --steps 6000 --num-is 2000 --train-steps 3000]

Writes ``benchmarks/results/torus_particles.json`` and ``torus_particles.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowsamp as fs
from flowsamp.targets.soft_spheres import pair_correlation, soft_sphere_mixture

RESULTS = Path(__file__).parent / "results"


def observables(target, edges):
    def f(x):
        return jnp.concatenate([target.energy(x)[None], target.pair_histogram(x, edges)])

    return jax.vmap(f)


def reference(key, target, edges, chains, steps, step_size, burn):
    start = jnp.asarray(target.lattice())
    jitter = 0.05 * jax.random.normal(jax.random.fold_in(key, 0), (chains, target.dim))
    t0 = time.perf_counter()
    trace = fs.sample(jax.random.fold_in(key, 1), fs.kernels.mala(target.log_prob, step_size=step_size),
                      start + jitter, steps, thin=10, warn=False)
    wall = time.perf_counter() - t0
    pos = trace.positions[:, burn // 10:]
    obs = np.asarray(jax.vmap(observables(target, edges))(pos))  # (C, S, 1 + K)
    mean = obs.reshape(-1, obs.shape[-1]).mean(0)
    ess = np.asarray(fs.estimators.mcmc_ess(obs))
    se = obs.reshape(-1, obs.shape[-1]).std(0) / np.sqrt(np.where(np.isfinite(ess), ess, 1.0))
    acc = float(np.mean(trace.info.acceptance_rate))
    return pos, mean, se, ess, acc, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--step-size", type=float, default=0.002)
    ap.add_argument("--num-is", type=int, default=2000)
    ap.add_argument("--train-steps", type=int, default=3000)
    ap.add_argument("--density", type=float, default=0.5)
    ap.add_argument("--x64", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    key = jax.random.key(args.seed)
    target = soft_sphere_mixture(16, args.density, 1.0)
    L = target.box_length
    edges = np.linspace(0.8, L / 2, 11)
    pos, ref_mean, ref_se, ref_ess, acc, ref_wall = reference(
        jax.random.fold_in(key, 0), target, edges, args.chains, args.steps, args.step_size, args.steps // 5)
    print(f"reference: acceptance {acc:.3f}, min ESS {ref_ess.min():.0f}, e = {ref_mean[0]:.4f} +- {ref_se[0]:.4f}, "
          f"{ref_wall:.0f} s", flush=True)

    data = np.asarray(pos).reshape(-1, target.dim)
    shift = np.asarray(jax.random.uniform(jax.random.fold_in(key, 2), (data.shape[0], 2), maxval=L))
    data = np.mod(data + np.tile(shift, 16), L)
    flow = fs.flows.torus_cnf(16, 2, L, target.species, hidden=(32, 32), num_fourier=6)
    params = flow.init(jax.random.fold_in(key, 3))
    loss = fs.train.flow_matching(flow, jnp.asarray(data), batch_size=128)
    opt = optax.adam(optax.cosine_decay_schedule(2e-3, args.train_steps))
    t0 = time.perf_counter()
    params, hist = fs.train.fit(jax.random.fold_in(key, 4), flow, params, loss, opt, args.train_steps,
                                progress=False)
    jax.block_until_ready(params)
    train_s = time.perf_counter() - t0
    print(f"flow matching: {train_s:.0f} s, loss {np.mean(hist.loss[:50]):.3f} -> {np.mean(hist.loss[-100:]):.3f}",
          flush=True)

    t0 = time.perf_counter()
    check = fs.flows.check_log_q(flow, params, jax.random.fold_in(key, 5), 64, what="torus cnf")
    res = fs.importance_sampling(jax.random.fold_in(key, 6), flow, params, target.log_prob, args.num_is,
                                 batch_size=500, warn=False)
    is_s = time.perf_counter() - t0
    obs = observables(target, edges)(res.samples)
    mean, se = (np.asarray(a) for a in fs.estimators.expectation(obs, res.log_weights))
    raw = np.asarray(obs).mean(0)
    z = (mean - ref_mean) / np.sqrt(se**2 + ref_se**2)
    g_ref = pair_correlation(target, ref_mean[1:], edges)
    g_is = pair_correlation(target, mean[1:], edges)
    g_raw = pair_correlation(target, raw[1:], edges)
    scale = g_ref / np.maximum(ref_mean[1:], 1e-300)
    out = {
        "target": repr(target), "density": args.density, "x64": bool(args.x64),
        "reference": {"chains": args.chains, "steps": args.steps, "step_size": args.step_size, "acceptance": acc,
                      "min_ess": float(ref_ess.min()), "wall_s": ref_wall},
        "energy": {"reference": float(ref_mean[0]), "reference_se": float(ref_se[0]), "reweighted": float(mean[0]),
                   "reweighted_se": float(se[0]), "raw_flow": float(raw[0]), "z": float(z[0])},
        "g_r": {"r_mid": (0.5 * (edges[1:] + edges[:-1])).tolist(), "reference": g_ref.tolist(),
                "reference_se": (ref_se[1:] * scale).tolist(), "reweighted": g_is.tolist(),
                "reweighted_se": (se[1:] * scale).tolist(), "raw_flow": g_raw.tolist(), "z": z[1:].tolist(),
                "max_abs_z": float(np.max(np.abs(z[1:])))},
        "ess_over_n": float(res.ess) / args.num_is, "pareto_k": float(res.pareto_k),
        "num_nonfinite": int(res.num_nonfinite), "check_log_q": check,
        "train_steps": args.train_steps, "train_s": train_s, "is_s": is_s, "num_is": args.num_is,
        "all_within_4se": bool(np.all(np.abs(z) < 4)),
    }
    print(json.dumps({k: out[k] for k in ("energy", "ess_over_n", "pareto_k", "all_within_4se")}, indent=1))
    print("g(r) z:", np.round(z[1:], 2).tolist())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "torus_particles.json").write_text(json.dumps(out, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        r = np.asarray(out["g_r"]["r_mid"])
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.errorbar(r, g_ref, 4 * np.asarray(out["g_r"]["reference_se"]), fmt="k-", label="MALA reference (4 SE)")
        ax.errorbar(r + 0.02, g_is, 4 * np.asarray(out["g_r"]["reweighted_se"]), fmt="o", label="CNF reweighted (4 SE)")
        ax.plot(r, g_raw, "--", label="CNF raw")
        ax.set_xlabel("r"); ax.set_ylabel("g(r)")
        ax.set_title(f"soft-sphere mixture N=16, rho={args.density}: ESS/N {out['ess_over_n']:.2f}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(RESULTS / "torus_particles.png", dpi=120)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
