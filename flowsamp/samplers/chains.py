r"""``sample``: run many Markov chains of one kernel, on one device or sharded over several.

Chain :math:`c` uses the key :math:`k_c` = ``jax.random.split(key, num_chains)[c]`` and at
step :math:`t` (0-based) the key ``jax.random.fold_in(k_c, t)``; chains are a ``vmap``
over a leading axis, and the steps one ``jax.lax.scan`` compiled once per
(kernel, shapes, options). With ``devices=`` the chain axis is split over the devices
with ``jax.shard_map`` (:mod:`flowsamp.parallel`); every chain sees the same keys and
start, so the numbers equal the single-device run.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp import parallel
from flowsamp.base import SamplingAlgorithm, as_key, check_finite_positions
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
        The run's length and thinning.
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


class _Counts(NamedTuple):
    acceptance_rate: Array
    num_accepted: Array
    num_nonfinite: Array


class _Welford(NamedTuple):
    count: Array
    mean: Any
    m2: Any


def _update_counts(counts: _Counts, info: Any, step: Array) -> _Counts:
    rate = getattr(info, "acceptance_rate", None)
    accepted = getattr(info, "is_accepted", None)
    finite = getattr(info, "is_finite", None)
    acc_rate = counts.acceptance_rate
    if rate is not None:
        acc_rate = acc_rate + (rate.astype(acc_rate.dtype) - acc_rate) / (step + 1).astype(acc_rate.dtype)
    num_accepted = counts.num_accepted
    if accepted is not None:
        num_accepted = num_accepted + accepted.astype(num_accepted.dtype)
    num_nonfinite = counts.num_nonfinite
    if finite is not None:
        num_nonfinite = num_nonfinite + (~finite).astype(num_nonfinite.dtype)
    return _Counts(acc_rate, num_accepted, num_nonfinite)


def _update_welford(w: _Welford, position: Any) -> _Welford:
    count = w.count + 1
    delta = jax.tree.map(lambda x, m: x - m, position, w.mean)
    mean = jax.tree.map(lambda m, d: m + d / count.astype(m.dtype), w.mean, delta)
    m2 = jax.tree.map(lambda s, d, x, m: s + d * (x - m), w.m2, delta, position, mean)
    return _Welford(count, mean, m2)


def _float_dtype(position: Any) -> Any:
    leaves = [x for x in jax.tree.leaves(position) if jnp.issubdtype(x.dtype, jnp.floating)]
    return leaves[0].dtype if leaves else jnp.zeros(()).dtype


def _run_chain(kernel: SamplingAlgorithm, num_steps: int, thin: int, keep: str, key, state):
    """One chain: ``num_steps // thin`` blocks of ``thin`` steps in a nested scan."""
    fdtype = _float_dtype(state.position)
    info0 = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(kernel.step, key, state)[1]
    )
    counts0 = _Counts(jnp.zeros((), fdtype), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
    as_float = lambda x: x.astype(fdtype) if not jnp.issubdtype(x.dtype, jnp.floating) else x
    zeros = jax.tree.map(lambda x: jnp.zeros_like(as_float(x)), state.position)
    welford0 = _Welford(jnp.zeros((), jnp.int32), zeros, zeros)

    def one_step(carry, t):
        state, counts, _ = carry
        state, info = kernel.step(jax.random.fold_in(key, t), state)
        return (state, _update_counts(counts, info, t), info), None

    def block(carry, b):
        state, counts, info, welford = carry
        steps = b * thin + jnp.arange(thin)
        (state, counts, info), _ = jax.lax.scan(one_step, (state, counts, info), steps)
        welford = _update_welford(welford, jax.tree.map(as_float, state.position))
        out = (state.position, info) if keep == "all" else None
        return (state, counts, info, welford), out

    carry0 = (state, counts0, info0, welford0)
    (state, counts, _, welford), out = jax.lax.scan(block, carry0, jnp.arange(num_steps // thin))
    variance = jax.tree.map(lambda s: s / welford.count.astype(s.dtype), welford.m2)
    return state, counts, welford.mean, variance, out


def _algorithm(kernel: Any, params: Any, has_params: bool) -> SamplingAlgorithm:
    return kernel(params) if has_params else kernel


def _run_impl(keys, states, params, *, kernel, has_params, num_steps, thin, keep, mesh):
    def run_block(keys, states, params):
        alg = _algorithm(kernel, params, has_params)
        fn = lambda k, s: _run_chain(alg, num_steps, thin, keep, k, s)  # noqa: E731
        return jax.vmap(fn)(keys, states)

    if mesh is not None:
        specs = (parallel.CHAINS, parallel.CHAINS, parallel.REPLICATED)
        run_block = parallel.shard_chains(run_block, mesh, in_specs=specs)
    return run_block(keys, states, params)


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
        Number of transitions per chain; a multiple of ``thin``.
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

    Returns
    -------
    Trace
        Kept positions :math:`x^{(c)}_{thin\cdot j}`, infos, final states, and per-chain
        acceptance rate, accepted and non-finite counts, running mean and variance.

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
    key = as_key(key)

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
    state, counts, mean, variance, out = _run(
        keys,
        states,
        params,
        kernel=kernel,
        has_params=has_params,
        num_steps=int(num_steps),
        thin=int(thin),
        keep=keep,
        mesh=mesh,
    )
    positions, info = out if keep == "all" else (None, None)
    return Trace(
        positions=positions,
        info=info,
        final_state=state,
        acceptance_rate=counts.acceptance_rate,
        num_accepted=counts.num_accepted,
        num_nonfinite=counts.num_nonfinite,
        mean=mean,
        variance=variance,
        num_steps=int(num_steps),
        thin=int(thin),
    )
