"""Inference Gym benchmark: flowsamp's recommended workflow against numpyro and blackjax NUTS.

Every sampler runs on the gym posterior's unconstrained space (``fs.targets.inference_gym``),
from the same over-dispersed start (uniform on [-2, 2]^d, Stan's default), in the same run:

* ``flowsamp_nuts``: flowsamp's recommended workflow, ``fs.kernels.window_adaptation`` (step size
  and mass matrix) then ``fs.kernels.nuts`` through ``fs.sample(target_ess=1000)``, which keeps
  drawing (in blocks of ``--draws``, up to ``10 * draws``) until every coordinate has 1000
  rank-normalised bulk ESS (the stopping rule looks at the ESS only; R-hat <= 1.01, tail ESS and
  divergences are judged by the verdict afterwards), and says so in its verdict when the budget
  runs out;
* ``flowsamp_flow``: ``fs.samplers.adaptive_flow_mcmc`` with a default ``fs.flows.rq_spline``
  and every option at its default, on ``--flow-chains`` (64, as in the README) chains;
* ``numpyro_nuts``: ``numpyro.infer.MCMC(NUTS(potential_fn=...))`` at its defaults,
  vectorised chains (all NUTS runs: ``--chains`` = 4 chains, ``--warmup`` warm-up steps each;
  the peers draw ``--peer-draws`` per chain, by default ``--draws``: pass ``10 * draws`` to give
  them flowsamp's whole budget, so that a peer's failure is not merely a shorter run);
  every sampler gets the same ``--chains``: 4 is Stan's default and what the R-hat < 1.01 /
  ESS > 400 rule of Vehtari et al. (2021) is calibrated for; with ``target_ess=1000`` flowsamp's
  split R-hat reaches 1.002-1.008 wherever NUTS mixes, so the recommendation stays at 4 chains
  (more vmapped NUTS chains cost about proportionally more on a CPU, each step waits for the
  deepest tree);
* ``blackjax_nuts``: ``blackjax.window_adaptation(blackjax.nuts, ...)`` per chain (vmapped),
  then ``blackjax.nuts``.

Per (target, sampler), on the draws mapped to the model's (constrained) space:

* ``max_abs_z``: the largest :math:`|z_i|` of the posterior means against the gym's ground truth,
  :math:`z_i = (\\bar x_i - \\mu_i) / \\sqrt{\\mathrm{se}_{MC,i}^2 + \\mathrm{se}_{truth,i}^2}`, with
  :math:`\\mathrm{se}_{MC,i} = s_i / \\sqrt{\\mathrm{ESS}_i}` (``fs.estimators.mcmc_ess``);
* ``max_sd_err``: the largest relative error of the posterior sds against the ground truth;
* ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``: ``fs.estimators.mcmc_verdict`` (rank-normalised
  split R-hat, bulk/tail ESS) and the verdict's ``converged`` (``verdict_ok``);
* ``claimed``: whether the flowsamp sampler's own result said ``converged`` (``None`` for the
  peers, which make no claim); a ``silent`` failure is a claim with ``max_abs_z > 4``;
* ``wall_s`` (compile and warm-up included), ``ess_per_s`` = ``min_ess_bulk / wall_s``.

Each cell runs in its own subprocess (fresh compile, a timeout, a crash stays in its cell); the
JSON is rewritten after every cell.

    python benchmarks/inference_gym.py [--quick] [--targets eight_schools,banana] [--samplers ...]

Needs the ``bench`` extra (``pip install -e .[bench]``: inference-gym, tfp-nightly, blackjax).
Writes ``benchmarks/results/inference_gym.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and its name would shadow the
# `inference_gym` package itself
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

TARGET_ESS = 1000

#: benchmark name -> (Inference Gym class, constructor kwargs)
TARGETS = {
    "eight_schools": ("EightSchools", {}),
    "banana": ("Banana", {}),
    "neals_funnel": ("NealsFunnel", {}),
    "german_credit": ("GermanCreditNumericLogisticRegression", {}),
    "brownian_motion": ("BrownianMotionUnknownScalesMissingMiddleObservations", {}),
    "ill_conditioned_gaussian": ("IllConditionedGaussian", {}),
    "stochastic_volatility": ("StochasticVolatilitySP500Small", {}),
    "item_response_theory": ("SyntheticItemResponseTheory", {}),
}
SAMPLERS = ("flowsamp_nuts", "flowsamp_flow", "numpyro_nuts", "blackjax_nuts")
QUICK_TARGETS = ("eight_schools", "banana")
RESULT_MARK = "CELL-RESULT "
NOTES = [
    "eight_schools is the gym's centred model with log_stddev ~ Normal(5, 1), a mild funnel (not the "
    "half-Cauchy prior of the classic example)",
    "ground truths are the gym's (Stan / analytic), reordered to the event's coordinates by "
    "fs.targets.inference_gym",
    "brownian_motion: the gym's ground truth disagrees with the model's own density. fs.targets.inference_gym's "
    "log_prob equals a hand-written LogNormal(0, 2) scales + Gaussian random walk + 20 observed of 30 points "
    "(softplus Jacobian) to 3e-5 at random points, and 4 x 20000 NUTS draws of it give a posterior mean of "
    "observation_noise_scale 0.1131 +- 0.0004 against the gym's 0.1011 +- 0.0006 (max |z| 28.8 over the "
    "coordinates); numpyro's and blackjax's NUTS on the same density miss it the same way (z 6.3 and 3.8), so a "
    "'silent' cell there is the truth's, not the sampler's",
]


# --------------------------------------------------------------------------- samplers (child side)


def _params_dict(params):
    if isinstance(params, dict):
        return params
    if hasattr(params, "_asdict"):
        return dict(params._asdict())
    raise TypeError(f"unexpected adaptation parameters {type(params).__name__}")


def run_flowsamp_nuts(key, target, x0, warmup, draws):
    """flowsamp's recommended workflow: window_adaptation + nuts, then fs.sample run until the
    result is there (``target_ess`` bulk ESS on every coordinate, or a budget of ``10 * draws``
    transitions per chain, after which the verdict says it ran out; R-hat, tail ESS and
    divergences are judged by the verdict)."""
    import jax

    import flowsamp as fs

    k_warm, k_draw = jax.random.split(key)
    method = f"window_adaptation+nuts, fs.sample(target_ess={TARGET_ESS})"
    t0 = time.perf_counter()
    states, params = fs.kernels.window_adaptation(fs.kernels.nuts, target.log_prob).run(k_warm, x0, warmup)
    params = _params_dict(params)
    jax.block_until_ready(states)
    t_warm = time.perf_counter() - t0

    def kernel(p):
        return fs.kernels.nuts(target.log_prob, **p)

    trace = fs.sample(k_draw, kernel, states, draws, params=params, target_ess=TARGET_ESS, max_steps=10 * draws)
    info = trace.info
    steps = getattr(info, "num_integration_steps", None)
    div = getattr(info, "is_divergent", None)
    num_div = int(np.sum(np.asarray(div))) if div is not None else int(np.sum(np.asarray(trace.num_nonfinite)))
    return dict(
        positions=np.asarray(trace.positions),
        num_divergent=num_div,
        claimed=getattr(trace, "converged", None),
        problems=getattr(trace, "problems", None),
        method=method,
        warmup_s=t_warm,
        sample_s=time.perf_counter() - t0 - t_warm,
        mean_leapfrog_steps=None if steps is None else float(np.mean(np.asarray(steps))),
    )


def run_flowsamp_flow(key, target, x0, warmup, draws):
    """adaptive_flow_mcmc with a default rq_spline flow, every option at its default."""
    import flowsamp as fs

    out = fs.samplers.adaptive_flow_mcmc(key, target.log_prob, fs.flows.rq_spline(target.dim), x0)
    return dict(
        positions=np.asarray(out.positions),
        num_divergent=None,
        claimed=getattr(out, "converged", None),
        problems=getattr(out, "problems", None),
        global_acceptance=float(out.global_acceptance),
        method="adaptive_flow_mcmc(rq_spline) defaults",
    )


def run_numpyro_nuts(key, target, x0, warmup, draws):
    """numpyro NUTS on the potential -log_prob, defaults, vectorised chains."""
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(
        NUTS(potential_fn=lambda z: -target.log_prob(z)),
        num_warmup=warmup,
        num_samples=draws,
        num_chains=x0.shape[0],
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(key, init_params=x0, extra_fields=("diverging", "num_steps"))
    pos = np.asarray(mcmc.get_samples(group_by_chain=True))
    extra = mcmc.get_extra_fields()
    div = int(np.sum(np.asarray(extra["diverging"])))
    return dict(positions=pos, num_divergent=div, claimed=None, problems=None, method="numpyro NUTS defaults",
                mean_leapfrog_steps=float(np.mean(np.asarray(extra["num_steps"]))))


def run_blackjax_nuts(key, target, x0, warmup, draws):
    """blackjax.window_adaptation(nuts) per chain under vmap, then blackjax.nuts."""
    import blackjax
    import jax

    k_warm, k_draw = jax.random.split(key)
    n = x0.shape[0]
    warm = blackjax.window_adaptation(blackjax.nuts, target.log_prob)

    @jax.jit
    def run(k_warm, k_draw, x0):
        def one(kw, kd, x):
            (state, params), _ = warm.run(kw, x, num_steps=warmup)
            step = blackjax.nuts(target.log_prob, **params).step

            def body(s, k):
                s, info = step(k, s)
                return s, (s.position, info.is_divergent, info.num_integration_steps)

            _, out = jax.lax.scan(body, state, jax.random.split(kd, draws))
            return out

        return jax.vmap(one)(jax.random.split(k_warm, n), jax.random.split(k_draw, n), x0)

    pos, div, steps = run(k_warm, k_draw, x0)
    return dict(
        positions=np.asarray(pos),
        num_divergent=int(np.sum(np.asarray(div))),
        claimed=None,
        problems=None,
        method="blackjax window_adaptation+nuts",
        mean_leapfrog_steps=float(np.mean(np.asarray(steps))),
    )


RUNNERS = {
    "flowsamp_nuts": run_flowsamp_nuts,
    "flowsamp_flow": run_flowsamp_flow,
    "numpyro_nuts": run_numpyro_nuts,
    "blackjax_nuts": run_blackjax_nuts,
}


def _finite_or_none(v):
    v = float(v)
    return v if np.isfinite(v) else None


def score(target, positions, num_divergent, wall_s):
    """Means against the ground truth, sds, verdict diagnostics, ESS/s (module docstring)."""
    import jax

    import flowsamp as fs

    x = np.asarray(jax.jit(jax.vmap(jax.vmap(target.constrain)))(positions), np.float64)
    flat = x.reshape(-1, x.shape[-1])
    mean, sd = flat.mean(0), flat.std(0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = np.asarray(fs.estimators.mcmc_ess(x), np.float64)
        se_mc = sd / np.sqrt(ess)
        se_truth = target.ground_truth_mean_se if target.ground_truth_mean_se is not None else 0.0
        z = (mean - target.ground_truth_mean) / np.sqrt(se_mc**2 + se_truth**2)
        sd_err = np.abs(sd / target.ground_truth_sd - 1.0) if target.ground_truth_sd is not None else None
    verdict = fs.estimators.mcmc_verdict(x, num_divergent=num_divergent)
    d = verdict.diagnostics
    abs_z = np.where(np.isfinite(z), np.abs(z), np.inf)
    return dict(
        max_abs_z=_finite_or_none(abs_z.max()),
        argmax_z=int(abs_z.argmax()),
        max_sd_err=None if sd_err is None else _finite_or_none(np.nanmax(sd_err)),
        max_rhat=_finite_or_none(d["max_rhat"]),
        min_ess_bulk=_finite_or_none(d["min_ess_bulk"]),
        min_ess_tail=_finite_or_none(d["min_ess_tail"]),
        ess_per_s=_finite_or_none(d["min_ess_bulk"] / wall_s),
        verdict_ok=bool(verdict.converged),
        verdict_problems=list(verdict.problems),
        num_divergent=num_divergent,
    )


def run_cell(name, sampler, chains, warmup, draws, seed):
    """One (target, sampler) cell, in this process; returns the row (timing starts before the target is built)."""
    import jax

    import flowsamp as fs

    t0 = time.perf_counter()
    cls, kwargs = TARGETS[name]
    target = fs.targets.inference_gym(cls, **kwargs)
    key = jax.random.key(seed)
    k0, k1 = jax.random.split(key)
    x0 = jax.random.uniform(k0, (chains, target.dim), minval=-2.0, maxval=2.0)
    out = RUNNERS[sampler](k1, target, x0, warmup, draws)
    wall = time.perf_counter() - t0
    row = dict(target=name, gym=cls, dim=target.dim, sampler=sampler, method=out["method"], chains=int(out["positions"].shape[0]),
               draws=int(out["positions"].shape[1]), warmup=warmup, wall_s=wall)
    row.update(score(target, out["positions"], out["num_divergent"], wall))
    row["claimed"] = out["claimed"] if out["claimed"] is None else bool(out["claimed"])
    row["problems"] = out["problems"]
    for extra in ("global_acceptance", "warmup_s", "sample_s", "mean_leapfrog_steps"):
        if extra in out:
            row[extra] = out[extra]
    row["silent"] = bool(row["claimed"]) and (row["max_abs_z"] is None or row["max_abs_z"] > 4.0)
    return row


# --------------------------------------------------------------------------- driver (parent side)


def _spawn(args, name, sampler):
    chains = args.flow_chains if sampler == "flowsamp_flow" else args.chains
    draws = args.draws if sampler.startswith("flowsamp") or args.peer_draws is None else args.peer_draws
    cmd = [sys.executable, __file__, "--_cell", name, sampler, "--chains", str(chains), "--warmup", str(args.warmup),
           "--draws", str(draws), "--seed", str(args.seed)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.cell_timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return dict(target=name, sampler=sampler, error=f"timed out after {args.cell_timeout} s", wall_s=time.perf_counter() - t0)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return dict(target=name, sampler=sampler, error=" | ".join(tail), wall_s=time.perf_counter() - t0)


def _fmt(v, f):
    return "-" if v is None else format(v, f)


def print_table(rows, header=True):
    head = f"{'target':26s} {'sampler':14s} {'max|z|':>8s} {'sd err':>7s} {'R-hat':>7s} {'minESS':>7s} {'ESS/s':>7s} {'wall s':>7s} {'div':>6s} {'steps':>6s} {'verdict':>7s} {'claimed':>7s}"
    if header:
        print(head)
        print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['target']:26s} {r['sampler']:14s} ERROR {r['error'][:90]}")
            continue
        print(f"{r['target']:26s} {r['sampler']:14s} {_fmt(r['max_abs_z'], '8.2f')} {_fmt(r['max_sd_err'], '7.2f')} "
              f"{_fmt(r['max_rhat'], '7.3f')} {_fmt(r['min_ess_bulk'], '7.0f')} {_fmt(r['ess_per_s'], '7.1f')} "
              f"{r['wall_s']:7.0f} {_fmt(r['num_divergent'], '6d')} {_fmt(r.get('mean_leapfrog_steps'), '6.0f')} {str(r['verdict_ok']):>7s} {str(r['claimed']):>7s}"
              + ("  SILENT" if r.get("silent") else ""))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="minutes-long smoke run (2 targets, short chains)")
    p.add_argument("--targets", default=None, help=f"comma-separated, from {list(TARGETS)}")
    p.add_argument("--samplers", default=",".join(SAMPLERS))
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--flow-chains", type=int, default=64, help="chains of adaptive_flow_mcmc (README: 64)")
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--peer-draws", type=int, default=None,
                   help="draws per chain of numpyro / blackjax NUTS (default --draws; 10 * draws is flowsamp's budget)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cell-timeout", type=float, default=1200.0)
    p.add_argument("--jobs", type=int, default=1, help="cells run at once (each in its own process)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "inference_gym.json"))
    p.add_argument("--_cell", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._cell is not None:
        row = run_cell(*args._cell, args.chains, args.warmup, args.draws, args.seed)
        print(RESULT_MARK + json.dumps(row))
        return
    if args.quick:
        args.warmup, args.draws = min(args.warmup, 300), min(args.draws, 300)
        args.cell_timeout = min(args.cell_timeout, 600.0)
    names = args.targets.split(",") if args.targets else list(QUICK_TARGETS if args.quick else TARGETS)
    samplers = args.samplers.split(",")
    for n in names:
        if n not in TARGETS:
            raise SystemExit(f"unknown target {n!r}; choose from {list(TARGETS)}")
    for s in samplers:
        if s not in RUNNERS:
            raise SystemExit(f"unknown sampler {s!r}; choose from {list(RUNNERS)}")
    import jax

    config = dict(chains=args.chains, flow_chains=args.flow_chains, warmup=args.warmup, draws=args.draws,
                  peer_draws=args.draws if args.peer_draws is None else args.peer_draws, seed=args.seed, quick=args.quick,
                  backend=jax.default_backend(), cpu_count=os.cpu_count(), started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    rows = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def cell(n, s):
        row = _spawn(args, n, s)
        with lock:
            rows.append(row)
            print_table([row], header=len(rows) == 1)
            sys.stdout.flush()
            out.write_text(json.dumps(dict(config=config, notes=NOTES, rows=rows), indent=1))

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for fut in [pool.submit(cell, n, s) for n in names for s in samplers]:
            fut.result()
    order = {(n, s): i for i, (n, s) in enumerate((n, s) for n in names for s in samplers)}
    rows.sort(key=lambda r: order.get((r["target"], r["sampler"]), 0))
    out.write_text(json.dumps(dict(config=config, notes=NOTES, rows=rows), indent=1))
    print()
    print_table(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
