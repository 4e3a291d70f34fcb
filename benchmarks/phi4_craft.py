r"""2-D phi^4 at CRAFT's configuration: CRAFT and SMC against a long HMC reference.

Target ``fs.targets.phi4_2d(L, m2=-4.75, lam=5.1)`` (Albergo-Kanwar-Shanahan form; CRAFT's point
is L = 14, Matthews et al. 2022, arXiv:2201.13117). In one run:

* **HMC reference**: ``fs.sample`` with ``fs.kernels.hmc`` (``--hmc-chains`` chains started at
  both signs of a uniform field, ``--hmc-steps`` steps, the first half dropped);
* **CRAFT** (``fs.samplers.craft``): RealNVP transport flows between ``--temps`` linear
  temperatures from the standard normal base, ``--craft-iterations`` training runs, then
  ``--eval-runs`` frozen-flow runs;
* **SMC** (``fs.samplers.smc``, read-only use of the library's engine) from the same base.

Reported per sampler: ESS per particle of the final weights, ``<|M|>/V`` (magnetisation per
site) and the susceptibility :math:`\chi_2 = \sum_y G_c(y)` with standard errors, and the z of
each against the HMC reference; for CRAFT also the particle-IMH acceptance over the evaluation
runs (``pimh_acceptance``: the flow-transport proposal accepted in an independence chain) and
the per-step ESS/N. :math:`\chi_2 = \sum_y G_c(y) = \langle M^2\rangle / V` since
:math:`\langle\phi\rangle = 0` by the Z2 symmetry (HMC chains rarely change sign at this point,
so a per-chain connected correlator would measure a single phase). Weighted estimates use the
normalised weights; their SE is the weighted standard deviation over :math:`\sqrt{\mathrm{ESS}}`.
The HMC SEs are over chains (each chain's mean one draw).

``--kernel`` (default ``hmc``, 10 leapfrog steps) moves both samplers; with MALA moves SMC at
L = 8 left the population out of equilibrium (``<|M|>/V`` z -12, flagged), with HMC it agreed
(z -1.8 on ``<|M|>/V`` and on chi2, converged, 9 s).

At CRAFT's L = 14 (``results/phi4_craft_L14.json``: ``--L 14 --particles 1024 --craft-iterations
200 --hmc-chains 32 --hmc-steps 8000``, 2 CPU cores): HMC ``<|M|>/V`` 0.4405 +- 0.0014, chi2
39.46 +- 0.17 (min bulk ESS 112, 207 sign changes); SMC 0.4480 +- 0.0029 (z +2.3), 40.51 +- 0.45
(z +2.2), ESS/N 0.69, ln Z 101.43 +- 0.28, converged, 41 s; CRAFT 0.4191 +- 0.0031 (z -6.3), 36.31
+- 0.43 (z -6.8), particle-IMH acceptance 0.556, **flagged** (its first transport, N(0, I) to
beta = 0.1, has ESS/N 0.009 and Pareto k 1.12; the evaluation runs' ln Z spread 1.37), 732 s.
With ``--schedule smc`` (the SMC run's adaptive betas, every 2nd: 16 steps from 0.0043, 0.0113,
...): CRAFT 0.4323 +- 0.0034 (z -2.2), chi2 38.23 +- 0.49 (z -2.4), final ESS/N 0.69, per-step
ESS/N 0.06-0.57, particle-IMH acceptance 0.889, ln Z 101.75 +- 0.20 (SMC's 101.43 +- 0.28),
converged, 1285 s.

Usage::

    .venv/bin/python benchmarks/phi4_craft.py [--L 8] [--particles 512] [--craft-iterations 100]
        [--kernel hmc] [--schedule linear|smc] [--json benchmarks/results/phi4_craft.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import numpy as np


def _weighted(values: np.ndarray, log_w: np.ndarray) -> tuple[float, float, float]:
    """(weighted mean, SE = weighted sd / sqrt(Kish ESS), ESS)."""
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    m = float(np.sum(w * values))
    ess = float(1.0 / np.sum(w**2))
    sd = float(np.sqrt(np.sum(w * (values - m) ** 2)))
    return m, sd / np.sqrt(ess), ess


def _observables(x: np.ndarray, log_w: np.ndarray, L: int) -> dict:
    m = x.sum(-1)
    absm, am_se, ess = _weighted(np.abs(m) / (L * L), log_w)
    chi, chi_se, _ = _weighted(m**2 / (L * L), log_w)
    return {"abs_m": absm, "abs_m_se": am_se, "chi2": chi, "chi2_se": chi_se, "ess_per_particle": ess / x.shape[0]}


def _write(path: str, out: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--L", type=int, default=8)
    ap.add_argument("--m2", type=float, default=-4.75)
    ap.add_argument("--lam", type=float, default=5.1)
    ap.add_argument("--particles", type=int, default=512)
    ap.add_argument("--temps", type=int, default=10)
    ap.add_argument("--craft-iterations", type=int, default=100)
    ap.add_argument("--eval-runs", type=int, default=10)
    ap.add_argument("--mcmc-steps", type=int, default=10)
    ap.add_argument("--smc-mcmc-steps", type=int, default=20)
    ap.add_argument("--kernel", choices=("hmc", "mala"), default="hmc",
                    help="move kernel of CRAFT and SMC (HMC, 10 leapfrog steps, as CRAFT's phi^4 runs use)")
    ap.add_argument("--smc-target-ess", type=float, default=0.5)
    ap.add_argument("--schedule", choices=("linear", "smc"), default="linear",
                    help="CRAFT's betas: --temps linear steps (CRAFT's), or the adaptive schedule of the SMC run "
                         "(island 0, every --schedule-thin-th beta), which puts the steps where the CESS needs them")
    ap.add_argument("--schedule-thin", type=int, default=2)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", default="64")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hmc-chains", type=int, default=16)
    ap.add_argument("--hmc-steps", type=int, default=4000)
    ap.add_argument("--hmc-step-size", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="benchmarks/results/phi4_craft.json")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import optax

    import flowsamp as fs

    L, V = args.L, args.L * args.L
    t = fs.targets.phi4_2d(L, args.m2, args.lam)
    rng = np.random.default_rng(args.seed)
    out: dict = {"target": f"phi4_2d(L={L}, m2={args.m2}, lam={args.lam})", "config": vars(args),
                 "fallback": None if L == 14 else f"L = {L} instead of CRAFT's 14 (CPU budget)"}

    # --- HMC reference
    t0 = time.perf_counter()
    c = args.hmc_chains
    x0 = np.where((np.arange(c) % 2 == 0)[:, None], 1.0, -1.0) * np.full((c, V), 0.3)
    x0 = x0 + 0.05 * rng.normal(size=(c, V))
    k = fs.kernels.hmc(t.log_prob, args.hmc_step_size, num_integration_steps=10)
    tr = fs.sample(jax.random.key(args.seed), k, jnp.asarray(x0, jnp.float32), args.hmc_steps, warn=False)
    xs = np.asarray(tr.positions[:, args.hmc_steps // 2:], np.float64)
    m_chain = xs.sum(-1)
    absm_chain = (np.abs(m_chain) / V).mean(1)
    chi_chain = (m_chain**2 / V).mean(1)
    out["hmc"] = {"abs_m": float(absm_chain.mean()), "abs_m_se": float(absm_chain.std(ddof=1) / np.sqrt(c)),
                  "chi2": float(chi_chain.mean()), "chi2_se": float(chi_chain.std(ddof=1) / np.sqrt(c)),
                  "sign_changes": int(np.sum(np.diff(np.sign(m_chain), axis=1) != 0)),
                  "acceptance": float(np.mean(np.asarray(tr.acceptance_rate))),
                  "min_ess_bulk": float(tr.diagnostics.get("min_ess_bulk", np.nan)),
                  "wall_s": time.perf_counter() - t0}
    print(f"HMC: <|M|>/V {out['hmc']['abs_m']:.4f} +- {out['hmc']['abs_m_se']:.4f}, chi2 {out['hmc']['chi2']:.3f} "
          f"+- {out['hmc']['chi2_se']:.3f}, acc {out['hmc']['acceptance']:.2f}, {out['hmc']['wall_s']:.0f} s", flush=True)

    _write(args.json, {**out, "partial": True})
    base = fs.targets.gaussian(jnp.zeros(V), jnp.eye(V))
    hidden = tuple(int(h) for h in args.hidden.split(","))

    betas = None
    if args.schedule == "smc":
        sm0 = fs.samplers.smc(jax.random.key(args.seed + 3), t.log_prob, base, args.particles,
                              num_mcmc_steps=args.smc_mcmc_steps, kernel=args.kernel,
                              target_ess=args.smc_target_ess, warn=False)
        sched = np.asarray(sm0.schedule[0], np.float64)
        sched = sched[np.isfinite(sched)]
        betas = np.concatenate([[0.0], sched[args.schedule_thin - 1::args.schedule_thin]])
        if betas[-1] != 1.0:
            betas = np.concatenate([betas, [1.0]])
        out["craft_betas"] = betas.tolist()
        print(f"CRAFT schedule from SMC: {betas.size - 1} steps, first {np.round(betas[:4], 4).tolist()}", flush=True)

    # --- CRAFT
    t0 = time.perf_counter()
    flow = fs.flows.realnvp(V, num_layers=args.layers, hidden=hidden)
    cr = fs.samplers.craft(jax.random.key(args.seed + 1), t.log_prob, base, flow, args.particles,
                           num_temps=args.temps, betas=betas, num_iterations=args.craft_iterations, num_eval_runs=args.eval_runs,
                           num_mcmc_steps=args.mcmc_steps, kernel=args.kernel, optimizer=optax.adam(args.lr),
                           warn=False)
    obs = _observables(np.asarray(cr.particles, np.float64), np.asarray(cr.log_weights, np.float64), L)
    out["craft"] = {**obs, "pimh_acceptance": float(cr.pimh_acceptance), "log_Z": cr.log_Z, "log_Z_se": cr.log_Z_se,
                    "step_ess_per_particle": np.asarray(cr.ess).mean(0).tolist(),
                    "train_log_Z_every_10": np.asarray(cr.train_log_Z)[::10].tolist(),
                    "converged": bool(cr.converged), "problems": list(cr.problems), "wall_s": time.perf_counter() - t0}

    print(f"CRAFT trained and evaluated: {out['craft']['wall_s']:.0f} s", flush=True)
    _write(args.json, {**out, "partial": True})

    # --- SMC
    t0 = time.perf_counter()
    sm = fs.samplers.smc(jax.random.key(args.seed + 2), t.log_prob, base, args.particles,
                        num_mcmc_steps=args.smc_mcmc_steps, kernel=args.kernel, target_ess=args.smc_target_ess,
                        warn=False)
    obs = _observables(np.asarray(sm.particles, np.float64), np.asarray(sm.log_weights, np.float64), L)
    out["smc"] = {**obs, "log_Z": sm.log_Z, "log_Z_se": sm.log_Z_se, "num_steps": np.asarray(sm.num_steps).tolist(),
                  "num_target_evals": int(sm.num_target_evals), "converged": bool(sm.converged),
                  "problems": list(sm.problems), "wall_s": time.perf_counter() - t0}

    ref = out["hmc"]
    for name in ("craft", "smc"):
        r = out[name]
        for q in ("abs_m", "chi2"):
            r[f"z_{q}"] = (r[q] - ref[q]) / float(np.hypot(r[f"{q}_se"], ref[f"{q}_se"]))
        print(f"{name.upper()}: ESS/N {r['ess_per_particle']:.3f}, <|M|>/V {r['abs_m']:.4f} +- {r['abs_m_se']:.4f} "
              f"(z {r['z_abs_m']:+.1f}), chi2 {r['chi2']:.3f} +- {r['chi2_se']:.3f} (z {r['z_chi2']:+.1f}), "
              f"ln Z {r['log_Z']:.3f} +- {r['log_Z_se']:.3f}, {r['wall_s']:.0f} s"
              + (f", pIMH acceptance {r['pimh_acceptance']:.3f}" if name == "craft" else ""), flush=True)
    out["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out["updated"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    _write(args.json, out)
    return out


if __name__ == "__main__":
    main()
