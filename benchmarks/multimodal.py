r"""Multimodal benchmark: recovery of relative mode weights by mode separation and dimension.

A grid of seeded Gaussian mixtures (``fs.targets.mixture_benchmark``: unit-covariance
components, minimum pairwise centre distance ``separation`` sigma, exact mode weights and
``ln Z``) is run, in the same invocation, by

* ``afm``  -- ``fs.samplers.adaptive_flow_mcmc`` at its defaults (flow ``fs.flows.rq_spline(dim)``
  at its defaults; ``mode_of=target.mode_of`` and ``num_modes=`` passed when the sampler accepts them);
* ``smc``  -- ``fs.samplers.smc`` at its defaults (MALA moves, 8 islands) from the over-dispersed
  Gaussian base (below), one run of ``SMC_RUNS * SMC_PARTICLES`` particles, SEs from its islands;
* ``tempered_smc`` -- ``fs.samplers.tempered_smc`` (RWMH moves) from the same base, at its
  defaults, ``SMC_RUNS`` independent runs of ``SMC_PARTICLES`` particles;
* ``pt`` -- ``fs.samplers.parallel_tempering`` at its defaults from the MCMC starting points;
* ``mala`` (and ``hmc`` on request) -- ``fs.kernels.dual_averaging_adaptation`` warm-up
  (``WARMUP`` steps) then ``fs.sample`` (``target_ess=MCMC_TARGET_ESS``, ``max_steps``, ``mode_of``
  where ``fs.sample`` accepts them);
* ``flowmc`` -- flowMC 0.6 (RQSpline + MALA bundle) at its defaults through
  ``benchmarks/_flowmc_runner.py`` (peer, ``bench`` extra);
* ``blackjax_smc`` -- ``blackjax.adaptive_tempered_smc`` (peer) from the same base: HMC moves
  (identity mass, step 0.25, 10 leapfrog steps), 10 MCMC steps per tempering step (blackjax's
  default), target ESS 0.5, systematic resampling, ``SMC_RUNS`` runs of ``SMC_PARTICLES``
  particles (vmapped in one program). blackjax has no default move; this one is fixed for every
  cell, not tuned.

Every MCMC sampler gets the same ``CHAINS`` chains and the same starting points: either all in
mode 0 (``m_0 + N(0, I)``, start ``"one"``) or over-dispersed (``N(0, s_0^2 I)`` with
``s_0 = 2 sqrt(tr Cov_p / d)``, twice the target's rms sd per coordinate, start ``"over"``);
the SMC samplers start from that over-dispersed base in every cell (a start in one mode does
not apply to them: in ``"one"`` cells they measure the cell's target from the same base) with
likelihood ``p / N(0, s_0^2 I)``.

Per cell and sampler the JSON records the estimated mode weights, their SE, the maximum
absolute weight error and its z-score (error / quadrature sum of the estimate's SE and the
target's ``mode_weights_se``), the time to result (wall time of the sampler call until the
samples are on the host, compile included, in a fresh process per job; ``process_s`` adds
the import), whether the sampler **claimed** convergence (``out.converged``; a sampler or peer
without a verdict counts as claiming it) and its ``problems``. SEs: MCMC from the spread of
the per-chain mode fractions between chains (``sd / sqrt(chains)``; zero when every chain
has the same fractions, e.g. all stuck in one mode), SMC from the spread between runs.

**Silent failure** = claimed convergence and some weight off by more than 4 SE and more
than 0.02. A job that times out or crashes is recorded as such (no estimate, not silent).

Budget: the jobs of one sampler run in one worker process (jax and flowsamp imported once:
``import_s``; every target is a new static argument, so nothing compiled is reused between
cells) with a wall-clock cap per job (``--cap``, default 240 s; ``--quick`` 150 s): a job over
the cap is killed, recorded as ``timeout``, and the rest go to a fresh worker. No job starts
after ``--deadline`` (UTC ``HH:MM``) and none runs past it. The JSON is rewritten after every
job (merged with the existing file, so runs of different samplers accumulate), so a partial
run still leaves its results. Samplers run in the order given, each over all cells, the cells in an order whose every
prefix spreads over dimensions and kinds of cell.

Usage::

    .venv-bench/bin/python benchmarks/multimodal.py [--quick] [--cells c1,c2|all]
        [--samplers afm,smc,mala] [--peers/--no-peers] [--cap 240] [--deadline 19:35]
        [--json benchmarks/results/multimodal.json] [--fresh]
    .venv-bench/bin/python benchmarks/multimodal.py --table   # print the table of the JSON
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import datetime  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import zlib  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_JSON = os.path.join(HERE, "results", "multimodal.json")

CHAINS = 64
WARMUP = 1000
MCMC_BLOCK = 1000
MCMC_TARGET_ESS = 1000.0
MCMC_MAX_STEPS = 5000
SMC_RUNS = 4
SMC_PARTICLES = 2048
FLOWSAMP = ("afm", "smc", "tempered_smc", "mala", "hmc", "pt")
PEERS = ("flowmc", "blackjax_smc")
SMC_SAMPLERS = ("smc", "tempered_smc", "blackjax_smc")
DEFAULT_SAMPLERS = ("afm", "smc", "pt", "mala")


# --------------------------------------------------------------------------- the grid
def _cell(dim, k, sep, weights, start, seed=0):
    wname = weights if isinstance(weights, str) else "2/3-1/3" if list(weights) == [2 / 3, 1 / 3] else "given"
    name = f"d{dim}-k{k}-s{sep:g}-{wname.replace('/', '')}-{start}"
    return name, dict(dim=dim, num_modes=k, separation=float(sep), weights=weights, start=start, seed=seed)


def full_grid() -> dict:
    """32 cells: for each dim in 2..64, five kinds of cell, plus two 8-mode far-apart ones."""
    cells = {}
    for i, d in enumerate((2, 4, 8, 16, 32, 64)):
        for spec in (
            (d, 2, 2.0, [2 / 3, 1 / 3], "over"),  # overlapping, imbalanced: cells != component weights
            (d, 2, 8.0, [2 / 3, 1 / 3], "one"),  # separated, imbalanced, all chains in one mode
            (d, 4, 4.0, "balanced", "over"),  # moderately separated
            (d, 4 + i % 5, 12.0, "dirichlet", "over"),  # 4-8 modes, random weights, well separated
            (d, 4, 20.0, "balanced", "one"),  # far apart, all chains in one mode
        ):
            name, c = _cell(*spec, seed=d)
            c["priority"] = ((len(cells) % 5 - i) % 5, i)  # job order: any prefix spreads over dims and kinds
            cells[name] = c
    for d in (8, 32):
        name, c = _cell(d, 8, 20.0, "dirichlet", "over", seed=100 + d)
        c["priority"] = (5, d)
        cells[name] = c
    return cells


def quick_grid() -> dict:
    cells = {}
    for spec in ((2, 2, 2.0, [2 / 3, 1 / 3], "over"), (4, 4, 8.0, "dirichlet", "over"), (2, 4, 8.0, "balanced", "one")):
        name, c = _cell(*spec, seed=1)
        cells[name] = c
    return cells


# --------------------------------------------------------------------------- worker side
def _make_target(spec):
    import flowsamp as fs

    return fs.targets.mixture_benchmark(spec["dim"], spec["num_modes"], spec["separation"], spec["weights"], spec["seed"])


def _base_scale(t) -> float:
    w, m = np.asarray(t.weights), np.asarray(t.means)
    mbar = w @ m
    tr = float(w @ np.sum((m - mbar) ** 2, axis=1)) + t.dim
    return 2.0 * np.sqrt(tr / t.dim)


def _initial_positions(key, t, spec, n):
    import jax

    z = np.asarray(jax.random.normal(key, (n, t.dim)), np.float32)
    if spec["start"] == "one":
        return np.asarray(t.means[0], np.float32) + z
    return np.float32(_base_scale(t)) * z


def _labels(t, x):
    import jax
    import jax.numpy as jnp

    x = np.asarray(x)
    flat = x.reshape(-1, x.shape[-1])
    f = jax.jit(t.mode_of)
    out = np.concatenate([np.asarray(f(jnp.asarray(flat[i : i + 65536]))) for i in range(0, len(flat), 65536)])
    return out.reshape(x.shape[:-1])


def _group_fractions(labels, k, weights=None):
    """(groups, ...) labels [and normalised weights per group] -> per-group mode fractions (groups, k)."""
    labels = labels.reshape(labels.shape[0], -1)
    if weights is None:
        return np.stack([np.bincount(row, minlength=k)[:k] / row.size for row in labels])
    weights = np.asarray(weights, np.float64).reshape(labels.shape)
    weights = weights / weights.sum(axis=1, keepdims=True)
    return np.stack([np.bincount(row, weights=w, minlength=k)[:k] for row, w in zip(labels, weights)])


def _accepts(fn, name, config_cls=None) -> bool:
    params = inspect.signature(fn).parameters
    if name in params:
        return True
    if config_cls is not None:
        import dataclasses

        return name in {f.name for f in dataclasses.fields(config_cls)}
    return False


def _verdict(out):
    conv = getattr(out, "converged", None)
    probs = getattr(out, "problems", None)
    return (True if conv is None else bool(conv)), ("none" if conv is None else "flowsamp"), list(probs or [])


def run_afm(t, spec, key):
    import jax

    import flowsamp as fs

    try:
        from flowsamp.samplers._flow_mcmc_config import AdaptiveFlowConfig
    except ImportError:  # pragma: no cover
        AdaptiveFlowConfig = None
    k0, k1 = jax.random.split(key)
    x0 = _initial_positions(k0, t, spec, CHAINS)
    kw = {}
    for name, val in (("mode_of", t.mode_of), ("num_modes", t.num_modes)):
        if _accepts(fs.samplers.adaptive_flow_mcmc, name, AdaptiveFlowConfig):
            kw[name] = val
    t0 = time.perf_counter()
    flow = fs.flows.rq_spline(t.dim)
    out = fs.samplers.adaptive_flow_mcmc(k1, t.log_prob, flow, x0, **kw)
    pos = np.asarray(out.positions)
    wall = time.perf_counter() - t0
    claimed, vsrc, probs = _verdict(out)
    extra = {"options_passed": sorted(kw), "training_loops": int(getattr(out, "num_training_loops", -1)),
             "global_acceptance": float(getattr(out, "global_acceptance", np.nan)),
             "local_acceptance": float(getattr(out, "local_acceptance", np.nan)), "draws_per_chain": int(pos.shape[1])}
    return _labels(t, pos), wall, claimed, vsrc, probs, extra


def run_local(t, spec, key, kind):
    import jax

    import flowsamp as fs

    k0, k1, k2 = jax.random.split(key, 3)
    x0 = _initial_positions(k0, t, spec, CHAINS)
    ctor = fs.kernels.mala if kind == "mala" else fs.kernels.hmc
    target_acc = {"mala": 0.574, "hmc": 0.65}[kind]
    try:
        from flowsamp.kernels.adaptation import TARGET_ACCEPTANCE

        target_acc = TARGET_ACCEPTANCE[kind]
    except (ImportError, KeyError):
        pass

    def factory(eps):
        return ctor(t.log_prob, eps)

    t0 = time.perf_counter()
    adapted = fs.kernels.dual_averaging_adaptation(k1, factory, x0, WARMUP, target_acc)
    kw = {}
    for name, val in (("mode_of", t.mode_of), ("num_modes", t.num_modes), ("target_ess", MCMC_TARGET_ESS),
                      ("max_steps", MCMC_MAX_STEPS)):
        if _accepts(fs.sample, name):
            kw[name] = val
    trace = fs.sample(k2, factory(adapted.step_size), adapted.state, MCMC_BLOCK, **kw)
    pos = np.asarray(trace.positions)
    wall = time.perf_counter() - t0
    claimed, vsrc, probs = _verdict(trace)
    extra = {"options_passed": sorted(kw), "step_size": float(adapted.step_size),
             "acceptance": float(np.mean(np.asarray(trace.acceptance_rate))), "draws_per_chain": int(pos.shape[1])}
    return _labels(t, pos), wall, claimed, vsrc, probs, extra


def _gauss_base(t):
    import jax.numpy as jnp

    s0 = _base_scale(t)
    d = t.dim

    def log_prior(x):
        return -0.5 * jnp.sum(x * x) / s0**2 - d * (jnp.log(s0) + 0.5 * jnp.log(2 * jnp.pi))

    def log_lik(x):
        return t.log_prob(x) - log_prior(x)

    return s0, log_prior, log_lik


def run_smc(t, spec, key):
    import jax

    import flowsamp as fs

    s0, log_prior, log_lik = _gauss_base(t)
    kw = {}
    for name, val in (("mode_of", t.mode_of), ("num_modes", t.num_modes)):
        if _accepts(fs.samplers.tempered_smc, name):
            kw[name] = val
    t0 = time.perf_counter()
    parts, claims, probs, log_z, problems_all = [], [], [], [], []
    vsrc = "none"
    for r, kr in enumerate(jax.random.split(key, SMC_RUNS)):
        ka, kb = jax.random.split(kr)
        x0 = s0 * jax.random.normal(ka, (SMC_PARTICLES, t.dim))
        out = fs.samplers.tempered_smc(kb, log_lik, log_prior, x0, **kw)
        parts.append(np.asarray(out.particles))
        c, vsrc, p = _verdict(out)
        claims.append(c)
        problems_all += [f"run {r}: {s}" for s in p]
        log_z.append(float(out.log_Z))
    wall = time.perf_counter() - t0
    extra = {"options_passed": sorted(kw), "runs": SMC_RUNS, "particles": SMC_PARTICLES,
             "log_Z": log_z, "log_Z_err": float(np.mean(log_z) - t.log_Z), "log_Z_se": float(np.std(log_z, ddof=1) / np.sqrt(SMC_RUNS)),
             "claimed_per_run": claims}
    return _labels(t, np.stack(parts)), wall, all(claims), vsrc, problems_all, extra


def run_smc_engine(t, spec, key):
    """``fs.samplers.smc`` at its defaults from the over-dispersed Gaussian base, one call of
    ``SMC_RUNS * SMC_PARTICLES`` particles: the SE of the weights from its islands' spread."""
    import jax.numpy as jnp

    import flowsamp as fs

    s0 = _base_scale(t)
    base = fs.targets.gaussian(jnp.zeros(t.dim), s0**2 * jnp.eye(t.dim))
    n = SMC_RUNS * SMC_PARTICLES
    t0 = time.perf_counter()
    out = fs.samplers.smc(key, t.log_prob, base, n, mode_of=t.mode_of, num_modes=t.num_modes)
    parts = np.asarray(out.particles)
    wall = time.perf_counter() - t0
    claimed, vsrc, probs = _verdict(out)
    m = int(len(out.island_log_Z))
    labels = _labels(t, parts).reshape(m, -1)
    weights = np.exp(np.asarray(out.log_weights, np.float64)).reshape(m, -1)
    extra = {"particles": n, "islands": m, "log_Z": float(out.log_Z), "log_Z_se": float(out.log_Z_se),
             "log_Z_err": float(out.log_Z - t.log_Z), "num_steps": np.asarray(out.num_steps).tolist(),
             "num_target_evals": int(out.num_target_evals)}
    return (labels, weights), wall, claimed, vsrc, probs, extra


def run_pt(t, spec, key):
    """``fs.samplers.parallel_tempering`` at its defaults from the same ``CHAINS`` starts (reference fitted to them)."""
    import jax

    import flowsamp as fs

    k0, k1 = jax.random.split(key)
    x0 = _initial_positions(k0, t, spec, CHAINS)
    t0 = time.perf_counter()
    out = fs.samplers.parallel_tempering(k1, t.log_prob, x0, mode_of=t.mode_of, num_modes=t.num_modes)
    pos = np.asarray(out.positions)
    wall = time.perf_counter() - t0
    claimed, vsrc, probs = _verdict(out)
    extra = {"num_temperatures": int(len(out.betas)), "round_trips": int(out.round_trips),
             "min_swap_rate": float(np.min(out.swap_rates)), "barrier": float(out.barrier),
             "log_Z": float(out.log_Z), "log_Z_se": float(out.log_Z_se), "log_Z_err": float(out.log_Z - t.log_Z),
             "draws_per_chain": int(pos.shape[1])}
    return _labels(t, pos), wall, claimed, vsrc, probs, extra


def run_blackjax_smc(t, spec, key):
    import blackjax
    import jax
    import jax.numpy as jnp
    from blackjax.smc import extend_params, resampling

    s0, log_prior, log_lik = _gauss_base(t)
    d = t.dim
    t0 = time.perf_counter()
    params = extend_params(dict(step_size=0.25, inverse_mass_matrix=jnp.ones(d), num_integration_steps=10))
    smc = blackjax.adaptive_tempered_smc(log_prior, log_lik, blackjax.hmc.build_kernel(), blackjax.hmc.init,
                                         params, resampling.systematic, 0.5, num_mcmc_steps=10)

    def one(k):
        ka, kb = jax.random.split(k)
        state = smc.init(s0 * jax.random.normal(ka, (SMC_PARTICLES, d)))

        def cond(c):
            return (c[1].tempering_param < 1.0) & (c[3] < 1000)

        def body(c):
            kk, st, lz, i = c
            kk, ks = jax.random.split(kk)
            st, info = smc.step(ks, st)
            return kk, st, lz + info.log_likelihood_increment, i + 1

        _, st, lz, n = jax.lax.while_loop(cond, body, (kb, state, jnp.zeros(()), jnp.zeros((), jnp.int32)))
        return st.particles, st.weights, lz, n

    # blackjax's step resamples, moves, then reweights: the final particles carry st.weights
    parts, w, lz, n = jax.jit(jax.vmap(one))(jax.random.split(key, SMC_RUNS))
    parts, w = np.asarray(parts), np.asarray(w)
    wall = time.perf_counter() - t0
    lz = np.asarray(lz)
    extra = {"runs": SMC_RUNS, "particles": SMC_PARTICLES, "tempering_steps": np.asarray(n).tolist(),
             "log_Z": lz.tolist(), "log_Z_err": float(lz.mean() - t.log_Z), "log_Z_se": float(lz.std(ddof=1) / np.sqrt(SMC_RUNS)),
             "move": "HMC step 0.25, 10 leapfrog, identity mass; 10 moves per tempering step",
             "final_weights_kish_ess": (1.0 / np.sum(w**2, axis=1)).tolist()}
    return (_labels(t, parts), w), wall, True, "none", [], extra


def run_flowmc_cell(t, spec, key):
    import jax

    sys.path.insert(0, HERE)
    from _flowmc_runner import FlowMCSchedule, run_flowmc

    k0, k1 = jax.random.split(key)
    x0 = _initial_positions(k0, t, spec, CHAINS)
    sched = FlowMCSchedule()
    pos, info = run_flowmc(k1, t.log_prob, t.dim, x0, sched)
    labels = _labels(t, pos)
    extra = {"global_acceptance": info["global_acceptance"], "local_acceptance": info["local_acceptance"],
             "draws_per_chain": int(pos.shape[1]), "schedule": sched.__dict__}
    try:  # what flowsamp's diagnostics would say on flowMC's draws (flowMC itself gives no verdict)
        import flowsamp as fs

        v = fs.estimators.mcmc_verdict(pos, mode_labels=labels, num_modes=t.num_modes,
                                       global_acceptance=info["global_acceptance"])
        extra["flowsamp_verdict_on_draws"] = {"converged": bool(v.converged), "problems": list(v.problems)[:8]}
    except Exception as e:  # informative only
        extra["flowsamp_verdict_on_draws"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return labels, info["wall_s"], True, "none", [], extra


RUNNERS = {
    "afm": run_afm,
    "smc": run_smc_engine,
    "tempered_smc": run_smc,
    "mala": lambda t, s, k: run_local(t, s, k, "mala"),
    "hmc": lambda t, s, k: run_local(t, s, k, "hmc"),
    "pt": run_pt,
    "flowmc": run_flowmc_cell,
    "blackjax_smc": run_blackjax_smc,
}


def score(t, labels, wall, claimed, vsrc, problems, extra) -> dict:
    """Weights, SEs (between groups: chains or runs), max error, z, silent-failure flag."""
    k = t.num_modes
    labels, weights = labels if isinstance(labels, tuple) else (labels, None)
    frac = _group_fractions(labels, k, weights)
    w_hat = frac.mean(0)
    se = frac.std(0, ddof=1) / np.sqrt(frac.shape[0])
    exact = np.asarray(t.mode_weights)
    err = w_hat - exact
    tot_se = np.sqrt(se**2 + np.asarray(t.mode_weights_se) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(tot_se > 0, np.abs(err) / tot_se, np.where(np.abs(err) > 0, np.inf, 0.0))
    i = int(np.argmax(np.abs(err)))
    off = (np.abs(err) > 4 * tot_se) & (np.abs(err) > 0.02)
    return {
        "status": "ok",
        "weights": w_hat.tolist(),
        "weights_se": se.tolist(),
        "max_abs_err": float(np.abs(err).max()),
        "z_of_max_err": float(z[i]),
        "max_z": float(z.max()),
        "within_0.02": bool(np.abs(err).max() <= 0.02),
        "claimed_converged": bool(claimed),
        "verdict_source": vsrc,
        "silent_failure": bool(claimed and off.any()),
        "modes_visited": int(np.sum(np.bincount(labels.ravel(), minlength=k)[:k] > 0)),
        "problems": problems[:12],
        "wall_s": float(wall),
        **extra,
    }


def worker(jobs: list[dict]) -> None:
    """Run ``jobs`` in this process, printing one ``RESULT`` line per job as it finishes."""
    import warnings

    import jax

    import flowsamp as fs  # noqa: F401  (import time reported once as import_s)

    t_imp = time.perf_counter() - _T_START
    git = _git_state()  # the code this worker imported
    print("READY", flush=True)
    for job in jobs:
        spec = job["spec"]
        t = _make_target(spec)
        key = jax.random.fold_in(jax.random.key(job["seed"]), zlib.crc32(job["cell"].encode()) % (2**31))
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = RUNNERS[job["sampler"]](t, spec, key)
            row = score(t, *res)
        except Exception as e:  # recorded, the batch goes on
            import traceback

            row = {"status": "error", "error": f"{type(e).__name__}: {e}"[:800], "traceback": traceback.format_exc()[-1500:]}
        row["job_s"] = time.perf_counter() - t0
        row["import_s"] = t_imp
        row["loadavg_1m"] = os.getloadavg()[0]  # the machine is shared: read wall times with it
        row["git"] = git
        print("RESULT " + json.dumps({"cell": job["cell"], "sampler": job["sampler"], "row": row}), flush=True)


def _run_batch(jobs: list[dict], cap: float, deadline, on_result) -> None:
    """Run ``jobs`` in worker processes (one import per batch): a job that takes longer than
    ``cap`` seconds (or runs into ``deadline``) is killed and recorded as a timeout, and the
    remaining jobs go to a fresh worker."""
    import selectors

    todo = list(jobs)
    while todo:
        if deadline is not None and time.time() > deadline - 30:
            for j in todo:
                print(f"deadline reached: {j['sampler']} on {j['cell']} not started", flush=True)
            return
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(todo)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        startup = 120.0  # the import, until the worker says READY
        t_job = time.time()
        while todo:
            budget = cap + startup
            if deadline is not None:
                budget = min(budget, max(5.0, deadline - t_job))
            left = t_job + budget - time.time()
            line = ""
            if left > 0 and sel.select(timeout=left):
                line = proc.stdout.readline()
                if line == "":  # worker died
                    proc.wait()
                    err = proc.stderr.read()[-1500:]
                    on_result(todo.pop(0), {"status": "error", "returncode": proc.returncode, "stderr_tail": err})
                    break
                if line.startswith("READY"):
                    t_job, startup = time.time(), 0.0
                    continue
                if not line.startswith("RESULT "):
                    continue
                msg = json.loads(line[7:])
                assert msg["cell"] == todo[0]["cell"] and msg["sampler"] == todo[0]["sampler"]
                on_result(todo.pop(0), msg["row"])
                t_job, startup = time.time(), 0.0
                continue
            proc.kill()  # our own child, by its handle
            proc.wait()
            on_result(todo.pop(0), {"status": "timeout", "cap_s": cap})
            break
        else:
            proc.wait()
        sel.close()
        proc.stdout.close()
        proc.stderr.close()


# --------------------------------------------------------------------------- driver side
def _spec_json(spec):
    spec = {k: v for k, v in spec.items() if k != "priority"}
    return {**spec, "weights": spec["weights"] if isinstance(spec["weights"], str) else list(spec["weights"])}


def _load(path):
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)
    return None


def _save(path, results):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(results, fh, indent=1)
    os.replace(tmp, path)


def _deadline_ts(s: str | None):
    if not s:
        return None
    now = datetime.datetime.now(datetime.timezone.utc)
    hh, mm = (int(v) for v in s.split(":"))
    dl = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if dl < now - datetime.timedelta(hours=1):  # an HH:MM after midnight means tomorrow's
        dl += datetime.timedelta(days=1)
    return time.time() + (dl - now).total_seconds()


def _target_info(spec):
    t = _make_target(spec)
    return {"exact_weights": np.asarray(t.mode_weights).tolist(), "exact_weights_se": np.asarray(t.mode_weights_se).tolist(),
            "component_weights": np.asarray(t.weights).tolist(), "mode_weights_method": t.mode_weights_method,
            "log_Z": t.log_Z, "base_scale": _base_scale(t)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three small cells, short caps")
    ap.add_argument("--cells", default="all", help="comma-separated cell names (see --list) or 'all'")
    ap.add_argument("--samplers", default=",".join(DEFAULT_SAMPLERS), help=f"of {list(RUNNERS)}")
    ap.add_argument("--peers", dest="peers", action="store_true", default=True, help="add flowmc, blackjax_smc (default)")
    ap.add_argument("--no-peers", dest="peers", action="store_false",
                    help="do not add the peers (those named in --samplers still run)")
    ap.add_argument("--cap", default=None,
                    help="wall-clock cap per job in s (default 240; quick 150), optionally per sampler: '240,flowmc=480'")
    ap.add_argument("--deadline", default=None, help="UTC HH:MM after which no job starts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--fresh", action="store_true", help="do not merge into an existing JSON")
    ap.add_argument("--skip-done", action="store_true", help="skip (cell, sampler) pairs the JSON already has an ok result for")
    ap.add_argument("--list", action="store_true", help="list the cells and exit")
    ap.add_argument("--table", action="store_true", help="print the table of the JSON and exit")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        worker(json.loads(args.worker))
        return {}
    path = args.json or (DEFAULT_JSON.replace(".json", "_quick.json") if args.quick else DEFAULT_JSON)
    if args.table:
        print_table(_load(path))
        return _load(path)
    grid = quick_grid() if args.quick else full_grid()
    if args.list:
        for n, c in grid.items():
            print(n, c)
        return grid
    names = list(grid) if args.cells == "all" else args.cells.split(",")
    unknown = [n for n in names if n not in grid]
    if unknown:
        raise SystemExit(f"unknown cells {unknown}; --list shows them")
    samplers = [s for s in args.samplers.split(",") if s]
    if args.peers:
        samplers += [p for p in PEERS if p not in samplers]
    # --no-peers only stops adding the peers: one named in --samplers still runs
    bad = [s for s in samplers if s not in RUNNERS]
    if bad:
        raise SystemExit(f"unknown samplers {bad}; choose from {list(RUNNERS)}")
    caps = {}
    cap = 150.0 if args.quick else 240.0
    for part in (args.cap or "").split(","):
        if "=" in part:
            k, v = part.split("=")
            caps[k.strip()] = float(v)
        elif part.strip():
            cap = float(part)
    deadline = _deadline_ts(args.deadline)

    import jax

    import flowsamp as fs  # noqa: F401

    results = None if args.fresh else _load(path)
    if results is None:
        results = {"cells": {}}
    results["meta"] = {
        "machine": {"cpus": os.cpu_count(), "jax": jax.__version__, "devices": str(jax.devices())},
        "chains": CHAINS, "warmup": WARMUP, "mcmc_target_ess": MCMC_TARGET_ESS, "mcmc_max_steps": MCMC_MAX_STEPS,
        "smc_runs": SMC_RUNS, "smc_particles": SMC_PARTICLES, "cap_s": {**{smp: cap for smp in samplers}, **caps},
        "silent_failure": "claimed convergence and some |w_hat - w| > 4 SE and > 0.02",
        "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "git": _git_state(),
    }
    results.setdefault("runs", []).append({k: results["meta"][k] for k in ("updated", "git", "cap_s")} | {"samplers": samplers})
    for n in names:
        cell = results["cells"].setdefault(n, {"results": {}})
        cell["spec"] = _spec_json(grid[n])
        cell.update(_target_info(grid[n]))
    _save(path, results)
    order = sorted(names, key=lambda n: grid[n].get("priority", (0, 0)))
    jobs = [{"cell": n, "spec": grid[n], "sampler": smp, "seed": args.seed}
            for smp in samplers for n in order if not (args.skip_done and results["cells"][n]["results"].get(smp, {}).get("status") == "ok")]

    def on_result(job, row):
        results["cells"][job["cell"]]["results"][job["sampler"]] = row
        _save(path, results)
        print(f"[{job['cell']}] {job['sampler']}: {_short(row)}", flush=True)

    for smp in samplers:  # one worker batch per sampler
        _run_batch([j for j in jobs if j["sampler"] == smp], caps.get(smp, cap), deadline, on_result)
    print_table(results)
    print(f"wrote {path}")
    return results


def _git_state():
    """HEAD and the uncommitted flowsamp paths (the run measures the working tree)."""
    root = os.path.dirname(HERE)
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "flowsamp"],
                               capture_output=True, text=True).stdout.splitlines()
        return {"head": head, "uncommitted_flowsamp_paths": [ln[3:] for ln in dirty]}
    except OSError:
        return None


def _versions():
    import importlib.metadata as md

    out = {}
    for p in ("jax", "flowsamp", "flowMC", "blackjax", "numpyro"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def _short(row):
    if row.get("status") != "ok":
        return row.get("status") + (" " + (row.get("error") or row.get("stderr_tail", "")[-300:]) if row.get("status") == "error" else "")
    return (f"max|dw| {row['max_abs_err']:.4f} (z {row['z_of_max_err']:.1f}) claimed={row['claimed_converged']} "
            f"silent={row['silent_failure']} {row['wall_s']:.1f}s")


def print_table(results) -> None:
    if not results:
        print("no results")
        return
    samplers = [s for s in RUNNERS if any(s in c.get("results", {}) for c in results["cells"].values())]
    cw = 26
    print(f"{'cell':30s}" + "".join(f"{s:>{cw}s}" for s in samplers))
    print(f"{'':30s}" + "".join(f"{'max|dw| z  conv  s':>{cw}s}" for _ in samplers))
    for n, c in results["cells"].items():
        line = f"{n:30s}"
        for s in samplers:
            r = c.get("results", {}).get(s)
            if r is None:
                txt = "-"
            elif r.get("status") != "ok":
                txt = r["status"]
            else:
                z = r["z_of_max_err"]
                zt = "inf" if not np.isfinite(z) else f"{z:.1f}"
                txt = (f"{r['max_abs_err']:.3f} {zt:>5s} {'Y' if r['claimed_converged'] else 'n'}"
                       f"{'!' if r['silent_failure'] else ' '} {r['wall_s']:5.0f}")
            line += f"{txt:>{cw}s}"
        print(line)
    print("('!' = silent failure: claimed convergence, some weight off by > 4 SE and > 0.02)")
    print(f"{'sampler':14s} {'cells':>5s} {'ok':>4s} {'silent':>6s} {'claimed':>7s} {'<=0.02 (d<=32)':>15s} {'median s':>9s}")
    for s in samplers:
        rows = [(c["spec"], c["results"][s]) for c in results["cells"].values() if s in c.get("results", {})]
        ok = [(sp, r) for sp, r in rows if r.get("status") == "ok"]
        small = [r for sp, r in rows if sp["dim"] <= 32]
        good = sum(1 for r in small if r.get("status") == "ok" and r["within_0.02"])
        print(f"{s:14s} {len(rows):5d} {len(ok):4d} {sum(r['silent_failure'] for _, r in ok):6d} "
              f"{sum(r['claimed_converged'] for _, r in ok):7d} {f'{good}/{len(small)}':>15s} "
              f"{(np.median([r['wall_s'] for _, r in ok]) if ok else float('nan')):9.1f}")


if __name__ == "__main__":
    main()
