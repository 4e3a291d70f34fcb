"""Annealing against mode collapse (seed 004): reverse-KL RealNVP on a two-mode mixture.

Target: equal-weight mixture of N(0, I) and N(a e_1, I) in ``--dim`` dimensions (separation a in
sigma units). The flow (RealNVP, standard-normal base: at init it sits on the first mode, the
classic start of "vanishing weight" collapse) is trained by ``fs.train.annealed_reverse_kl`` on the tempered target
:math:`p^{\\beta_t}` with a geometric temperature schedule

    T_t = max(1, T0 * exp(-r t)),  r = ln(T0) / K   (T reaches 1 after K steps),

for a grid of initial temperatures T0 and annealing lengths K, each cell with ``--seeds``
independent seeds (vmapped ``fs.train.fit_steps``), ``--steps`` steps in all. A run has
*collapsed* when fewer than 10 % of the exact weight of some mode is in the trained flow's
samples (4000 draws; a flow covering both modes has 0.5 / 0.5).

The seed's claim: an appropriately chosen annealing scheme robustly prevents mode collapse
(collapse fraction falls with T0 and with slower annealing).

    python benchmarks/annealing_mode_collapse.py [--seeds 50] [--steps 1000] [--a 6]

Writes ``benchmarks/results/annealing_mode_collapse.json`` and prints the table.
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

RESULTS = Path(__file__).parent / "results" / "annealing_mode_collapse.json"


def build(dim, a, steps, batch=256, num_eval=4000):
    means = np.zeros((2, dim))
    means[1, 0] = a
    target = fs.targets.gaussian_mixture(means, 1.0)
    flow = fs.flows.realnvp(dim, num_layers=4, hidden=(32, 32))
    opt = optax.adam(1e-3)

    @jax.jit
    def run(keys, t0, rate):
        def one(key):
            sched = lambda step: 1.0 / jnp.maximum(1.0, t0 * jnp.exp(-rate * step))  # noqa: E731
            loss = fs.train.annealed_reverse_kl(flow, target.log_prob, batch, sched)
            params = flow.init(key)
            params, _, rec = fs.train.fit_steps(loss, opt, params, opt.init(params), key, steps)
            x, _ = flow.sample_and_log_prob(params, jax.random.fold_in(key, 7), num_eval)
            labels = jax.vmap(target.mode_of)(x)
            frac = jnp.mean(labels == 0)
            return frac, rec["aux"]["ess"][-50:].mean()

        return jax.vmap(one)(keys)

    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--a", type=float, default=6.0)
    ap.add_argument("--t0", default="1,5,25")
    ap.add_argument("--k", default="200,700")
    args = ap.parse_args()
    run = build(args.dim, args.a, args.steps)
    keys = jax.random.split(jax.random.key(2026), args.seeds)
    cells = [(1.0, 0)] + [(float(t), int(k)) for t in args.t0.split(",") if float(t) > 1 for k in args.k.split(",")]
    rows = []
    t_start = time.perf_counter()
    for t0, k in cells:
        rate = np.log(t0) / k if k > 0 else 0.0
        frac, ess = jax.device_get(run(keys, jnp.float32(t0), jnp.float32(rate)))
        frac = np.asarray(frac)
        collapsed = (frac < 0.05) | (frac > 0.95)
        p = float(collapsed.mean())
        rows.append({"T0": t0, "K": k, "collapse_fraction": p,
                     "collapse_se": float(np.sqrt(max(p * (1 - p), 1e-12) / len(frac))),
                     "median_ess": float(np.median(ess)), "num_seeds": int(len(frac))})
        print(f"T0={t0:5.1f} K={k:5d}  collapsed {collapsed.sum():3d}/{len(frac)}  "
              f"({p:.2f} +- {rows[-1]['collapse_se']:.2f})  median ESS/N {np.median(ess):.3f}", flush=True)
    base = rows[0]["collapse_fraction"]
    best = min(rows[1:], key=lambda r: r["collapse_fraction"])
    claim = bool(best["collapse_fraction"] <= 0.02 and base >= 0.2)
    out = {"dim": args.dim, "a": args.a, "steps": args.steps, "rows": rows,
           "no_annealing_collapse": base, "best_schedule": best, "claim_held": claim,
           "wall_s": time.perf_counter() - t_start}
    print(f"no annealing: {base:.2f} collapsed; best schedule T0={best['T0']} K={best['K']}: "
          f"{best['collapse_fraction']:.2f}; seed claim (a schedule robustly prevents collapse) held: {claim}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
