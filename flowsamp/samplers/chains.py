r"""``sample``: run many Markov chains of one kernel, on one device or sharded over several.

Chain :math:`c` uses the key :math:`k_c` = ``jax.random.split(key, num_chains)[c]`` and at
step :math:`t` (0-based) the key ``jax.random.fold_in(k_c, t)``; chains are a ``vmap``
over a leading axis, and the steps one ``jax.lax.scan`` compiled once per
(kernel, shapes, options). With ``devices=`` the chain axis is split over the devices
with ``jax.shard_map`` (:mod:`flowsamp.parallel`); every chain sees the same keys and
start, so the numbers equal the single-device run.

Every trace carries a convergence verdict (:mod:`flowsamp.estimators.verdict`): rank-normalised
split :math:`\hat R` and bulk / tail ESS of the kept draws, divergent or non-finite proposals
and, with ``mode_of``, mode visits and drift; a :class:`~flowsamp.NotConvergedWarning` says when
the run cannot be trusted. With ``target_ess`` the run continues in blocks (the same compiled
program, step keys continuing ``fold_in(k_c, t)``) until the bulk ESS is reached.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp import io as _io
from flowsamp import parallel
from flowsamp._progress import MAX_ESS_VALUES, ProgressBar, min_bulk_ess, readable
from flowsamp.base import SamplingAlgorithm, as_key, check_finite_positions
from flowsamp.samplers import _checkpoint as _ckpt
from flowsamp.estimators.verdict import Thresholds, Verdict, mcmc_verdict, rank_diagnostics, warn_if_not_converged
from flowsamp.types import Array

__all__ = ["Trace", "sample"]

_KEEP = ("all", "summary")


class Trace(NamedTuple):
    r"""The result of :func:`sample`; every array has the chain axis first.

    Attributes
    ----------
    positions
        Kept positions, shape ``(chains, num_steps // thin, *event)`` (the state after steps
        ``thin, 2 thin, ...``); ``None`` when ``keep="summary"``.
    info
        The kernel's info at the kept steps, batched like ``positions``; ``None`` when
        ``keep="summary"``.
    final_state
        Kernel state of every chain after ``num_steps`` steps (pass it back as
        ``initial_positions`` with a new key to continue).
    acceptance_rate
        Per chain, the mean over all steps of ``info.acceptance_rate``,
        :math:`\frac1T\sum_t \min(1, r_t)`.
    num_accepted
        Per chain, the number of accepted proposals over all steps.
    num_nonfinite
        Per chain, the number of proposals rejected because their log-density (or
        acceptance ratio) was NaN or infinite (``info.is_finite`` false).
    mean, variance
        Per chain, running (Welford) mean and variance :math:`\frac1n\sum_i (x_i-\bar x)^2`
        of the kept positions, available in both ``keep`` modes.
    num_steps, thin
        The run's length (all blocks, with ``target_ess``) and thinning.
    diagnostics
        The verdict's diagnostics (:func:`flowsamp.estimators.mcmc_verdict`): ``rhat``,
        ``ess_bulk``, ``ess_tail`` per coordinate of the flattened position, their extremes,
        ``num_divergent`` / ``num_nonfinite``, ``acceptance``, mode diagnostics with
        ``mode_of``; with ``keep="summary"`` only the classic :math:`\hat R` from per-chain
        means and variances (``"ess_note"`` says why no ESS).
    converged
        Whether every diagnostic passed its threshold.
    problems
        The failed checks as plain sentences.
    """

    positions: Any
    info: Any
    final_state: Any
    acceptance_rate: Array
    num_accepted: Array
    num_nonfinite: Array
    mean: Any
    variance: Any
    num_steps: int
    thin: int
    diagnostics: dict
    converged: bool
    problems: list


class _Counts(NamedTuple):
    acceptance_rate: Array
    num_accepted: Array
    num_nonfinite: Array
    num_divergent: Array


class _Welford(NamedTuple):
    count: Array
    mean: Any
    m2: Any


def _update_counts(counts: _Counts, info: Any, step: Array) -> _Counts:
    rate = getattr(info, "acceptance_rate", None)
    accepted = getattr(info, "is_accepted", None)
    finite = getattr(info, "is_finite", None)
    divergent = getattr(info, "is_divergent", None)
    acc_rate = counts.acceptance_rate
    if rate is not None:
        acc_rate = acc_rate + (rate.astype(acc_rate.dtype) - acc_rate) / (step + 1).astype(acc_rate.dtype)
    num_accepted = counts.num_accepted
    if accepted is not None:
        num_accepted = num_accepted + accepted.astype(num_accepted.dtype)
    num_nonfinite = counts.num_nonfinite
    if finite is not None:
        num_nonfinite = num_nonfinite + (~finite).astype(num_nonfinite.dtype)
    num_divergent = counts.num_divergent
    if divergent is not None:
        num_divergent = num_divergent + divergent.astype(num_divergent.dtype)
    return _Counts(acc_rate, num_accepted, num_nonfinite, num_divergent)


def _update_welford(w: _Welford, position: Any) -> _Welford:
    count = w.count + 1
    delta = jax.tree.map(lambda x, m: x - m, position, w.mean)
    mean = jax.tree.map(lambda m, d: m + d / count.astype(m.dtype), w.mean, delta)
    m2 = jax.tree.map(lambda s, d, x, m: s + d * (x - m), w.m2, delta, position, mean)
    return _Welford(count, mean, m2)


def _float_dtype(position: Any) -> Any:
    leaves = [x for x in jax.tree.leaves(position) if jnp.issubdtype(x.dtype, jnp.floating)]
    return leaves[0].dtype if leaves else jnp.zeros(()).dtype


def _zero_carry(position: Any, num_chains: int) -> tuple[_Counts, _Welford]:
    """Per-chain counts and Welford moments before the first step (host-built, no compile)."""
    fdtype = _float_dtype(position)
    zeros_c = lambda dt: jnp.zeros((num_chains,), dt)  # noqa: E731
    as_float = lambda x: jnp.zeros(x.shape, x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else fdtype)  # noqa: E731
    counts = _Counts(zeros_c(fdtype), zeros_c(jnp.int32), zeros_c(jnp.int32), zeros_c(jnp.int32))
    zeros = jax.tree.map(as_float, position)
    return counts, _Welford(zeros_c(jnp.int32), zeros, jax.tree.map(jnp.zeros_like, zeros))


def _run_chain(kernel: SamplingAlgorithm, num_steps: int, thin: int, keep: str, key, state, t0, carry):
    """One chain: ``num_steps // thin`` blocks of ``thin`` steps in a nested scan; step ``t``
    (0-based within this call) uses ``fold_in(key, t0 + t)``; ``carry`` = (counts, Welford
    moments) accumulated over the ``t0`` steps before (so a run in pieces equals one run)."""
    fdtype = _float_dtype(state.position)
    info0 = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(kernel.step, key, state)[1]
    )
    counts0, welford0 = carry
    if not hasattr(info0, "is_divergent"):
        # num_divergent is -1 when the kernel's info has no is_divergent (read as "unknown")
        counts0 = counts0._replace(num_divergent=jnp.full_like(counts0.num_divergent, -1))
    as_float = lambda x: x.astype(fdtype) if not jnp.issubdtype(x.dtype, jnp.floating) else x  # noqa: E731

    def one_step(carry, t):
        state, counts, _ = carry
        state, info = kernel.step(jax.random.fold_in(key, t0 + t), state)
        return (state, _update_counts(counts, info, t0 + t), info), None

    def block(carry, b):
        state, counts, info, welford = carry
        steps = b * thin + jnp.arange(thin)
        (state, counts, info), _ = jax.lax.scan(one_step, (state, counts, info), steps)
        welford = _update_welford(welford, jax.tree.map(as_float, state.position))
        out = (state.position, info) if keep == "all" else None
        return (state, counts, info, welford), out

    carry0 = (state, counts0, info0, welford0)
    (state, counts, _, welford), out = jax.lax.scan(block, carry0, jnp.arange(num_steps // thin))
    return state, counts, welford, out


def _algorithm(kernel: Any, params: Any, has_params: bool) -> SamplingAlgorithm:
    return kernel(params) if has_params else kernel


def _run_impl(keys, states, params, t0, carry, *, kernel, has_params, num_steps, thin, keep, mesh):
    def run_block(keys, states, params, t0, carry):
        alg = _algorithm(kernel, params, has_params)
        fn = lambda k, s, c: _run_chain(alg, num_steps, thin, keep, k, s, t0, c)  # noqa: E731
        return jax.vmap(fn)(keys, states, carry)

    if mesh is not None:
        specs = (parallel.CHAINS, parallel.CHAINS, parallel.REPLICATED, parallel.REPLICATED, parallel.CHAINS)
        run_block = parallel.shard_chains(run_block, mesh, in_specs=specs)
    return run_block(keys, states, params, t0, carry)


def _init_impl(positions, params, *, kernel, has_params):
    return jax.vmap(_algorithm(kernel, params, has_params).init)(positions)


_STATIC = ("kernel", "has_params", "num_steps", "thin", "keep", "mesh")
_run = jax.jit(_run_impl, static_argnames=_STATIC)
_init = jax.jit(_init_impl, static_argnames=("kernel", "has_params"))


def _is_state(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields") and "position" in x._fields


def _num_chains(positions: Any) -> int:
    leaves = jax.tree.leaves(positions)
    if not leaves:
        raise ValueError("initial_positions is empty")
    shapes = [np.shape(x) for x in leaves]
    if any(len(s) == 0 for s in shapes):
        raise ValueError("initial_positions needs a leading chain axis on every leaf")
    sizes = {s[0] for s in shapes}
    if len(sizes) != 1:
        raise ValueError(f"leaves of initial_positions disagree on the number of chains: {sorted(sizes)}")
    if isinstance(positions, (jax.Array, np.ndarray)) and positions.ndim == 1:
        raise ValueError(
            f"initial_positions must be (chains, dim); got shape {positions.shape} "
            "(use x[None] for a single chain)"
        )
    return sizes.pop()


def _check_initial_log_prob(states: Any) -> None:
    log_prob = getattr(states, "log_prob", None)
    if log_prob is None:
        return
    bad = ~np.isfinite(np.asarray(log_prob))
    if bad.any():
        idx = int(np.argmax(bad))
        raise ValueError(
            f"non-finite initial log_prob ({np.asarray(log_prob)[idx]}) for chain {idx} "
            f"(of {bad.size}; {int(bad.sum())} bad chains)"
        )


def _flat_draws(positions: Any) -> np.ndarray:
    """Kept positions (a pytree of ``(chains, draws, *event)`` leaves) as ``(chains, draws, dim)``."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(positions)]
    c, n = leaves[0].shape[:2]
    return np.concatenate([x.reshape(c, n, -1).astype(float) for x in leaves], axis=-1)


def _mode_labels(mode_of: Callable[[Any], Array], positions: Any) -> np.ndarray:
    """``mode_of`` on every kept position, as integer labels ``(chains, draws)``."""
    leaves = jax.tree.leaves(positions)
    c, n = leaves[0].shape[:2]
    flat = jax.tree.map(lambda x: jnp.reshape(x, (c * n,) + x.shape[2:]), positions)
    labels = np.asarray(mode_of(flat))
    if labels.size != c * n:
        raise ValueError(f"mode_of must return one label per position ({c * n}), got shape {labels.shape}")
    return labels.reshape(c, n)


def _summary_verdict(mean: Any, variance: Any, draws: int, counts: _Counts, has_div: bool,
                     th: Thresholds) -> Verdict:
    r"""Classic (non-split) :math:`\hat R` from per-chain means and variances (``keep="summary"``).

    .. math:: W = \frac{1}{C}\sum_c s_c^2,\quad \frac{B}{N} = \operatorname{var}_c(\bar x_c),\quad
        \hat R = \sqrt{\frac{\frac{N-1}{N} W + \frac{B}{N}}{W}}

    with :math:`s_c^2 = \frac{N}{N-1}\hat\sigma_c^2` (Gelman & Rubin 1992).
    """
    m = np.concatenate([np.asarray(x).reshape(np.shape(x)[0], -1) for x in jax.tree.leaves(mean)], -1)
    v = np.concatenate([np.asarray(x).reshape(np.shape(x)[0], -1) for x in jax.tree.leaves(variance)], -1)
    c, d = m.shape
    problems: list[str] = []
    rhat = np.full(d, np.nan)
    if c >= 2 and draws >= 2:
        w = np.mean(v, 0) * draws / (draws - 1)
        b_n = np.var(m, 0, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rhat = np.sqrt(((draws - 1) / draws * w + b_n) / w)
        rhat = np.where((w == 0) & (b_n == 0), 1.0, rhat)
        bad = rhat > th.rhat
        if np.any(bad):
            problems.append(f"R-hat {float(np.nanmax(rhat)):.3g} > {th.rhat} for {int(bad.sum())} of {d} coordinates")
    else:
        problems.append("R-hat needs at least 2 chains and 2 kept draws with keep='summary'")
    nd, nn = int(np.sum(counts.num_divergent)), int(np.sum(counts.num_nonfinite))
    if has_div and nd > th.max_nonfinite:
        problems.append(f"{nd} divergent proposals")
    elif not has_div and nn > th.max_nonfinite:
        problems.append(f"{nn} non-finite proposals")
    diag = {
        "rhat": rhat,
        "max_rhat": float(np.nanmax(rhat)) if not np.all(np.isnan(rhat)) else float("nan"),
        "rhat_method": "classic (non-split) from per-chain means and variances",
        "ess_bulk": None, "ess_tail": None, "min_ess_bulk": None, "min_ess_tail": None,
        "ess_note": "ESS not available with keep='summary' (no draws kept)",
        "num_divergent": nd if has_div else None,
        "num_nonfinite": nn,
        "acceptance": float(np.mean(counts.acceptance_rate)),
        "num_chains": c,
        "num_draws": draws,
    }
    return Verdict(diag, not problems, problems)


def sample(
    key: Any,
    kernel: SamplingAlgorithm | Callable[[Any], SamplingAlgorithm],
    initial_positions: Any,
    num_steps: int,
    *,
    params: Any = None,
    thin: int = 1,
    keep: str = "all",
    devices: Sequence[jax.Device] | None = None,
    mode_of: Callable[[Any], Array] | None = None,
    num_modes: int | None = None,
    thresholds: Thresholds | None = None,
    warn: bool = True,
    target_ess: float | None = None,
    max_steps: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = False,
) -> Trace:
    r"""Run ``num_chains`` independent chains of ``kernel`` for ``num_steps`` steps.

    Parameters
    ----------
    key
        A JAX key of any ``impl`` (``jax.random.key(0, impl="rbg")`` works) or an int.
        Chain ``c`` uses ``jax.random.split(key, num_chains)[c]``.
    kernel
        A ``SamplingAlgorithm(init, step)``, e.g. ``fs.kernels.mala(log_prob, 0.1)``, or with
        ``params`` a function ``params -> SamplingAlgorithm``. The compiled run is cached per
        kernel object, shapes and options: reuse the object to avoid recompiling.
    initial_positions
        Starting points with the chain axis first, shape ``(chains, dim)`` (or a pytree of
        such arrays), or a batched kernel state such as ``trace.final_state`` to continue a run.
    num_steps
        Number of transitions per chain; a multiple of ``thin``. With ``target_ess``, the
        length of one block.
    params
        A pytree of arrays handed to ``kernel(params)`` inside the compiled program (shared by
        all chains), e.g. ``kernel=lambda p: fs.kernels.mala(log_prob, p)`` with
        ``params=0.1``, or flow parameters of a flow proposal: new values (an adapted step
        size, a retrained flow) reuse the compiled program instead of re-tracing.
    thin
        Keep every ``thin``-th state (the statistics count every step).
    keep
        ``"all"`` stores the kept positions and infos; ``"summary"`` stores only the running
        mean/variance and counts, so memory does not grow with ``num_steps``.
    devices
        ``None`` runs on the default device. A list of devices (e.g. ``jax.devices()``) or a
        1-D mesh with axis ``"chain"`` splits the chains evenly over them with
        ``jax.shard_map``; the result equals the single-device run for the same key.
    mode_of
        Optional ``positions (n, *event) -> int labels (n,)`` (e.g. ``target.mode_of``): adds
        mode visits, the drift of the mode weights between halves and :math:`\hat R` of the
        mode indicators to the verdict.
    num_modes
        Number of modes ``mode_of`` can return; unvisited modes become a problem.
    thresholds
        :class:`flowsamp.estimators.Thresholds` of the verdict (Stan / ArviZ practice by
        default: :math:`\hat R < 1.01`, bulk and tail ESS :math:`\ge 400`, no divergences).
    warn
        Issue a :class:`flowsamp.NotConvergedWarning` when the verdict fails.
    target_ess
        Keep running blocks of ``num_steps`` transitions, continuing from the final states
        (block ``b`` uses step keys ``fold_in(k_c, b * num_steps + t)``, so the draws equal one
        run of the total length), until the minimum bulk ESS over coordinates reaches
        ``target_ess`` or ``max_steps`` is spent. Needs ``keep="all"``.
    max_steps
        Budget of transitions per chain for ``target_ess`` (default ``20 * num_steps``);
        when it runs out, ``problems`` says so.
    checkpoint_path
        If given, the whole carry (kernel states, counts, running moments, the kept draws and
        infos so far, the number of steps done) is saved there atomically (:func:`flowsamp.io.save`,
        msgpack) every ``checkpoint_every`` steps and at the end of every ``num_steps`` block.
        The run is then compiled in pieces of ``checkpoint_every`` steps; since step ``t``
        always uses ``fold_in(k_c, t)`` and the counts and moments continue across pieces,
        the numbers equal the run without checkpoints.
    checkpoint_every
        Steps per chain between checkpoints, a multiple of ``thin`` (default
        ``num_steps // 10`` rounded down to a multiple of ``thin``).
    resume
        Continue from ``checkpoint_path`` when that file exists (else start and write it):
        the result is bit-identical to the uninterrupted run with the same key. A file
        from another run (key, chains, lengths, thinning, start, ``params``) or a corrupt
        one raises a ``ValueError`` naming the difference.
    progress
        Show a progress bar (tqdm) with the mean acceptance and, with ``keep="all"``, the
        minimum bulk ESS so far, both over all chains (with ``devices=`` spanning several
        processes, only process 0 draws it); the run is then compiled in pieces of
        ``checkpoint_every`` steps (default ``num_steps // 20``), with the same numbers as
        without it.

    Returns
    -------
    Trace
        Kept positions :math:`x^{(c)}_{thin\cdot j}`, infos, final states, per-chain
        acceptance rate, accepted and non-finite counts, running mean and variance, and the
        verdict (``diagnostics``, ``converged``, ``problems``).

    Raises
    ------
    ValueError
        For a non-finite initial position or initial log-density (naming the chain), chains
        that do not divide over the devices, or bad options.
    """
    has_params = params is not None
    if has_params and (isinstance(kernel, SamplingAlgorithm) or not callable(kernel)):
        raise TypeError("with params=, kernel must be a function params -> SamplingAlgorithm")
    if not has_params and not isinstance(kernel, SamplingAlgorithm):
        raise TypeError(f"kernel must be a SamplingAlgorithm (init, step), got {type(kernel).__name__}")
    if has_params:
        params = jax.tree.map(jnp.asarray, params)
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if not isinstance(thin, (int, np.integer)) or thin < 1:
        raise ValueError(f"thin must be a positive int, got {thin!r}")
    if num_steps % thin:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of thin ({thin})")
    if keep not in _KEEP:
        raise ValueError(f"keep must be one of {_KEEP}, got {keep!r}")
    if mode_of is not None and not callable(mode_of):
        raise TypeError(f"mode_of must be callable, got {type(mode_of).__name__}")
    if (mode_of is not None or num_modes is not None) and keep != "all":
        raise ValueError("mode_of / num_modes need keep='all' (mode diagnostics read the kept draws)")
    if num_modes is not None and mode_of is None:
        raise ValueError("num_modes is the number of labels of mode_of; pass mode_of too")
    if thresholds is not None and not isinstance(thresholds, Thresholds):
        raise TypeError(f"thresholds must be a flowsamp.estimators.Thresholds, got {type(thresholds).__name__}")
    if target_ess is not None:
        if not np.isfinite(target_ess) or target_ess <= 0:
            raise ValueError(f"target_ess must be a positive number, got {target_ess!r}")
        if keep != "all":
            raise ValueError("target_ess needs keep='all' (the ESS is computed from the kept draws)")
    if max_steps is not None:
        if target_ess is None:
            raise ValueError("max_steps is the budget of target_ess; pass target_ess too")
        if not isinstance(max_steps, (int, np.integer)) or max_steps < num_steps:
            raise ValueError(f"max_steps must be an int >= num_steps ({num_steps}), got {max_steps!r}")
    _ckpt.check_options("fs.sample", checkpoint_path, checkpoint_every, resume, "steps", multiple_of=int(thin))
    th = thresholds if thresholds is not None else Thresholds()
    key = as_key(key)
    initial_positions = parallel.gather(initial_positions)  # global arrays over processes -> host-local

    if _is_state(initial_positions):
        states = initial_positions
        check_finite_positions(states.position)
        num_chains = _num_chains(states.position)
    else:
        positions = jax.tree.map(jnp.asarray, initial_positions)
        num_chains = _num_chains(positions)
        check_finite_positions(positions)
        states = _init(positions, params, kernel=kernel, has_params=has_params)
    _check_initial_log_prob(states)

    mesh = None
    if devices is not None:
        mesh = parallel.chain_mesh(devices)
        parallel.check_divisible(num_chains, mesh)

    keys = jax.random.split(key, num_chains)
    run = lambda st, t0, n, carry: _run(  # noqa: E731
        keys, st, params, jnp.asarray(t0, jnp.int32), carry,
        kernel=kernel, has_params=has_params, num_steps=int(n), thin=int(thin), keep=keep, mesh=mesh,
    )
    num_steps, thin = int(num_steps), int(thin)
    budget = int(max_steps) if max_steps is not None else 20 * num_steps
    every = None
    if checkpoint_path is not None:
        every = int(checkpoint_every) if checkpoint_every is not None else max(thin, num_steps // 10 // thin * thin)
    piece = every
    if progress and piece is None:
        piece = max(thin, num_steps // 20 // thin * thin)
    state = states
    counts, welford = _zero_carry(states.position, num_chains)
    blocks: list = []
    total = 0
    meta = None
    if checkpoint_path is not None:
        meta = {
            "sampler": "fs.sample", "num_chains": num_chains, "num_steps": num_steps, "thin": thin,
            "keep": keep, "target_ess": None if target_ess is None else float(target_ess),
            "max_steps": budget if target_ess is not None else None,
            "key": [int(v) for v in _ckpt.key_data(key).ravel()],
            "initial": _ckpt.fingerprint(states.position),
            "params": _ckpt.fingerprint(params) if has_params else None,
        }
        if _ckpt.should_resume(checkpoint_path, resume):
            state, counts, welford, blocks, total = _load_checkpoint(
                checkpoint_path, meta, run, state, counts, welford, keep, thin)
    extra_problem = None
    bar = ProgressBar(progress, num_steps if target_ess is None else budget, "fs.sample", "step", total)
    while True:
        if total and total % num_steps == 0:
            if target_ess is None:
                break
            min_ess = _nanmin_ess(blocks)
            if min_ess >= target_ess:
                break
            if total + num_steps > budget:
                extra_problem = (
                    f"target ESS {target_ess:g} not reached: min bulk ESS {min_ess:.0f} after {total} steps"
                )
                break
        end = (total // num_steps + 1) * num_steps
        if piece is not None:
            end = min(end, (total // piece + 1) * piece)
        state, counts, welford, out = run(state, total, end - total, (counts, welford))
        blocks.append(out)
        if bar:
            bar.update(end - total, **_progress_stats(bar, counts, blocks))
        total = end
        if every is not None and (total % every == 0 or total % num_steps == 0):
            if keep == "all" and len(blocks) > 1:
                blocks = [jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *blocks)]
            kept = blocks[0] if keep == "all" else None
            tree = {"state": state, "counts": counts, "welford": welford, "kept": kept}
            _io.save(checkpoint_path, tree, meta={**meta, "done": total})
    bar.close()
    mean = welford.mean
    variance = jax.tree.map(lambda m: m / welford.count.reshape((-1,) + (1,) * (m.ndim - 1)).astype(m.dtype),
                            welford.m2)
    if keep == "all":
        positions, info = blocks[0] if len(blocks) == 1 else jax.tree.map(
            lambda *xs: jnp.concatenate(xs, axis=1), *blocks
        )
    else:
        positions, info = None, None
    verdict = _verdict(positions, mean, variance, total // thin, counts, info, keep, mode_of, num_modes, th)
    if extra_problem is not None:
        verdict = Verdict({**verdict.diagnostics, "target_ess": target_ess}, False, verdict.problems + [extra_problem])
    elif target_ess is not None:
        verdict = Verdict({**verdict.diagnostics, "target_ess": target_ess}, verdict.converged, verdict.problems)
    if warn:
        warn_if_not_converged(verdict, "fs.sample")
    return Trace(
        positions=positions,
        info=info,
        final_state=state,
        acceptance_rate=counts.acceptance_rate,
        num_accepted=counts.num_accepted,
        num_nonfinite=counts.num_nonfinite,
        mean=mean,
        variance=variance,
        num_steps=total,
        thin=int(thin),
        diagnostics=verdict.diagnostics,
        converged=verdict.converged,
        problems=verdict.problems,
    )


def _progress_stats(bar: ProgressBar, counts: _Counts, blocks: list) -> dict[str, Any]:
    """Mean acceptance over all chains and, with keep='all' (at most every 2 s, up to
    ``MAX_ESS_VALUES`` kept values), the minimum bulk ESS over coordinates so far."""
    stats: dict[str, Any] = {"acc": float(np.mean(np.asarray(counts.acceptance_rate)))}
    if blocks and blocks[0] is not None and readable(blocks):
        size = sum(sum(x.size for x in jax.tree.leaves(b[0])) for b in blocks)
        if size <= MAX_ESS_VALUES:
            stats["min_ess"] = bar.every("ess", 2.0, lambda: min_bulk_ess(_flat_draws(_joined(blocks)[0])))
    return stats


def _joined(blocks: list) -> Any:
    """The kept (positions, info) of all blocks, joined along the draw axis."""
    return blocks[0] if len(blocks) == 1 else jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *blocks)


def _load_checkpoint(path, meta, run, state, counts, welford, keep, thin):
    """Restore (state, counts, welford, kept blocks, steps done) from a fs.sample checkpoint."""
    done = _io.read_meta(path, meta).get("done")
    if not isinstance(done, int) or done < 0 or done % thin:
        raise ValueError(f"fs.sample: {os.fspath(path)!r} has no valid step count 'done' ({done!r}) in its meta")
    kept = None
    if keep == "all":
        shapes = jax.eval_shape(lambda s, c: run(s, 0, thin, c)[3], state, (counts, welford))
        kept = jax.tree.map(lambda x: jnp.zeros(x.shape[:1] + (done // thin,) + x.shape[2:], x.dtype), shapes)
    like = {"state": state, "counts": counts, "welford": welford, "kept": kept}
    tree = _io.load(path, like, meta=meta)
    return tree["state"], tree["counts"], tree["welford"], [tree["kept"]] if keep == "all" else [], done


def _nanmin_ess(blocks: list) -> float:
    positions = blocks[0][0] if len(blocks) == 1 else jax.tree.map(
        lambda *xs: jnp.concatenate(xs, axis=1), *[b[0] for b in blocks]
    )
    x = _flat_draws(positions)
    if x.shape[1] < 4:
        return 0.0
    e = rank_diagnostics(x)["ess_bulk"]
    return float(np.nanmin(e)) if not np.all(np.isnan(e)) else float("inf")


def _verdict(positions, mean, variance, draws, counts, info, keep, mode_of, num_modes, th) -> Verdict:
    has_div = bool(np.all(np.asarray(counts.num_divergent) >= 0))
    if keep == "summary":
        return _summary_verdict(mean, variance, draws, counts, has_div, th)
    nd, nn = int(np.sum(counts.num_divergent)), int(np.sum(counts.num_nonfinite))
    c = int(np.shape(counts.num_accepted)[0])
    if draws < 4:
        problems = [f"only {draws} kept draws per chain: convergence cannot be assessed (need at least 4)"]
        diag = {"num_chains": c, "num_draws": draws, "num_divergent": nd if has_div else None,
                "num_nonfinite": nn, "acceptance": float(np.mean(counts.acceptance_rate))}
        return Verdict(diag, False, problems)
    labels = _mode_labels(mode_of, positions) if mode_of is not None else None
    v = mcmc_verdict(
        _flat_draws(positions),
        num_divergent=nd if has_div else None,
        num_nonfinite=None if has_div else nn,
        acceptance=float(np.mean(counts.acceptance_rate)),
        mode_labels=labels,
        num_modes=num_modes,
        thresholds=th,
    )
    return Verdict({**v.diagnostics, "num_nonfinite": nn}, v.converged, v.problems)
