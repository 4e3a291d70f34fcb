"""Annealing samplers side by side: flowsamp smc / ais against blackjax's adaptive tempered SMC.

For each target with an exact ln Z (funnel-10, FAB's 40-mode GMM in 2-D, Rosenbrock-10, the 2-D
phi^4 free field, many-well 32) and ``--repeats`` independent runs of each sampler from the same
over-dispersed Gaussian base (scale per target below), it records per run ln Z, its reported SE
(flowsamp: from its 8 independent islands, ``flowsamp.samplers._smc_evidence``; blackjax reports none;
the islands' ln Z are recorded per run), the error, target evaluations
(gradients included) and wall time (compile included), and per sampler:

* mean |error| and the spread of ln Z over the repeats (sd) against the mean reported SE
  (calibration: sd / mean SE near 1), the fraction of runs within 4 reported SE;
* target evaluations and wall time per run.

blackjax runs at the setting of ``benchmarks/multimodal.py`` (HMC, identity mass, 10 leapfrog
steps, systematic resampling, ESS target 0.5), with its step size 0.25 scaled by the base's
scale (blackjax adapts no step size) and as many HMC moves per tempering step as give the
target evaluations per particle and step of the flowsamp run just before it (equal evaluations
per step; totals recorded, since the numbers of tempering steps differ); flowsamp at its defaults
(MALA, population-diagonal preconditioner, Robbins-Monro step size, blocks of 10 moves until the
particles decorrelate, at most 100). Per sampler also the counts of |z| > 2 and > 4 (z = error /
reported SE) and of silent failures (|z| > 4 and converged claimed).

Calibration (issue 17): with ``--samplers smc --repeats 20`` and a small ``--particles`` each run
takes seconds; per target it reports the bias (and its z over the repeats), the sd of ln Z over
the repeats against the mean reported SE (sd/SE), the fraction within 4 reported SE, and how many
wrong runs (|z| > 4) and right runs the verdict flagged (``n_wrong_flagged``, ``n_right_flagged``).

Run: ``python benchmarks/annealing.py [--targets funnel10,phi4_free] [--repeats 20] [--particles 2048]``;
writes ``benchmarks/results/annealing.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# target name -> (constructor expression, base scale)
TARGETS = {
    "funnel10": ("fs.targets.funnel(10)", 3.0),
    "gmm40": ("fs.targets.gmm40()", 25.0),
    "rosenbrock10": ("fs.targets.rosenbrock(10)", 5.0),
    "phi4_free": ("fs.targets.phi4_2d(L=8, m2=1.0, lam=0.0)", 1.0),
    "many_well32": ("fs.targets.many_well(32)", 2.0),
}


def _make(name):
    import flowsamp as fs  # noqa: F401  (used by eval)

    return eval(TARGETS[name][0])


def _base(t, scale):
    import jax.numpy as jnp

    import flowsamp as fs

    return fs.targets.gaussian(jnp.zeros(t.dim), scale**2 * jnp.eye(t.dim))


_BUILT: dict = {}


def _built(name):
    """The target and base of ``name``, built once per worker: ``fs.samplers.smc`` caches its
    compiled programs on the densities, so the repeats after the first run without compiling
    (``wall_s_first`` is the run with compilation)."""
    if name not in _BUILT:
        t = _make(name)
        _BUILT[name] = (t, _base(t, TARGETS[name][1]))
    return _BUILT[name]


def run_flowsamp(name, sampler, key, n):
    import jax

    import flowsamp as fs

    t, base = _built(name)
    t0 = time.perf_counter()
    fn = fs.samplers.smc if sampler == "smc" else fs.samplers.ais
    out = fn(key, t.log_prob, base, n, warn=False)
    jax.block_until_ready(out.particles)
    return {"log_Z": out.log_Z, "log_Z_se": out.log_Z_se, "evals": int(out.num_target_evals),
            "wall_s": time.perf_counter() - t0, "converged": bool(out.converged), "problems": out.problems,
            "steps": int(out.num_steps.max()), "island_log_Z": [float(v) for v in out.island_log_Z],
            "island_log_Z_sd": float(out.diagnostics.get("island_log_Z_sd", float("nan")))}


def run_blackjax(name, key, n, moves=10):
    import blackjax
    import jax
    import jax.numpy as jnp
    from blackjax.smc import extend_params, resampling

    t = _make(name)
    s0 = TARGETS[name][1]
    d = t.dim

    def log_prior(x):
        return -0.5 * jnp.sum(x * x) / s0**2 - d * (jnp.log(s0) + 0.5 * jnp.log(2 * jnp.pi))

    def log_lik(x):
        return t.log_prob(x) - log_prior(x)

    t0 = time.perf_counter()
    L = 10
    params = extend_params(dict(step_size=0.25 * s0, inverse_mass_matrix=jnp.ones(d), num_integration_steps=L))
    smc = blackjax.adaptive_tempered_smc(log_prior, log_lik, blackjax.hmc.build_kernel(), blackjax.hmc.init,
                                         params, resampling.systematic, 0.5, num_mcmc_steps=moves)

    # host loop over blackjax's jitted step (its while-loop form is in benchmarks/multimodal.py)
    step = jax.jit(smc.step)
    k_init, k_run = jax.random.split(key)
    st = smc.init(s0 * jax.random.normal(k_init, (n, d)))
    lz, steps = 0.0, 0
    while float(st.tempering_param) < 1.0 and steps < 1000:
        st, info = step(jax.random.fold_in(k_run, steps), st)
        lz += float(info.log_likelihood_increment)
        steps += 1
    lz, steps = float(lz), int(steps)
    return {"log_Z": lz, "log_Z_se": float("nan"), "evals": n * (1 + steps * (1 + moves * L)),
            "wall_s": time.perf_counter() - t0, "converged": True, "problems": [], "steps": steps}


def worker(name, sampler, repeats, n, moves=10):
    import jax

    rows = []
    for r in range(repeats):
        key = jax.random.key(1000 + r)
        row = run_blackjax(name, key, n, moves) if sampler == "blackjax" else run_flowsamp(name, sampler, key, n)
        rows.append(row)
        print("ROW " + json.dumps(row, default=float), flush=True)  # survives a worker timeout
    return rows


def summarise(name, sampler, rows, exact):
    lz = np.array([r["log_Z"] for r in rows])
    se = np.array([r["log_Z_se"] for r in rows])
    err = lz - exact
    out = {"target": name, "sampler": sampler, "repeats": len(rows), "exact_log_Z": exact,
           "mean_log_Z": float(lz.mean()), "mae": float(np.mean(np.abs(err))), "bias": float(err.mean()),
           "sd_log_Z": float(lz.std(ddof=1)) if len(lz) > 1 else float("nan"),
           "mean_se": float(np.nanmean(se)) if np.any(np.isfinite(se)) else float("nan"),
           "within_4se": float(np.mean(np.abs(err) < 4 * se)) if np.any(np.isfinite(se)) else float("nan"),
           "claimed": float(np.mean([r["converged"] for r in rows])),
           "n_abs_z_gt_2": int(np.sum(np.abs(err) > 2 * se)) if np.any(np.isfinite(se)) else None,
           "n_abs_z_gt_4": int(np.sum(np.abs(err) > 4 * se)) if np.any(np.isfinite(se)) else None,
           "silent_failures": int(np.sum((np.abs(err) > 4 * se) & np.array([r["converged"] for r in rows])))
           if np.any(np.isfinite(se)) else None,
           "n_wrong_flagged": int(np.sum((np.abs(err) > 4 * se) & ~np.array([r["converged"] for r in rows])))
           if np.any(np.isfinite(se)) else None,
           "n_right_flagged": int(np.sum((np.abs(err) <= 4 * se) & ~np.array([r["converged"] for r in rows])))
           if np.any(np.isfinite(se)) else None,
           # the bias in units of its SE over the repeats (sd / sqrt(repeats)): is the estimator biased?
           "bias_z": float(err.mean() / (lz.std(ddof=1) / np.sqrt(len(lz)))) if len(lz) > 1 else float("nan"),
           "evals_per_run": float(np.mean([r["evals"] for r in rows])),
           "wall_s_per_run": float(np.mean([r["wall_s"] for r in rows])),
           "wall_s_first": float(rows[0]["wall_s"]), "runs": rows}
    out["calibration"] = out["sd_log_Z"] / out["mean_se"] if np.isfinite(out["mean_se"]) else float("nan")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--samplers", default="smc,blackjax")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--particles", type=int, default=2048)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "annealing.json"))
    ap.add_argument("--worker-timeout", type=float, default=1800.0)
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        name, sampler, repeats, n, moves = a.worker
        print(json.dumps(worker(name, sampler, int(repeats), int(n), int(moves))))
        return
    results = []
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    for name in a.targets.split(","):
        exact = float(_make(name).log_Z)
        moves = 10
        for sampler in a.samplers.split(","):
            # each (target, sampler) in a fresh interpreter: wall times include compilation
            try:
                p = subprocess.run([os.sys.executable, __file__, "--worker", name, sampler, str(a.repeats),
                                    str(a.particles), str(moves)], capture_output=True, text=True,
                                   timeout=a.worker_timeout)
            except subprocess.TimeoutExpired as e:
                out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                rows = [json.loads(line[4:]) for line in out.splitlines() if line.startswith("ROW ")]
                print(f"{name} {sampler}: timed out after {a.worker_timeout:.0f} s with {len(rows)} runs", flush=True)
                if len(rows) < 2:
                    continue
            else:
                rows = [json.loads(line[4:]) for line in p.stdout.splitlines() if line.startswith("ROW ")]
                if p.returncode:
                    # a worker stopped early (killed at a deadline) still leaves its finished runs
                    print(f"{name} {sampler}: FAILED after {len(rows)} runs\n{p.stderr[-2000:]}", flush=True)
                    if len(rows) < 2:
                        continue
            s = summarise(name, sampler, rows, exact)
            if sampler == "smc":
                # blackjax at equal target evaluations per particle and tempering step: its HMC
                # moves cost 1 + moves * L evaluations per particle and step (L = 10 leapfrog)
                per = s["evals_per_run"] / a.particles / np.mean([r["steps"] for r in s["runs"]])
                moves = max(1, int(round((per - 3) / 10)))
            s["blackjax_moves"] = moves if sampler == "blackjax" else None
            results.append(s)
            print(f"{name:13s} {sampler:9s} lnZ {s['mean_log_Z']:10.4f} (exact {exact:.4f}) MAE {s['mae']:.4f} "
                  f"bias {s['bias']:+.4f} sd {s['sd_log_Z']:.4f} meanSE {s['mean_se']:.4f} "
                  f"sd/SE {s['calibration']:.2f} in4SE {s['within_4se']:.2f} claimed {s['claimed']:.2f} "
                  f"wrong-flagged {s['n_wrong_flagged']} right-flagged {s['n_right_flagged']} bias_z {s['bias_z']:+.1f} "
                  f"evals {s['evals_per_run']:.3g} wall {s['wall_s_per_run']:.1f}s (first {s['wall_s_first']:.1f}s)",
                  flush=True)
            os.makedirs(os.path.dirname(a.out), exist_ok=True)
            with open(a.out, "w") as f:
                json.dump({"meta": {"git": git, "repeats": a.repeats, "particles": a.particles,
                                    "targets": {k: TARGETS[k] for k in a.targets.split(",")}},
                           "results": results}, f, indent=1, default=float)


if __name__ == "__main__":
    main()
