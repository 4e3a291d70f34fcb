"""Lost and far modes: does ``adaptive_flow_mcmc``'s verdict say when production missed a mode?

Cases (``--cases``, names below): seeded ``fs.targets.mixture_benchmark`` mixtures with 64 chains
started in mode 0 (``m_0 + N(0, I)``), every option at its default (``mode_of`` passed unless
the name ends in ``-nolabels``), and unimodal / well-mixed targets for the false-alarm side
(a rotated Gaussian with sds log-spaced 0.5..5, Haario's twisted Gaussian with b = 0.03).
For each run it records the exact and estimated mode weights (``mode_of`` of the production
draws), the largest weight error, ``converged``, ``problems``, the lost-region check's regions
(:mod:`flowsamp.samplers._flow_mcmc_coverage`) and the exploration's rounds (the check round of
:mod:`flowsamp.samplers._flow_mcmc_explore` included) with their wall times.

    python benchmarks/lost_modes.py --cases vanish-d6,gauss-d10 --out benchmarks/results/lost_modes.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

CASES = {
    # (kind, dim, num_modes, separation, weights, seed, sampler key)
    "vanish-d6": ("mix", 6, 3, 18.0, "dirichlet", 11, 0),  # the case found in review
    "vanish-d6-key1": ("mix", 6, 3, 18.0, "dirichlet", 11, 1),
    "vanish-d6-w03": ("mix", 6, 3, 18.0, [0.03, 0.37, 0.60], 11, 0),
    "vanish-d4": ("mix", 4, 3, 18.0, "dirichlet", 11, 0),
    "vanish-d8-w013": ("mix", 8, 3, 18.0, [0.013, 0.383, 0.604], 11, 0),
    "vanish-d6-w013-s12": ("mix", 6, 3, 18.0, [0.013, 0.383, 0.604], 12, 0),
    "far-d4k4s25": ("mix", 4, 4, 25.0, "balanced", 0, 0),
    "far-d2k5s30": ("mix", 2, 5, 30.0, "balanced", 0, 0),
    "far-d8k4s30": ("mix", 8, 4, 30.0, "balanced", 0, 0),
    "mix-d2k4s8": ("mix", 2, 4, 8.0, "balanced", 0, 0),
    "mix-d6k4s8": ("mix", 6, 4, 8.0, [0.1, 0.2, 0.3, 0.4], 0, 0),
    "gauss-d2": ("gauss", 2, 1, 0.0, None, 1, 0),
    "gauss-d10": ("gauss", 10, 1, 0.0, None, 2, 0),
    "gauss-d50": ("gauss", 50, 1, 0.0, None, 3, 0),
    "banana-d4": ("banana", 4, 1, 0.0, None, 0, 0),
}


def make_target(kind, dim, k, sep, weights, seed):
    import jax.numpy as jnp

    import flowsamp as fs

    if kind == "mix":
        return fs.targets.mixture_benchmark(dim, k, sep, weights, seed), True
    if kind == "gauss":
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        return fs.targets.gaussian(np.zeros(dim), (q * np.geomspace(0.5, 5.0, dim) ** 2) @ q.T), False

    class Banana:  # Haario et al.'s twisted Gaussian: x1 sd 10, x2 + b x1^2 - 100 b unit normal, b = 0.03
        num_modes, mode_weights, means = 1, np.ones(1), np.zeros((1, dim))

        @staticmethod
        def log_prob(x):
            y = x[1] + 0.03 * x[0] ** 2 - 3.0
            return -0.5 * (x[0] / 10.0) ** 2 - 0.5 * y ** 2 - 0.5 * jnp.sum(x[2:] ** 2)

        @staticmethod
        def mode_of(x):
            return jnp.zeros(x.shape[:-1], jnp.int32)

    Banana.dim = dim
    return Banana(), False


def run(name: str) -> dict:
    import jax
    import jax.numpy as jnp

    import flowsamp as fs

    kind, dim, k, sep, weights, seed, key = CASES[name.removesuffix("-nolabels")]
    t, labelled = make_target(kind, dim, k, sep, weights, seed)
    z = np.asarray(jax.random.normal(jax.random.key(1000 + seed), (64, dim)), np.float32)
    x0 = (np.asarray(t.means[0], np.float32) + z) if labelled else z
    kw = {"mode_of": t.mode_of} if labelled and not name.endswith("-nolabels") else {}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fs.samplers.adaptive_flow_mcmc(jax.random.key(key), t.log_prob, fs.flows.rq_spline(dim), x0, **kw)
    wall = time.perf_counter() - t0
    pos = np.asarray(out.positions).reshape(-1, dim)
    lab = np.asarray(jax.jit(t.mode_of)(jnp.asarray(pos)))
    w = np.bincount(lab, minlength=t.num_modes) / lab.size
    exact = np.asarray(t.mode_weights)
    d = out.diagnostics
    return dict(
        case=name, wall_s=wall, exact=exact.tolist(), estimate=w.tolist(), max_error=float(np.max(np.abs(w - exact))),
        converged=bool(out.converged), problems=list(out.problems), notes=list(d.get("notes", [])),
        training_loops=int(out.num_training_loops), global_acceptance=float(out.global_acceptance),
        min_ess_bulk=float(d.get("min_ess_bulk", np.nan)), coverage_threshold=d.get("coverage_threshold"),
        coverage_reference_ess=d.get("coverage_reference_ess"), coverage_wall_s=d.get("coverage_wall_s"),
        coverage=[{a: (float(b) if isinstance(b, (float, np.floating)) else b) for a, b in r.items()}
                  for r in d.get("coverage", [])],
        rounds=list(out.exploration.rounds) if out.exploration is not None else [],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results = []
    for name in args.cases.split(","):
        r = run(name)
        results.append(r)
        print(json.dumps({a: r[a] for a in ("case", "max_error", "converged", "problems", "wall_s")}), flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
