"""Delayed acceptance vs plain RWMH/MALA on a deliberately expensive target.

Target: a 2-parameter ODE inverse problem. theta = (log k, log a); y' = -k y + a sin(t), y(0) = 1,
integrated by ``FINE`` = 1000 explicit Euler steps on [0, 10]; 20 noisy observations (sigma = 0.05)
of y; prior N(0, 1) on theta. One log-density evaluation runs the 1000-step loop. Surrogate: the
same model integrated with ``COARSE`` = 100 Euler steps (10x cheaper, biased: a classical coarse
model surrogate). Chains run one by one (``lax.map``) so ``lax.cond`` really skips the expensive
evaluation the surrogate screens out.

Reported per kernel: mean acceptance, expensive evaluations (per step, total), min bulk ESS over
theta (numpyro estimator over the chains), expensive evaluations per ESS and wall seconds per ESS
(steady run, compile excluded), all from the same process.

    python benchmarks/delayed_acceptance.py [--steps 4000] [--chains 8]
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

FINE, COARSE, T_END, SIGMA = 1000, 100, 10.0, 0.05
T_OBS = np.linspace(0.5, T_END, 20)


def solve(theta, num_steps):
    k, a = jnp.exp(theta[0]), jnp.exp(theta[1])
    dt = T_END / num_steps

    def body(i, y):
        return y + dt * (-k * y + a * jnp.sin(i * dt))

    idx = jnp.round(T_OBS / dt).astype(jnp.int32)
    # y at each observation time: run the loop once, record on the grid
    def scan_body(y, i):
        y_next = body(i, y)
        return y_next, y_next

    _, ys = jax.lax.scan(scan_body, jnp.ones((), theta.dtype), jnp.arange(num_steps))
    return ys[idx - 1]


THETA_TRUE = np.array([np.log(0.5), np.log(0.8)])
DATA = np.asarray(solve(jnp.asarray(THETA_TRUE, jnp.float32), FINE)) + SIGMA * np.random.default_rng(0).normal(size=T_OBS.size)


def make_log_prob(num_steps):
    def log_prob(theta):
        resid = (solve(theta, num_steps) - DATA) / SIGMA
        return -0.5 * jnp.sum(resid**2) - 0.5 * jnp.sum(theta**2)

    return log_prob


def chains_runner(alg, x0, steps, chains, counts_fn):
    """Jitted ``key -> (positions, is_accepted, evaluations)`` of ``chains`` chains run one by one
    (``lax.map``, so ``lax.cond`` really skips screened-out evaluations), each from ``x0``."""

    def chain(k):
        state = alg.init(x0)

        def step(s, kk):
            s, info = alg.step(kk, s)
            return s, (s.position, info.is_accepted, counts_fn(info))

        _, out = jax.lax.scan(step, state, jax.random.split(k, steps))
        return out

    return jax.jit(lambda key: jax.lax.map(chain, jax.random.split(key, chains)))


def run(alg, x0, steps, chains, key, counts_fn):
    f = chains_runner(alg, x0, steps, chains, counts_fn)
    jax.block_until_ready(f(jax.random.fold_in(key, 99)))  # compile
    t0 = time.perf_counter()
    pos, acc, evals = jax.block_until_ready(f(key))
    wall = time.perf_counter() - t0
    ess = float(np.min(fs.estimators.mcmc_ess(np.asarray(pos)[:, steps // 10 :])))
    return {
        "acceptance": float(np.mean(acc)),
        "expensive_evaluations": int(np.sum(evals)),
        "evals_per_step": float(np.mean(evals)),
        "min_ess": ess,
        "evals_per_ess": float(np.sum(evals)) / ess,
        "wall_s": wall,
        "wall_per_ess_ms": 1e3 * wall / ess,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--chains", type=int, default=8)
    args = p.parse_args()
    fine, coarse = make_log_prob(FINE), make_log_prob(COARSE)
    # start at the posterior mode region found by a short optimisation of the coarse model
    x0 = jnp.asarray(THETA_TRUE, jnp.float32)
    key = jax.random.key(0)
    one = lambda info: jnp.ones((), jnp.int32)  # noqa: E731
    mala_cost = lambda info: jnp.full((), 2, jnp.int32)  # noqa: E731  value + gradient ~ 2 evaluations
    da = lambda info: info.num_expensive_evaluations  # noqa: E731
    rw = 0.03  # RWMH scale ~ 2.4/sqrt(2) x posterior sd (pilot)
    kernels = {
        "rwmh": (fs.kernels.rwmh(fine, scale=rw), one),
        "mala": (fs.kernels.mala(fine, step_size=4e-4), mala_cost),
        "da_rwmh_coarse": (fs.kernels.delayed_acceptance(fine, coarse, fs.kernels.rwmh, scale=rw), da),
        "da_mala_coarse": (fs.kernels.delayed_acceptance(fine, coarse, fs.kernels.mala, step_size=4e-4), da),
    }
    results = {}
    for name, (alg, cost) in kernels.items():
        results[name] = run(alg, x0, args.steps, args.chains, key, cost)
        print(name, json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results[name].items()}), flush=True)
    base = results["rwmh"]
    for name, r in results.items():
        print(f"{name}: evals/ESS {r['evals_per_ess']:.2f} ({base['evals_per_ess'] / r['evals_per_ess']:.2f}x fewer than rwmh), "
              f"wall/ESS {r['wall_per_ess_ms']:.2f} ms ({base['wall_per_ess_ms'] / r['wall_per_ess_ms']:.2f}x)")
    out = Path(__file__).parent / "results" / "delayed_acceptance.json"
    out.write_text(json.dumps({"steps": args.steps, "chains": args.chains, "fine": FINE, "coarse": COARSE, "results": results}, indent=1))


if __name__ == "__main__":
    main()
