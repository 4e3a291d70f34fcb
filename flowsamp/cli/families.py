"""``flowsamp run`` for the sampler families beyond chains of one kernel: tempered / adaptive
SMC and AIS, parallel tempering, importance sampling, Wang-Landau and multicanonical.

Each runner builds the target from the config, runs the sampler with ``[sampler.options]`` as
keyword arguments (checkpointed in the output folder when the sampler takes
``checkpoint_path``), and writes ``results.json`` and ``samples.nc``
(:mod:`flowsamp.cli.results`). Particle methods start from a Gaussian base
:math:`\\mathcal N(c, s^2 I)` with :math:`c` = ``run.init_center`` (else 0) and :math:`s` =
``sampler.base_scale``.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any, Callable

import jax

import numpy as np

from flowsamp import samplers, targets
from flowsamp.cli.config import ConfigError, JobConfig
from flowsamp.cli.job import checkpoint_kwargs, initial_positions, make_target
from flowsamp.cli.results import draws_idata, lattice_idata, particles_idata, write_results
from flowsamp.estimators.summary import summarize

__all__ = ["RUNNERS"]


def _base(config: JobConfig, target: Any) -> Any:
    dim = target.dim
    center = np.zeros(dim) if config.run.init_center is None else np.asarray(config.run.init_center, float)
    if center.shape != (dim,):
        raise ConfigError(f"run.init_center has {center.shape[0]} entries, the target has dim {dim}")
    return targets.gaussian(center, config.sampler.base_scale**2 * np.eye(dim))


def _normalised(base: Any) -> Callable:
    return lambda x: base.log_prob(x) - base.log_Z


def _call(sampler: Callable, name: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return sampler(*args, **kwargs)
    except TypeError as err:
        if "argument" in str(err):
            raise ConfigError(f"sampler.options for {name}: {err}") from err
        raise


def _progress_kw(sampler: Callable, progress: bool, opts: dict) -> dict:
    """``progress=`` for a sampler that takes it (``[sampler.options] progress`` wins)."""
    if "progress" in opts or "progress" not in inspect.signature(sampler).parameters:
        return {}
    return {"progress": bool(progress)}


def _resume_note(sampler: Callable, out_dir: Path, resume: bool, echo) -> dict:
    kw = checkpoint_kwargs(sampler, out_dir, resume)
    if resume and not kw:
        echo(f"flowsamp: {sampler.__name__} has no checkpoints yet; --resume runs it from the start")
    return kw


def _particle_job(kind: str):
    def run(config: JobConfig, out_dir: Path, progress: bool = True, echo=print, resume: bool = False) -> dict:
        start = time.perf_counter()
        r, opts = config.run, dict(config.sampler.options)
        target = make_target(config.target.name, config.target.options)
        base = _base(config, target)
        key_init, key_run = jax.random.split(jax.random.key(r.seed))
        if kind == "tempered_smc":
            sampler = samplers.tempered_smc
            log_prior = _normalised(base)
            kw = {**_resume_note(sampler, out_dir, resume, echo), **_progress_kw(sampler, progress, opts)}
            out = _call(sampler, kind, key_run, lambda x: target.log_prob(x) - log_prior(x), log_prior,
                        base.sample(key_init, r.chains), **kw, **opts)
        else:
            sampler = samplers.smc if kind == "smc" else samplers.ais
            kw = {**_resume_note(sampler, out_dir, resume, echo), **_progress_kw(sampler, progress, opts)}
            out = _call(sampler, kind, key_run, target.log_prob, base, r.chains, **kw, **opts)
        wall = time.perf_counter() - start
        # summarize reads a result with log_weights as importance sampling; SMC's are per particle
        # at the last step, so it is summarised as particles (its own ln Z SE added)
        plain = out._replace(log_weights=None, num_steps=int(np.max(np.asarray(out.num_steps)))) \
            if hasattr(out, "log_weights") else out
        result = {**summarize(plain, target, wall_s=wall), "kernel": kind}
        if getattr(out, "log_Z_se", None) is not None:
            result["log_Z_se"] = float(np.asarray(out.log_Z_se))
        write_results(out_dir, result, particles_idata(out.particles, getattr(out, "log_weights", None)))
        return result

    return run


def run_importance_job(config: JobConfig, out_dir: Path, progress: bool = True, echo=print,
                       resume: bool = False) -> dict:
    """Importance sampling of ``run.steps`` draws from the Gaussian base (the proposal q)."""
    start = time.perf_counter()
    r, opts = config.run, dict(config.sampler.options)
    target = make_target(config.target.name, config.target.options)
    base = _base(config, target)
    log_q = _normalised(base)

    def proposal(key, n):
        x = base.sample(key, n)
        return x, jax.vmap(log_q)(x)

    kw = {**_resume_note(samplers.importance_sampling, out_dir, resume, echo),
          **_progress_kw(samplers.importance_sampling, progress, opts)}
    out = _call(samplers.importance_sampling, "importance", jax.random.key(r.seed), proposal, None,
                target.log_prob, r.steps, **kw, **opts)
    wall = time.perf_counter() - start
    result = {**summarize(out, target, wall_s=wall), "kernel": "importance"}
    idata = particles_idata(out.samples, out.log_weights) if out.samples is not None else None
    write_results(out_dir, result, idata)
    return result


def run_parallel_tempering_job(config: JobConfig, out_dir: Path, progress: bool = True, echo=print,
                               resume: bool = False) -> dict:
    """Non-reversible parallel tempering: ``run.warmup`` warm-up and ``run.steps`` production steps."""
    start = time.perf_counter()
    r, opts = config.run, dict(config.sampler.options)
    target = make_target(config.target.name, config.target.options)
    key_init, key_run = jax.random.split(jax.random.key(r.seed))
    x0 = initial_positions(key_init, config.target.name, target, r.chains, r)
    kw = {**_resume_note(samplers.parallel_tempering, out_dir, resume, echo),
          **_progress_kw(samplers.parallel_tempering, progress, opts)}
    out = _call(samplers.parallel_tempering, "parallel_tempering", key_run, target.log_prob, x0,
                num_steps=r.steps, num_warmup=r.warmup, **kw, **opts)
    wall = time.perf_counter() - start
    result = {**summarize(out, target, wall_s=wall), "kernel": "parallel_tempering",
              "num_temperatures": int(np.size(out.betas)), "round_trips": np.asarray(out.round_trips).sum()}
    write_results(out_dir, result, draws_idata(out.positions))
    return result


def _lattice_job(kind: str):
    def run(config: JobConfig, out_dir: Path, progress: bool = True, echo=print, resume: bool = False) -> dict:
        start = time.perf_counter()
        r, opts = config.run, dict(config.sampler.options)
        target = make_target(config.target.name, config.target.options)
        key = jax.random.key(r.seed)
        kw = {**checkpoint_kwargs(getattr(samplers, kind), out_dir, resume),
              **_progress_kw(getattr(samplers, kind), progress, opts)}
        if kind == "wang_landau":
            out = _call(samplers.wang_landau, kind, key, target, r.chains, max_sweeps=r.steps, **kw, **opts)
            hist, spins = out.histogram, out.state.positions
        else:
            out = _call(samplers.multicanonical, kind, key, target, r.chains, num_production_sweeps=r.steps,
                        **kw, **opts)
            hist, spins = out.walker_histograms, None
        wall = time.perf_counter() - start
        result = {
            "sampler": kind, "kernel": kind, "num_chains": r.chains, "num_draws": None, "wall_s": wall,
            "energies": out.energies, "log_g": out.log_g, "diagnostics": out.diagnostics,
            "converged": bool(out.converged), "problems": list(out.problems),
        }
        if hasattr(target, "exact_log_dos") and target.num_states**target.L <= 256:
            energies, exact = target.exact_log_dos()
            est = np.asarray(out.log_g, np.float64)
            ok = np.isfinite(est)
            result["log_g_error"] = float(np.mean(np.abs(est[ok] - np.asarray(exact)[ok]))) if ok.any() else None
            result["exact_log_g"] = np.asarray(exact)
        if spins is None:
            spins = np.zeros((r.chains, target.L, target.L))
        write_results(out_dir, result, lattice_idata(spins, out.energies, out.log_g, hist))
        return result

    return run


RUNNERS: dict[str, Callable] = {
    "tempered_smc": _particle_job("tempered_smc"),
    "smc": _particle_job("smc"),
    "ais": _particle_job("ais"),
    "importance": run_importance_job,
    "parallel_tempering": run_parallel_tempering_job,
    "wang_landau": _lattice_job("wang_landau"),
    "multicanonical": _lattice_job("multicanonical"),
}
