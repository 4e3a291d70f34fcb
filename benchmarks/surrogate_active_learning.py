"""Surrogate-corrected MCMC with active learning, and reweighting from a learned potential.

Three parts (``--part exact|cost|reweight|all``), all figures from one process:

* ``exact``: :func:`fs.samplers.surrogate_mcmc` started from exact draws of generated targets (a 2-D
  banana, a 6-D banana with four correlated Gaussian coordinates); z-scores of the production
  moments E x, E x^2 (SE = sd / sqrt(ESS)).
* ``cost``: the expensive ODE target of ``benchmarks/delayed_acceptance.py`` (1000-step Euler inner
  loop per evaluation; coarse 100-step model as the physics surrogate). Plain RWMH and MALA on the
  fine model, delayed acceptance with the fixed coarse surrogate, active learning of a correction
  to the coarse model, and active learning of a pure MLP (Gaussian envelope). Expensive evaluations
  per ESS (everything counted: initial points, adaptation rounds, production) and wall time per
  ESS (compile, adaptation and training included for every method). Posterior means agree.
* ``reweight``: Muller-Brown at beta = 0.1 (exact quadrature reference). An MLP learned potential
  is fit with ``fs.train.fit`` to -beta V on points of the low-energy region; exact i.i.d. draws of
  the learned density by rejection from the box; ``fs.rare.reweight`` to the true one: E x, E y
  and the basin weights within 4 SE of the quadrature, ESS/N, k-hat. A deliberately bad learned
  potential (the same network at 2.5x the inverse temperature) must be flagged by the verdict.

    python benchmarks/surrogate_active_learning.py [--part all] [--chains 8] [--steps 4000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowsamp as fs

sys.path.insert(0, str(Path(__file__).parent))
import delayed_acceptance as da_bench  # noqa: E402  the expensive ODE target

OUT = Path(__file__).parent / "results" / "surrogate_active_learning.json"


# --------------------------------------------------------------------------- (i) exactness


def banana_target(dim, s0):
    """x0 ~ N(0, s0^2), x1 | x0 ~ N(x0^2/4, 1), x2.. ~ N(0, C) with C_ij = 0.5^|i-j|; exact draws.
    E x1 = s0^2/4, E x1^2 = 1 + 3 s0^4/16."""
    m = dim - 2
    cov = 0.5 ** np.abs(np.subtract.outer(np.arange(m), np.arange(m))) if m else np.zeros((0, 0))
    prec = np.linalg.inv(cov) if m else cov
    chol = np.linalg.cholesky(cov) if m else cov

    def log_prob(x):
        out = -0.5 * (x[0] ** 2 / s0**2 + (x[1] - 0.25 * x[0] ** 2) ** 2)
        if m:
            z = x[2:]
            out = out - 0.5 * z @ jnp.asarray(prec, x.dtype) @ z
        return out

    def sample(key, n):
        k0, k1, k2 = jax.random.split(key, 3)
        x0 = s0 * jax.random.normal(k0, (n,))
        cols = [x0, 0.25 * x0**2 + jax.random.normal(k1, (n,))]
        rest = jax.random.normal(k2, (n, m)) @ jnp.asarray(chol.T, jnp.float32) if m else jnp.zeros((n, 0))
        return jnp.concatenate([jnp.stack(cols, 1), rest], 1)

    mean = np.concatenate([[0.0, s0**2 / 4], np.zeros(m)])
    second = np.concatenate([[s0**2, 1 + 3 * s0**4 / 16], np.ones(m)])
    return log_prob, sample, mean, second


def part_exact(args):
    rows = {}
    for dim, s0 in ((2, 2.0), (6, 1.0)):
        log_prob, sample, mean, second = banana_target(dim, s0)
        x0 = sample(jax.random.key(10 + dim), args.chains)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fs.NotConvergedWarning)
            res = fs.samplers.surrogate_mcmc(
                jax.random.key(dim), log_prob, x0, kernel_params={"scale": 2.38 / np.sqrt(dim)},
                num_rounds=3, steps_per_round=250, num_production_steps=4000, vectorize_chains=True,
            )
        x = np.asarray(res.samples, float)
        obs = np.concatenate([x, x**2], -1)
        ess = fs.estimators.mcmc_ess(obs)
        est = obs.mean((0, 1))
        se = obs.reshape(-1, obs.shape[-1]).std(0) / np.sqrt(ess)
        z = (est - np.concatenate([mean, second])) / se
        rows[f"banana_d{dim}"] = {
            "max_abs_z": float(np.max(np.abs(z))), "z": z.round(2).tolist(), "min_ess": float(ess.min()),
            "second_stage_acceptance": res.second_stage_acceptance.round(3).tolist(),
            "heldout_error": res.heldout_error.round(3).tolist(), "converged": res.converged,
            "wall_s": time.perf_counter() - t0,
        }
        print(f"exact banana d={dim}: max|z| {rows[f'banana_d{dim}']['max_abs_z']:.2f} over {len(z)} moments, "
              f"min ESS {ess.min():.0f}, stage-2 acc {res.second_stage_acceptance.round(2)}, "
              f"held-out err {res.heldout_error.round(2)}", flush=True)
    return rows


# --------------------------------------------------------------------------- (ii) cost on an expensive target


def _summary(name, pos, evals, wall, steady):
    pos = np.asarray(pos, float)
    ess = fs.estimators.mcmc_ess(pos)
    m = pos.reshape(-1, pos.shape[-1])
    e = float(ess.min())
    row = {"min_ess": e, "expensive_evaluations": int(evals), "evals_per_ess": evals / e,
           "wall_s": wall, "wall_per_ess_ms": 1e3 * wall / e, "steady_wall_s": steady,
           "steady_wall_per_ess_ms": 1e3 * steady / e,
           "mean": m.mean(0).tolist(), "mean_se": (m.std(0) / np.sqrt(ess)).tolist()}
    print(f"{name:20s} evals {evals:6d}  min ESS {e:5.0f}  evals/ESS {row['evals_per_ess']:6.2f}  wall {wall:5.1f} s "
          f"(steady {steady:5.1f} s)  wall/ESS {row['wall_per_ess_ms']:6.2f} ms (steady {row['steady_wall_per_ess_ms']:5.2f})"
          f"  mean {np.round(row['mean'], 4)} +- {np.round(row['mean_se'], 4)}", flush=True)
    return row


def _plain(alg, x0, steps, chains, key, cost):
    """A plain kernel on the fine model, chains one by one: wall of the first call (compile
    included) and of a second, steady call."""
    one = lambda info: jnp.ones((), jnp.int32)  # noqa: E731
    f = da_bench.chains_runner(alg, x0, steps, chains, one)
    t0 = time.perf_counter()
    jax.block_until_ready(f(jax.random.fold_in(key, 99)))
    t1 = time.perf_counter()
    pos, _, _ = jax.block_until_ready(f(key))
    steady = time.perf_counter() - t1
    return pos[:, steps // 10:], chains * (1 + cost * steps), t1 - t0, steady


def _steady(timings):
    """Wall without compilation: every sampling chunk at the median production chunk time, every
    refit at the median of the refits after the first (which compiles)."""
    chunk = float(np.median(timings["production"]))
    refits = timings["refits"]
    fit = float(np.median(refits[1:])) if len(refits) > 1 else (refits[0] if refits else 0.0)
    return chunk * (len(timings["rounds"]) + len(timings["production"])) + fit * len(refits)


def part_cost(args):
    fine, coarse = da_bench.make_log_prob(da_bench.FINE), da_bench.make_log_prob(da_bench.COARSE)
    x0 = jnp.asarray(da_bench.THETA_TRUE, jnp.float32)
    x0s = jnp.tile(x0, (args.chains, 1))
    key = jax.random.key(0)
    rw = 0.03  # the delayed_acceptance benchmark's pilot scale
    rows = {}
    rows["rwmh"] = _summary("rwmh", *_plain(fs.kernels.rwmh(fine, scale=rw), x0, args.steps, args.chains, key, 1))
    rows["mala"] = _summary("mala (value+grad=2)",
                            *_plain(fs.kernels.mala(fine, step_size=4e-4), x0, args.steps, args.chains, key, 2))
    common = dict(kernel_params={"scale": rw}, steps_per_round=250, num_production_steps=args.steps)
    physics = fs.samplers.mlp_surrogate(2, hidden=(32, 32), base_log_prob=coarse)
    p0 = physics.with_moments(physics.init(jax.random.key(1)), x0, jnp.full((2,), 0.05))
    runs = {
        "da_fixed_coarse": dict(surrogate=physics, surrogate_params=p0, num_rounds=0),
        "al_coarse_plus_mlp": dict(surrogate=physics, surrogate_params=p0, num_rounds=args.rounds),
        "al_mlp_envelope": dict(surrogate=fs.samplers.mlp_surrogate(2, hidden=(32, 32)), num_rounds=args.rounds),
        "al_coarse_mlp_mala": dict(surrogate=physics, surrogate_params=p0, num_rounds=args.rounds,
                                   proposal_kernel=fs.kernels.mala, kernel_params={"step_size": 4e-4}),
    }
    for name, kw in runs.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fs.NotConvergedWarning)
            res = fs.samplers.surrogate_mcmc(key, fine, x0s, **{**common, **kw})
        wall = time.perf_counter() - t0
        rows[name] = _summary(name, res.samples, res.num_expensive_evaluations, wall, _steady(res.timings))
        rows[name].update({
            "evaluations_per_round": res.expensive_evaluations.tolist(),
            "first_stage_acceptance": res.first_stage_acceptance.round(3).tolist(),
            "second_stage_acceptance": res.second_stage_acceptance.round(3).tolist(),
            "heldout_error": res.heldout_error.round(3).tolist(),
        })
        print(f"{'':20s} per round: evals {res.expensive_evaluations.tolist()}, stage-1 acc "
              f"{res.first_stage_acceptance.round(3).tolist()}, stage-2 acc {res.second_stage_acceptance.round(3).tolist()}, "
              f"held-out err {res.heldout_error.round(3).tolist()}", flush=True)
    base = rows["rwmh"]
    for name, r in rows.items():
        r["evals_per_ess_gain_vs_rwmh"] = base["evals_per_ess"] / r["evals_per_ess"]
        r["wall_per_ess_gain_vs_rwmh"] = base["wall_per_ess_ms"] / r["wall_per_ess_ms"]
        r["steady_wall_per_ess_gain_vs_rwmh"] = base["steady_wall_per_ess_ms"] / r["steady_wall_per_ess_ms"]
        print(f"{name:20s} vs rwmh: evals/ESS {r['evals_per_ess_gain_vs_rwmh']:5.2f}x fewer, wall/ESS "
              f"{r['wall_per_ess_gain_vs_rwmh']:5.2f}x (compile included), {r['steady_wall_per_ess_gain_vs_rwmh']:5.2f}x "
              f"(steady)", flush=True)
    return rows


# --------------------------------------------------------------------------- (iii) reweighting


BOX = (-2.0, 1.3, -0.6, 2.2)  # x0, x1, y0, y1: exp(-0.1 V) outside is below 1e-12 of its peak


def _grid(h=0.004):
    x = np.arange(BOX[0], BOX[1] + h / 2, h)
    y = np.arange(BOX[2], BOX[3] + h / 2, h)
    X, Y = np.meshgrid(x, y, indexing="ij")
    return np.stack([X, Y], -1).reshape(-1, 2)


def _rejection(key, log_q, n_prop):
    """Exact draws of exp(log_q) on the box by rejection from the uniform (bound: max over the
    proposals and a fine grid, plus a margin of 0.5)."""
    k1, k2 = jax.random.split(key)
    lo, hi = jnp.array([BOX[0], BOX[2]]), jnp.array([BOX[1], BOX[3]])
    prop = lo + (hi - lo) * jax.random.uniform(k1, (n_prop, 2))
    f = jax.jit(jax.vmap(log_q))
    lq = np.asarray(f(prop))
    bound = max(lq.max(), float(np.max(np.asarray(f(jnp.asarray(_grid(0.01), jnp.float32)))))) + 0.5
    keep = np.log(np.asarray(jax.random.uniform(k2, (n_prop,)))) < lq - bound
    return np.asarray(prop)[keep], lq[keep]


def part_reweight(args):
    t = fs.targets.muller_brown(beta=0.1)
    g = _grid()
    lp = np.asarray(jax.jit(jax.vmap(t.log_prob))(jnp.asarray(g, jnp.float32)), float)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    ref_mean = (w[:, None] * g).sum(0)
    ref_modes = np.asarray(t.mode_weights)
    log_z_box = float(np.log(np.exp(lp - lp.max()).sum()) + lp.max() + 2 * np.log(0.004))
    print(f"reference (quadrature h=0.004): E[x, y] {ref_mean.round(4)}, basin weights {ref_modes.round(4)}, "
          f"ln Z on the box {log_z_box:.5f} vs target {t.log_Z:.5f}", flush=True)
    # training set: the low-energy region (V within 250 of its minimum), uniform in the box
    key = jax.random.key(3)
    lo, hi = np.array([BOX[0], BOX[2]]), np.array([BOX[1], BOX[3]])
    pts = lo + (hi - lo) * np.asarray(jax.random.uniform(key, (60000, 2)))
    ly = np.asarray(jax.vmap(t.log_prob)(jnp.asarray(pts, jnp.float32)), float)
    keep = ly > ly.max() - 25.0
    X, Y = jnp.asarray(pts[keep], jnp.float32), jnp.asarray(ly[keep], jnp.float32)
    sur = fs.samplers.mlp_surrogate(2, hidden=(64, 64))
    params = sur.with_moments(sur.init(jax.random.key(4)), X.mean(0), X.std(0))

    def loss(p, k):  # offset-free MSE on a minibatch, as surrogate_mcmc fits
        idx = jax.random.randint(k, (512,), 0, X.shape[0])
        r = jax.vmap(lambda x: sur.log_prob(p, x))(X[idx]) - Y[idx]
        r = r - r.mean()
        return jnp.mean(r**2), {}

    t0 = time.perf_counter()
    sched = optax.cosine_decay_schedule(3e-3, args.fit_steps)
    params, hist = fs.train.fit(jax.random.key(5), None, params, loss, optax.adam(sched), args.fit_steps, progress=False)
    fit_wall = time.perf_counter() - t0
    print(f"learned potential: {int(keep.sum())} training points, final centred RMSE {np.sqrt(hist.loss[-50:].mean()):.3f} "
          f"(log-density units), fit {fit_wall:.1f} s", flush=True)
    rows = {"reference_mean": ref_mean.tolist(), "reference_mode_weights": ref_modes.tolist(),
            "training_points": int(keep.sum()), "fit_rmse": float(np.sqrt(hist.loss[-50:].mean()))}
    good = lambda x: sur.log_prob(params, x)  # noqa: E731
    bad = lambda x: 2.5 * sur.log_prob(params, x)  # noqa: E731  the same network at 2.5x the inverse temperature
    for name, log_q in (("good", good), ("bad", bad)):
        xs, lq = _rejection(jax.random.key(6), log_q, args.proposals)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", fs.NotConvergedWarning)
            res = fs.rare.reweight(jnp.asarray(xs), t.log_prob, jnp.asarray(lq, jnp.float32))
        labels = np.asarray(t.mode_of(jnp.asarray(xs)))
        onehot = (labels[:, None] == np.arange(3)).astype(float)
        mw, mw_se = fs.estimators.expectation(jnp.asarray(onehot), jnp.asarray(res.log_weights))
        unweighted = onehot.mean(0)
        z_mean = (res.mean - ref_mean) / res.se
        z_modes = (np.asarray(mw) - ref_modes) / np.maximum(np.asarray(mw_se), 1e-12)
        rows[name] = {
            "num_draws": int(len(xs)), "mean": res.mean.tolist(), "se": res.se.tolist(), "z_mean": z_mean.tolist(),
            "mode_weights": np.asarray(mw).tolist(), "mode_weights_se": np.asarray(mw_se).tolist(),
            "z_modes": z_modes.tolist(), "unweighted_mean": res.learned_mean.tolist(),
            "unweighted_mode_weights": unweighted.tolist(), "ess_fraction": res.ess_fraction, "k_hat": res.k_hat,
            "converged": res.converged, "problems": res.problems, "warned": bool(caught),
        }
        print(f"{name:5s} learned potential: N {len(xs)}, ESS/N {res.ess_fraction:.3f}, k-hat {res.k_hat:.2f}, "
              f"E[x,y] {res.mean.round(4)} +- {res.se.round(4)} (z {z_mean.round(2)}; unweighted {res.learned_mean.round(4)}), "
              f"basins {np.asarray(mw).round(4)} +- {np.asarray(mw_se).round(4)} (z {z_modes.round(2)}; unweighted "
              f"{unweighted.round(4)}), converged {res.converged}, problems {res.problems}", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--part", default="all", choices=["all", "exact", "cost", "reweight"])
    p.add_argument("--chains", type=int, default=8)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fit-steps", type=int, default=3000)
    p.add_argument("--proposals", type=int, default=2_000_000)
    args = p.parse_args()
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    parts = ["exact", "cost", "reweight"] if args.part == "all" else [args.part]
    for part in parts:
        results[part] = {"args": vars(args), **globals()[f"part_{part}"](args)}
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
