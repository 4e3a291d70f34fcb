"""The sampling job behind ``flowsamp run``: build target and kernel from a config, run the
chains with a progress bar, print the estimates next to the exact answers, write plots."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp import estimators, flows, kernels, samplers, targets
from flowsamp.cli import plots
from flowsamp.cli.config import ConfigError, JobConfig, parse_flip
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


def make_kernel(config: JobConfig, target: Any, step_size: Any) -> Any:
    """The configured local kernel with ``step_size``."""
    s = config.sampler
    if s.kernel == "mala":
        return kernels.mala(target.log_prob, step_size=step_size)
    if s.kernel == "rwmh":
        return kernels.rwmh(target.log_prob, scale=step_size)
    if s.kernel == "hmc":
        return kernels.hmc(target.log_prob, step_size=step_size, num_integration_steps=s.num_integration_steps)
    raise ConfigError(f"sampler.kernel {s.kernel!r} is not a local kernel")


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="step", leave=True)


def run_chains(
    key: jax.Array,
    kernel: Any,
    start: Any,
    num_steps: int,
    *,
    thin: int = 1,
    num_chunks: int = 20,
    progress: bool = True,
    desc: str = "sampling",
) -> tuple[np.ndarray, Any, np.ndarray, dict[str, int | None]]:
    """Run ``fs.sample`` in equal chunks (one compilation) so a progress bar can advance.

    Returns ``(positions (chains, steps//thin, dim), final_state, acceptance per chain,
    counts)`` with ``counts`` the run's ``num_divergent`` (``None`` when the kernel does not
    report divergences) and ``num_nonfinite`` proposals. The chunks' own verdicts are not
    issued (a chunk is not a run); the caller judges the whole run.
    """
    num_chunks = max(1, min(num_chunks, num_steps // thin))
    chunk = (num_steps // num_chunks) // thin * thin
    done, pieces, acc, state = 0, [], [], start
    counts: dict[str, int | None] = {"num_divergent": 0, "num_nonfinite": 0}
    with _progress(num_steps, desc, progress) as bar:
        for i in range(num_chunks):
            n = chunk if i < num_chunks - 1 else num_steps - done
            n -= n % thin
            if n <= 0:
                continue
            trace = samplers.sample(jax.random.fold_in(key, i), kernel, state, n, thin=thin, warn=False)
            state = trace.final_state
            counts["num_nonfinite"] += int(np.sum(np.asarray(trace.num_nonfinite)))
            div = trace.diagnostics.get("num_divergent")
            counts["num_divergent"] = None if div is None or counts["num_divergent"] is None else (
                counts["num_divergent"] + int(div))
            pieces.append(np.asarray(trace.positions))
            acc.append((n, np.asarray(trace.acceptance_rate)))
            done += n
            bar.update(n)
            if progress:
                bar.set_postfix(_progress_stats(pieces, acc), refresh=False)
    total = sum(n for n, _ in acc)
    acceptance = sum(n * a for n, a in acc) / total
    return np.concatenate(pieces, axis=1), state, acceptance, counts


def _progress_stats(pieces: list[np.ndarray], acc: list[tuple[int, np.ndarray]]) -> dict[str, str]:
    """Acceptance and minimum bulk ESS so far, for the progress bar (ESS skipped past 4M values)."""
    total = sum(n for n, _ in acc)
    stats = {"acc": f"{float(np.mean(sum(n * a for n, a in acc) / total)):.3f}"}
    size = sum(p.size for p in pieces)
    if size <= 4_000_000 and sum(p.shape[1] for p in pieces) >= 4:
        ess = estimators.rank_diagnostics(np.concatenate(pieces, axis=1))["ess_bulk"]
        if not np.all(np.isnan(ess)):
            stats["min_ess"] = f"{float(np.nanmin(ess)):.0f}"
    return stats


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
        f"target: {name}   chains: {result['num_chains']}   draws/chain: {result['num_draws']}",
        f"wall time (compile included): {result['wall_s']:.1f} s",
    ]
    if "acceptance" in result:
        glob = result.get("global_acceptance")
        lines.append(f"acceptance: local {result['acceptance']:.3f}"
                     + (f"   global (flow) {glob:.3f}" if glob is not None else ""))
    if "max_rhat" in result:
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


def _write_outputs(out_dir: Path, name: str, target: Any, positions: np.ndarray, result: dict) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(result, indent=2))
    return [
        plots.samples_over_density(
            out_dir / "samples.png",
            positions,
            _grid_log_prob(target),
            title=f"{name}: {positions.shape[0]} chains x {positions.shape[1]} draws",
        )
    ]


def run_local_job(config: JobConfig, out_dir: Path, progress: bool = True, echo=print) -> dict[str, Any]:
    """MALA / HMC / RWMH chains: over-dispersed start, dual-averaging warm-up, production."""
    start_time = time.perf_counter()
    s, r = config.sampler, config.run
    target = make_target(config.target.name, config.target.options)
    key = jax.random.key(r.seed)
    key_init, key_warm, key_run = jax.random.split(key, 3)
    x0 = initial_positions(key_init, config.target.name, target, r.chains, r)
    factory = lambda eps: make_kernel(config, target, eps)
    step_size = jnp.asarray(s.step_size, jnp.result_type(float))
    state = x0
    if r.warmup > 0:
        if s.adapt:
            adapted = kernels.dual_averaging_adaptation(
                key_warm, factory, x0, r.warmup, s.target_acceptance, initial_step_size=s.step_size
            )
            state, step_size = adapted.state, adapted.step_size
        else:
            state = samplers.sample(key_warm, factory(step_size), x0, r.warmup, keep="summary").final_state
    echo(f"{s.kernel}: step size {float(step_size):.4g} after {r.warmup} warm-up steps")
    positions, _, acceptance, counts = run_chains(
        key_run, factory(step_size), state, r.steps, thin=r.thin, progress=progress, desc=s.kernel
    )
    wall = time.perf_counter() - start_time
    result = summarize(target, positions, acceptance, wall, {"kernel": s.kernel, "step_size": float(step_size)},
                       counts)
    if config.output.plot:
        result["plots"] = [str(p) for p in _write_outputs(out_dir, config.target.name, target, positions, result)]
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(result, indent=2))
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


def run_adaptive_job(config: JobConfig, out_dir: Path, progress: bool = True, echo=print) -> dict[str, Any]:
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
            progress=progress, symmetries=tuple(symmetries), **s.options,
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
        paths = _write_outputs(out_dir, config.target.name, target, positions, result)
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
    (out_dir / "results.json").write_text(json.dumps(result, indent=2))
    return result


def run_job(
    config: JobConfig | None = None, out_dir: str | None = None, progress: bool = True, echo=print
) -> dict[str, Any]:
    """Run a job (``None``: the embedded default) and print its report; returns the results."""
    config = config or JobConfig()
    out = Path(out_dir or config.output.dir)
    echo(f"flowsamp: {config.sampler.kernel} on {config.target.name} {config.target.options} "
         f"({jax.default_backend()}, {len(jax.devices())} device(s))")
    if config.sampler.kernel == "adaptive_flow_mcmc":
        result = run_adaptive_job(config, out, progress=progress, echo=echo)
    else:
        result = run_local_job(config, out, progress=progress, echo=echo)
    echo(format_report(config.target.name, result))
    echo(f"results and plots written to {out}/")
    return result
