"""Kernel throughput: flowsamp MALA/HMC vs blackjax (same target, step size, chains, keys).

For each (target, kernel) pair both libraries run ``CHAINS`` vmapped chains for ``STEPS``
steps inside one jitted ``lax.scan``. Reported: time to result with compile included
(first call), steady-state time (second call), chain-steps per second, mean acceptance and
minimum bulk ESS per second (ESS over dimensions, numpyro's estimator) on the steady run.

    python benchmarks/kernels.py [--steps 5000] [--chains 64]

Needs the ``bench`` extra (``pip install -e .[bench]``) for blackjax; without it only
flowsamp is timed. Writes ``benchmarks/results/kernels.json``.
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


def _targets():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 10))
    cov = a @ a.T / 10 + np.eye(10)
    return {
        "gaussian_10d": (fs.targets.gaussian(np.zeros(10), cov), 0.05),
        "funnel_10d": (fs.targets.funnel(10) if hasattr(fs.targets, "funnel") else None, 0.05),
    }


def _time(fn):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0


def run_flowsamp(kernel, x0, steps, key):
    trace = fs.sample(key, kernel, x0, steps)
    return trace.positions, trace.acceptance_rate


_BLACKJAX_RUNS: dict = {}


def run_blackjax(algo, x0, steps, key):
    """The same scan-of-steps driver for blackjax, compiled once per algorithm object."""
    if id(algo) not in _BLACKJAX_RUNS:
        _BLACKJAX_RUNS[id(algo)] = jax.jit(_blackjax_program(algo, steps))
    return _BLACKJAX_RUNS[id(algo)](key, x0)


def _blackjax_program(algo, steps):
    def run(key, x0):
        def chain(k, x):
            state = algo.init(x)

            def body(s, t):
                s, info = algo.step(jax.random.fold_in(k, t), s)
                return s, (s.position, info.acceptance_rate)

            _, (pos, acc) = jax.lax.scan(body, state, jnp.arange(steps))
            return pos, acc.mean()

        return jax.vmap(chain)(jax.random.split(key, x0.shape[0]), x0)

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--chains", type=int, default=64)
    args = parser.parse_args()
    try:
        import blackjax
    except ImportError:
        blackjax = None
        print("blackjax not installed (pip install -e .[bench]): timing flowsamp only")

    rows = []
    for tname, (target, eps) in _targets().items():
        if target is None:
            continue
        x0 = jax.random.normal(jax.random.key(1), (args.chains, target.dim)) * 0.1
        cases = {
            "mala": (
                lambda: fs.kernels.mala(target.log_prob, eps),
                (lambda: blackjax.mala(target.log_prob, eps)) if blackjax else None,
            ),
            "hmc": (
                lambda: fs.kernels.hmc(target.log_prob, 4 * eps, 10),
                (lambda: blackjax.hmc(target.log_prob, 4 * eps, jnp.ones(target.dim), 10)) if blackjax else None,
            ),
        }
        for kname, (mk_fs, mk_bj) in cases.items():
            for lib, mk, runner in (("flowsamp", mk_fs, run_flowsamp), ("blackjax", mk_bj, run_blackjax)):
                if mk is None:
                    continue
                algo = mk()
                (_, _), first = _time(lambda: runner(algo, x0, args.steps, jax.random.key(2)))
                (pos, acc), steady = _time(lambda: runner(algo, x0, args.steps, jax.random.key(3)))
                ess = float(np.min(fs.estimators.mcmc_ess(np.asarray(pos))))
                rows.append(
                    dict(
                        target=tname,
                        kernel=kname,
                        library=lib,
                        time_to_result_s=first,
                        steady_s=steady,
                        chain_steps_per_s=args.chains * args.steps / steady,
                        acceptance=float(np.mean(acc)),
                        min_ess=ess,
                        min_ess_per_s=ess / first,
                    )
                )
                r = rows[-1]
                print(
                    f"{tname:14s} {kname:5s} {lib:9s} first {first:6.2f}s steady {steady:6.2f}s "
                    f"{r['chain_steps_per_s']:10.0f} chain-steps/s  acc {r['acceptance']:.3f} "
                    f"minESS {ess:8.0f}  minESS/s (compile incl.) {r['min_ess_per_s']:8.1f}"
                )
    out = Path(__file__).parent / "results" / "kernels.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "chains": args.chains, "backend": jax.default_backend(), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
