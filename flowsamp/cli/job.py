"""The sampling job behind ``flowsamp run``: build target and kernel from a config, run the
chains with a progress bar, print the estimates next to the exact answers, write plots."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp import flows, kernels, samplers, targets
from flowsamp import io as fs_io
from flowsamp.arviz import to_arviz
from flowsamp.cli import plots
from flowsamp.cli.config import KERNELS, ConfigError, JobConfig, parse_flip
from flowsamp.cli.results import CHECKPOINT, check_job, draws_idata, write_results
from flowsamp.estimators.summary import summarize as run_summary

#: Default starting box for targets whose typical set is far from the origin.
_INIT_BOXES = {"muller_brown": ([-1.5, -0.5], [1.2, 2.0])}


def make_target(name: str, options: dict[str, Any]) -> Any:
    """``fs.targets.<name>(**options)``, with errors naming the bad field."""
    ctor = getattr(targets, name, None)
    if ctor is None or not callable(ctor) or name.startswith("_") or name[0].isupper():
        available = sorted(n for n in getattr(targets, "__all__", []) if n[0].islower())
        raise ConfigError(f"target.name: unknown target {name!r} (available: {', '.join(available)})")
    try:
        return ctor(**options)
    except TypeError as err:
        raise ConfigError(f"target: bad options for {name}: {err}") from err
    except ValueError as err:
        raise ConfigError(f"target: {err}") from err


def initial_positions(key: jax.Array, name: str, target: Any, num_chains: int, run=None) -> jax.Array:
    """Starting points: N(init_center, init_scale^2 I) when ``run.init_center`` is set, else
    over-dispersed (uniform in the target's box where one is known, else N(0, I))."""
    if run is not None and run.init_center is not None:
        center = jnp.asarray(run.init_center, jnp.result_type(float))
        if center.shape != (target.dim,):
            raise ConfigError(f"run.init_center has {center.shape[0]} entries, the target has dim {target.dim}")
        return center + run.init_scale * jax.random.normal(key, (num_chains, target.dim))
    box = _INIT_BOXES.get(name)
    if box is not None:
        low, high = (jnp.asarray(b, jnp.result_type(float)) for b in box)
        return jax.random.uniform(key, (num_chains, target.dim), minval=low, maxval=high)
    return jax.random.normal(key, (num_chains, target.dim))


def make_kernel(config: JobConfig, target: Any, params: dict) -> Any:
    """The configured local kernel with adapted ``params`` (``step_size``, ``inverse_mass``)."""
    s = config.sampler
    step_size = params["step_size"]
    inverse_mass = params.get("inverse_mass")
    if s.kernel == "mala":
        return kernels.mala(target.log_prob, step_size=step_size, inverse_mass=inverse_mass)
    if s.kernel == "rwmh":
        return kernels.rwmh(target.log_prob, scale=step_size)
    if s.kernel == "hmc":
        return kernels.hmc(target.log_prob, step_size=step_size, num_integration_steps=s.num_integration_steps,
                           inverse_mass=inverse_mass)
    if s.kernel == "nuts":
        return kernels.nuts(target.log_prob, step_size=step_size, inverse_mass=inverse_mass)
    raise ConfigError(f"sampler.kernel {s.kernel!r} is not a local kernel")


def _target_acceptance(config: JobConfig) -> float:
    s = config.sampler
    return s.target_acceptance if s.target_acceptance is not None else kernels.TARGET_ACCEPTANCE[s.kernel]


def warm_up(config: JobConfig, target: Any, key: jax.Array, x0: Any) -> tuple[Any, dict]:
    """Warm-up: Stan's window adaptation (step size + diagonal inverse mass) for mala / hmc /
    nuts, dual averaging of the scale for rwmh; ``adapt = false`` runs the steps unadapted."""
    s, r = config.sampler, config.run
    fdt = jnp.result_type(float)
    params = {"step_size": jnp.asarray(s.step_size, fdt)}
    if s.kernel != "rwmh":
        params["inverse_mass"] = jnp.ones(target.dim, fdt)
    if r.warmup == 0:
        return x0, params
    if not s.adapt:
        trace = samplers.sample(key, make_kernel(config, target, params), x0, r.warmup, keep="summary", warn=False)
        return trace.final_state, params
    if s.kernel == "rwmh":
        adapted = kernels.dual_averaging_adaptation(
            key, lambda eps: make_kernel(config, target, {"step_size": eps}), x0, r.warmup,
            _target_acceptance(config), initial_step_size=s.step_size,
        )
        return adapted.state, {"step_size": jnp.asarray(adapted.step_size, fdt)}
    ctor = {"mala": kernels.mala, "hmc": kernels.hmc, "nuts": kernels.nuts}[s.kernel]
    static = {"num_integration_steps": s.num_integration_steps} if s.kernel == "hmc" else {}
    warm = kernels.window_adaptation(ctor, target.log_prob, target_acceptance=_target_acceptance(config),
                                     initial_step_size=s.step_size, **static)
    states, adapted = warm.run(key, x0, r.warmup)
    return states, {k: jnp.asarray(v, fdt) for k, v in adapted.items()}


def _grid_log_prob(target: Any) -> Callable | None:
    if target.dim != 2:
        return None
    fn = jax.jit(jax.vmap(target.log_prob))

    def grid(xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        pts = jnp.stack([jnp.asarray(xx).ravel(), jnp.asarray(yy).ravel()], axis=1)
        return np.asarray(fn(pts.astype(jnp.result_type(float)))).reshape(xx.shape)

    return grid


def summarize(
    target: Any,
    positions: np.ndarray,
    acceptance: np.ndarray,
    wall_time: float,
    extra: dict[str, Any] | None = None,
    counts: dict[str, int | None] | None = None,
) -> dict[str, Any]:
    """The run summary (:func:`flowsamp.estimators.summary.summarize`) of chains' draws, plus ``extra``."""
    counts = counts or {}
    result = run_summary(np.asarray(positions), target, wall_s=wall_time, acceptance=acceptance,
                         num_divergent=counts.get("num_divergent"), num_nonfinite=counts.get("num_nonfinite"))
    result.update(extra or {})
    return result


def format_verdict(result: dict[str, Any]) -> str:
    """The verdict lines: ``verdict: converged`` or ``verdict: NOT CONVERGED`` and the problems."""
    if "converged" not in result:
        return "verdict: not available"
    if result["converged"]:
        return "verdict: converged (R-hat, ESS, divergences and mode checks passed)"
    return "\n".join(["verdict: NOT CONVERGED, do not trust these numbers:"] + [f"  - {p}" for p in result["problems"]])


def format_report(name: str, result: dict[str, Any]) -> str:
    """Human-readable table of a run summary, ending with the verdict."""
    lines = [
        f"target: {name}   chains: {result.get('num_chains')}   draws/chain: {result.get('num_draws')}",
        f"wall time (compile included): {result.get('wall_s') or float('nan'):.1f} s",
    ]
    if result.get("log_Z") is not None:
        se = result.get("log_Z_se")
        lines.append(f"ln Z = {result['log_Z']:.6f}" + (f" ± {se:.6f}" if se is not None else "")
                     + (f"   ESS {result['ess']:.0f}" if result.get("ess") is not None else ""))
    if result.get("log_g_error") is not None:
        lines.append(f"ln g(E): mean |error| against the exact density of states {result['log_g_error']:.4f}")
    if "acceptance" in result:
        glob = result.get("global_acceptance")
        lines.append(f"acceptance: local {result['acceptance']:.3f}"
                     + (f"   global (flow) {glob:.3f}" if glob is not None else ""))
    if result.get("max_rhat") is not None:
        ess = result.get("min_ess_bulk")
        lines.append(
            f"R-hat max: {result['max_rhat']:.3f}"
            + (f"   min bulk ESS: {ess:.0f} ({result.get('min_ess_bulk_per_s', float('nan')):.1f}/s)"
               f"   min tail ESS: {result.get('min_ess_tail', float('nan')):.0f}" if ess is not None else "")
        )
    if "mode_weights" in result:
        exact = result.get("exact_mode_weights")
        lines.append("mode   estimate ± SE          exact      |err|/SE")
        for i, (w, se) in enumerate(zip(result["mode_weights"], result["mode_weights_se"])):
            if exact is not None:
                z = result["mode_weights_z"][i]
                lines.append(f"{i:>4}   {w:.4f} ± {se:.4f}      {exact[i]:.6f}   {z:6.2f}")
            else:
                lines.append(f"{i:>4}   {w:.4f} ± {se:.4f}")
        if exact is not None:
            agree = "agree within 4 SE" if result["max_z"] <= 4 else "DISAGREE beyond 4 SE (chains have not mixed?)"
            lines.append(f"mode weights {agree}; max |err| = {result['max_abs_error']:.4f}")
    if "exact_log_Z" in result:
        lines.append(f"exact ln Z = {result['exact_log_Z']:.6f}")
    lines.append(format_verdict(result))
    return "\n".join(lines)


def _write_plots(out_dir: Path, name: str, target: Any, positions: np.ndarray) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        plots.samples_over_density(
            out_dir / "samples.png",
            positions,
            _grid_log_prob(target),
            title=f"{name}: {positions.shape[0]} chains x {positions.shape[1]} draws",
        )
    ]


def run_local_job(config: JobConfig, out_dir: Path, progress: bool = True, echo=print,
                  resume: bool = False) -> dict[str, Any]:
    """MALA / HMC / NUTS / RWMH chains: over-dispersed start, warm-up (:func:`warm_up`),
    production by :func:`flowsamp.sample` with checkpoints in ``out_dir`` (the warm-up's
    result in ``warmup.msgpack``, the production carry in ``checkpoint.msgpack``)."""
    start_time = time.perf_counter()
    s, r = config.sampler, config.run
    target = make_target(config.target.name, config.target.options)
    key = jax.random.key(r.seed)
    key_init, key_warm, key_run = jax.random.split(key, 3)
    x0 = initial_positions(key_init, config.target.name, target, r.chains, r)
    out_dir.mkdir(parents=True, exist_ok=True)
    warm_path = out_dir / "warmup.msgpack"
    meta = {"job": "flowsamp run", "kernel": s.kernel, "chains": r.chains, "warmup": r.warmup, "seed": r.seed}
    if resume and warm_path.exists():
        fdt = jnp.result_type(float)
        like_params = {"step_size": jnp.zeros((), fdt)}
        if s.kernel != "rwmh":
            like_params["inverse_mass"] = jnp.zeros(target.dim, fdt)
        like_state = jax.vmap(make_kernel(config, target, {k: jnp.ones_like(v) for k, v in like_params.items()}).init)(x0)
        saved = fs_io.load(warm_path, {"state": like_state, "params": like_params}, meta=meta)
        state, params = saved["state"], saved["params"]
        echo(f"{s.kernel}: warm-up read from {warm_path}")
    else:
        state, params = warm_up(config, target, key_warm, x0)
        fs_io.save(warm_path, {"state": state, "params": params}, meta=meta)
    echo(f"{s.kernel}: step size {float(params['step_size']):.4g} after {r.warmup} warm-up steps")
    every = max(r.thin, r.steps // 20 // r.thin * r.thin)
    trace = samplers.sample(
        key_run, make_kernel(config, target, params), state, r.steps - r.steps % r.thin, thin=r.thin,
        warn=False, progress=progress, checkpoint_path=out_dir / CHECKPOINT, checkpoint_every=every, resume=resume,
    )
    wall = time.perf_counter() - start_time
    positions = np.asarray(trace.positions)
    counts = {"num_divergent": trace.diagnostics.get("num_divergent"),
              "num_nonfinite": int(np.sum(np.asarray(trace.num_nonfinite)))}
    extra = {"kernel": s.kernel, "step_size": float(params["step_size"])}
    result = summarize(target, positions, np.asarray(trace.acceptance_rate), wall, extra, counts)
    idata = to_arviz(trace, target) if positions.ndim == 3 else draws_idata(positions)
    if config.output.plot:
        result["plots"] = [str(p) for p in _write_plots(out_dir, config.target.name, target, positions)]
    write_results(out_dir, result, idata)
    return result


def _flip(idx: tuple[int, ...]) -> Callable:
    """The involution g(x) that flips the sign of coordinates ``idx``."""
    sign = np.ones(max(idx) + 1)
    sign[list(idx)] = -1.0

    def g(x):
        return x.at[..., : sign.size].multiply(jnp.asarray(sign, x.dtype))

    return g


def make_flow(config: JobConfig, dim: int) -> Any:
    """The configured flow for the adaptive sampler."""
    s = config.sampler
    ctor = {"rq_spline": flows.rq_spline, "realnvp": flows.realnvp, "maf": flows.maf}[s.flow]
    return ctor(dim, num_layers=s.flow_layers, hidden=s.flow_hidden)


def run_adaptive_job(config: JobConfig, out_dir: Path, progress: bool = True, echo=print,
                     resume: bool = False) -> dict[str, Any]:
    """Adaptive global-local flow MCMC (local MALA/HMC + flow-IMH, flow trained by forward KL)."""
    start_time = time.perf_counter()
    s, r = config.sampler, config.run
    target = make_target(config.target.name, config.target.options)
    key_init, key_run = jax.random.split(jax.random.key(r.seed))
    x0 = initial_positions(key_init, config.target.name, target, r.chains, r)
    symmetries = []
    for spec in s.symmetries:
        idx = parse_flip("sampler.symmetries", spec)
        if max(idx) >= target.dim:
            raise ConfigError(f"sampler.symmetries: {spec!r} flips a coordinate >= dim {target.dim}")
        symmetries.append(_flip(idx))
    try:
        out = samplers.adaptive_flow_mcmc(
            key_run, target.log_prob, make_flow(config, target.dim), x0,
            progress=progress, symmetries=tuple(symmetries),
            **checkpoint_kwargs(samplers.adaptive_flow_mcmc, out_dir, resume), **s.options,
        )
    except TypeError as err:
        raise ConfigError(f"sampler.options: {err}") from err
    wall = time.perf_counter() - start_time
    positions = np.asarray(out.positions)
    # the result's own verdict (out.converged / out.problems) when the sampler carries one,
    # else the summary computes it from the production draws
    result = {**run_summary(out, target, wall_s=wall), "kernel": "adaptive_flow_mcmc"}
    echo(
        f"adaptive flow MCMC: {result.get('training_loops')} training loops; acceptance local "
        f"{result.get('acceptance', float('nan')):.3f}, global (flow) {result.get('global_acceptance', float('nan')):.3f}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.output.plot:
        paths = _write_plots(out_dir, config.target.name, target, positions)
        hist = out.history
        if "global_acceptance" in hist:
            paths.append(plots.series(
                out_dir / "acceptance.png",
                {"local": hist["local_acceptance"], "global (flow)": hist["global_acceptance"]},
                "loop", "acceptance", title=f"training loops: {out.num_training_loops}",
            ))
        if "positions" in hist and getattr(target, "num_modes", None):
            label = jax.jit(target.mode_of)
            per_loop = np.stack([
                np.bincount(np.asarray(label(jnp.asarray(p))).ravel(), minlength=target.num_modes)
                / np.asarray(p).reshape(-1, target.dim).shape[0]
                for p in hist["positions"]
            ])
            exact = getattr(target, "mode_weights", None)
            paths.append(plots.series(
                out_dir / "mode_weights.png",
                {f"mode {i}": per_loop[:, i] for i in range(per_loop.shape[1])},
                "loop", "fraction of chains", title="mode weights over loops (dashed: exact)",
                reference=None if exact is None else {f"mode {i}": float(w) for i, w in enumerate(exact)},
            ))
        result["plots"] = [str(p) for p in paths]
    lp = getattr(out, "log_prob", None)
    write_results(out_dir, result, draws_idata(positions, {"lp": lp}))
    return result


def checkpoint_kwargs(sampler: Callable, out_dir: Path, resume: bool) -> dict[str, Any]:
    """``checkpoint_path`` (in ``out_dir``) and ``resume`` for a sampler that takes them, else ``{}``."""
    import inspect

    if "checkpoint_path" not in inspect.signature(sampler).parameters:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    return {"checkpoint_path": out_dir / CHECKPOINT, "resume": resume}


def run_job(
    config: JobConfig | None = None, out_dir: str | None = None, progress: bool = True, echo=print,
    resume: bool = False,
) -> dict[str, Any]:
    """Run a job (``None``: the embedded default) and print its report; returns the results.

    With ``resume``, a job killed before it finished continues from the checkpoints in its
    output folder (the numbers equal an uninterrupted run); the folder must hold the same job.
    """
    from flowsamp.cli import families

    config = config or JobConfig()
    out = Path(out_dir or config.output.dir)
    check_job(out, config, resume)
    echo(f"flowsamp: {config.sampler.kernel} on {config.target.name} {config.target.options} "
         f"({jax.default_backend()}, {len(jax.devices())} device(s))" + ("   [resume]" if resume else ""))
    kind = config.sampler.kernel
    if kind == "adaptive_flow_mcmc":
        result = run_adaptive_job(config, out, progress=progress, echo=echo, resume=resume)
    elif kind in KERNELS:
        result = run_local_job(config, out, progress=progress, echo=echo, resume=resume)
    else:
        result = families.RUNNERS[kind](config, out, progress=progress, echo=echo, resume=resume)
    echo(format_report(config.target.name, result))
    echo(f"results written to {out}/ (results.json, samples.nc)")
    return result
