r"""Step-size adaptation toward a target acceptance rate (dual averaging) as a warm-up.

Dual averaging (Nesterov 2009; Hoffman & Gelman, JMLR 15, 1593 (2014), Algorithm 5,
arXiv:1111.4246) drives the mean acceptance rate :math:`\alpha_m` to a target
:math:`\delta` by updating, with :math:`\mu = \log(10\,\epsilon_0)`,

.. math::

    \bar H_m &= \Big(1 - \frac{1}{m + t_0}\Big)\bar H_{m-1} + \frac{\delta - \alpha_m}{m + t_0},\\
    \log\epsilon_m &= \mu - \frac{\sqrt m}{\gamma}\,\bar H_m,\\
    \log\bar\epsilon_m &= m^{-\kappa}\log\epsilon_m + (1 - m^{-\kappa})\log\bar\epsilon_{m-1}.

Warm-up steps use :math:`\epsilon_m`; the adapted step size is :math:`\bar\epsilon_M`.
The optimiser is optax-like: a pure ``(init, update)`` pair over a NamedTuple state, and
the warm-up is one ``jax.lax.scan`` under ``jit``.

Kernels enter through a *factory* ``step_size -> SamplingAlgorithm``, e.g.
``lambda eps: fs.kernels.hmc(log_prob, eps, 10)``, so any kernel whose constructor takes a
step size (``rwmh``'s ``scale`` too) can be adapted.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.base import SamplingAlgorithm, as_key, check_finite_positions
from flowsamp.types import Array

__all__ = [
    "TARGET_ACCEPTANCE",
    "AdaptationResult",
    "DualAveraging",
    "DualAveragingState",
    "RobbinsMonro",
    "RobbinsMonroState",
    "dual_averaging",
    "dual_averaging_adaptation",
    "find_step_size",
    "heuristic_step_size",
    "robbins_monro",
]

#: Target mean acceptance rates, the one table every adaptation in flowsamp reads:
#: RWMH 0.234 (Roberts, Gelman & Gilks 1997), MALA 0.574 (Roberts & Rosenthal 1998),
#: HMC 0.65 (Beskos et al. 2013), NUTS 0.8 (Stan's default ``delta``, Hoffman & Gelman 2014).
TARGET_ACCEPTANCE = {"mala": 0.574, "hmc": 0.65, "nuts": 0.8, "rwmh": 0.234}

KernelFactory = Callable[[Array], SamplingAlgorithm]


class DualAveragingState(NamedTuple):
    """``log_step_size`` :math:`\\log\\epsilon_m`, ``log_step_size_avg``
    :math:`\\log\\bar\\epsilon_m`, ``error_avg`` :math:`\\bar H_m`, ``step`` :math:`m`,
    ``mu`` :math:`\\mu`."""

    log_step_size: Array
    log_step_size_avg: Array
    error_avg: Array
    step: Array
    mu: Array


class DualAveraging(NamedTuple):
    """``init(step_size) -> state``; ``update(state, acceptance_rate) -> state``."""

    init: Callable[[Array], DualAveragingState]
    update: Callable[[DualAveragingState, Array], DualAveragingState]


class AdaptationResult(NamedTuple):
    """Result of :func:`dual_averaging_adaptation`.

    ``state``: batched kernel states after the warm-up; ``step_size``: adapted
    :math:`\\bar\\epsilon` (scalar when shared, one per chain otherwise);
    ``step_sizes`` and ``acceptance_rates``: per warm-up step, the :math:`\\epsilon_m` used
    and the acceptance rate it gave (shape ``(num_steps,)`` or ``(num_steps, chains)``).
    """

    state: Any
    step_size: Array
    step_sizes: Array
    acceptance_rates: Array


def dual_averaging(
    target_acceptance: float, t0: float = 10.0, gamma: float = 0.05, kappa: float = 0.75
) -> DualAveraging:
    """Return the dual-averaging optimiser of the step size toward ``target_acceptance``.

    Parameters
    ----------
    target_acceptance
        :math:`\\delta` in (0, 1); :data:`TARGET_ACCEPTANCE` has the usual values.
    t0, gamma, kappa
        Stabilisation offset, shrinkage and averaging exponent (Hoffman & Gelman's defaults).
    """
    if not 0.0 < target_acceptance < 1.0:
        raise ValueError(f"target_acceptance must be in (0, 1), got {target_acceptance}")

    def init(step_size: Array) -> DualAveragingState:
        log_eps = jnp.log(jnp.asarray(step_size))
        zero = jnp.zeros_like(log_eps)
        return DualAveragingState(log_eps, zero, zero, jnp.zeros((), jnp.int32), log_eps + float(np.log(10.0)))

    def update(state: DualAveragingState, acceptance_rate: Array) -> DualAveragingState:
        dtype = state.log_step_size.dtype
        m = (state.step + 1).astype(dtype)
        acc = jnp.nan_to_num(acceptance_rate.astype(dtype), nan=0.0)
        w = 1.0 / (m + t0)
        error_avg = (1.0 - w) * state.error_avg + w * (target_acceptance - acc)
        log_eps = state.mu - jnp.sqrt(m) / gamma * error_avg
        eta = m ** (-kappa)
        log_eps_avg = eta * log_eps + (1.0 - eta) * state.log_step_size_avg
        return DualAveragingState(log_eps, log_eps_avg, error_avg, state.step + 1, state.mu)

    return DualAveraging(init, update)


class RobbinsMonroState(NamedTuple):
    """``log_step_size`` :math:`\\log\\epsilon_m` (scalar or one per chain)."""

    log_step_size: Array


class RobbinsMonro(NamedTuple):
    """``init(step_size) -> state``; ``update(state, acceptance_rate) -> state``."""

    init: Callable[[Array], RobbinsMonroState]
    update: Callable[[RobbinsMonroState, Array], RobbinsMonroState]


def robbins_monro(target_acceptance: float, rate: float) -> RobbinsMonro:
    r"""Return the Robbins-Monro (stochastic-approximation) step-size update.

    .. math::

        \log\epsilon_{m+1} = \log\epsilon_m + \gamma\,(\alpha_m - \delta)

    with ``rate`` :math:`\gamma > 0` constant: it never freezes, so it suits a step size
    that must keep following a changing target (tempered SMC, flow-MCMC training loops).
    A non-finite :math:`\alpha_m` counts as 0 (a rejection). For a warm-up that ends in a
    fixed step size use :func:`dual_averaging` (its average converges).

    Parameters
    ----------
    target_acceptance
        :math:`\delta` in (0, 1), e.g. ``TARGET_ACCEPTANCE["mala"]``.
    rate
        :math:`\gamma > 0`.
    """
    if not 0.0 < target_acceptance < 1.0:
        raise ValueError(f"target_acceptance must be in (0, 1), got {target_acceptance}")
    if not (np.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be positive and finite, got {rate}")

    def init(step_size: Array) -> RobbinsMonroState:
        return RobbinsMonroState(jnp.log(jnp.asarray(step_size)))

    def update(state: RobbinsMonroState, acceptance_rate: Array) -> RobbinsMonroState:
        dtype = state.log_step_size.dtype
        acc = jnp.nan_to_num(jnp.asarray(acceptance_rate, dtype), nan=0.0)
        return RobbinsMonroState(state.log_step_size + rate * (acc - target_acceptance))

    return RobbinsMonro(init, update)


def _is_state(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields") and "position" in x._fields


def _batched_states(kernel_factory: KernelFactory, positions_or_states: Any, step_size: Array) -> Any:
    if _is_state(positions_or_states):
        check_finite_positions(positions_or_states.position)
        return positions_or_states
    positions = jax.tree.map(jnp.asarray, positions_or_states)
    check_finite_positions(positions)
    return jax.jit(jax.vmap(kernel_factory(step_size).init))(positions)


def _vmapped_rates(kernel_factory, keys, states, step_size, per_chain):
    step = lambda k, s, e: kernel_factory(e).step(k, s)  # noqa: E731
    states, info = jax.vmap(step, in_axes=(0, 0, 0 if per_chain else None))(keys, states, step_size)
    return states, info.acceptance_rate

@functools.partial(jax.jit, static_argnames=("kernel_factory", "target_acceptance", "max_doublings"))
def _find(keys, states, eps0, *, kernel_factory, target_acceptance, max_doublings):
    mean_rate = lambda e: jnp.mean(_vmapped_rates(kernel_factory, keys, states, e, False)[1])  # noqa: E731
    above0 = mean_rate(eps0) > target_acceptance
    factor = jnp.where(above0, 2.0, 0.5).astype(eps0.dtype)

    def cond(c):
        i, _, above = c
        return (i < max_doublings) & (above == above0)

    def body(c):
        i, eps, _ = c
        eps = eps * factor
        return i + 1, eps, mean_rate(eps) > target_acceptance

    _, eps, _ = jax.lax.while_loop(cond, body, (0, eps0, above0))
    return eps


@functools.partial(
    jax.jit, static_argnames=("kernel_factory", "optimiser_args", "num_steps", "per_chain")
)
def _adapt(chain_keys, states, eps0, *, kernel_factory, optimiser_args, num_steps, per_chain):
    optimiser = dual_averaging(*optimiser_args)
    num_chains = chain_keys.shape[0]
    da0 = optimiser.init(jnp.broadcast_to(eps0, (num_chains,)) if per_chain else eps0)

    def body(carry, t):
        states, da = carry
        eps = jnp.exp(da.log_step_size)
        keys = jax.vmap(jax.random.fold_in, (0, None))(chain_keys, t)
        states, rates = _vmapped_rates(kernel_factory, keys, states, eps, per_chain)
        rate = rates if per_chain else jnp.mean(rates)
        return (states, optimiser.update(da, rate)), (eps, rate)

    (states, da), (eps_hist, rate_hist) = jax.lax.scan(body, (states, da0), jnp.arange(num_steps))
    return states, jnp.exp(da.log_step_size_avg), eps_hist, rate_hist



def heuristic_step_size(
    keys: Array,
    kernel_factory: KernelFactory,
    states: Any,
    step_size: Array,
    target_acceptance: float,
    max_doublings: int = 40,
) -> Array:
    """The traceable core of :func:`find_step_size` on already batched ``states`` with one key
    per chain (usable inside ``jit``/``vmap``, e.g. in numpyro's per-chain ``init``)."""
    return _find(
        keys,
        states,
        jnp.asarray(step_size),
        kernel_factory=kernel_factory,
        target_acceptance=float(target_acceptance),
        max_doublings=int(max_doublings),
    )


def find_step_size(
    key: Any,
    kernel_factory: KernelFactory,
    initial_positions: Any,
    target_acceptance: float,
    initial_step_size: float = 1.0,
    max_doublings: int = 40,
) -> Array:
    r"""Heuristic initial step size: double or halve until the mean acceptance crosses the target.

    From the given chains, one trial step at :math:`\epsilon` gives the mean acceptance rate
    :math:`\bar\alpha(\epsilon)`; :math:`\epsilon` is doubled while
    :math:`\bar\alpha > \delta` (or halved while :math:`\bar\alpha < \delta`) and the first
    value on the other side of :math:`\delta` is returned (Hoffman & Gelman, Algorithm 4).
    Positions are not moved.

    Returns
    -------
    Array
        The step size :math:`\epsilon` (scalar, dtype of the positions' log-density).
    """
    key = as_key(key)
    eps0 = jnp.asarray(initial_step_size)
    states = _batched_states(kernel_factory, initial_positions, eps0)
    num_chains = jax.tree.leaves(states.position)[0].shape[0]
    keys = jax.random.split(key, num_chains)

    dtype = states.log_prob.dtype if hasattr(states, "log_prob") else eps0.dtype
    return _find(
        keys,
        states,
        eps0.astype(dtype),
        kernel_factory=kernel_factory,
        target_acceptance=float(target_acceptance),
        max_doublings=int(max_doublings),
    )


def dual_averaging_adaptation(
    key: Any,
    kernel_factory: KernelFactory,
    initial_positions: Any,
    num_steps: int,
    target_acceptance: float,
    *,
    initial_step_size: float | None = None,
    shared: bool = True,
    t0: float = 10.0,
    gamma: float = 0.05,
    kappa: float = 0.75,
) -> AdaptationResult:
    r"""Warm up vmapped chains while adapting the step size by dual averaging.

    Parameters
    ----------
    key
        JAX key (any ``impl``) or int; chain ``c`` uses ``split(key, chains)[c]`` folded
        with the step index, as :func:`flowsamp.samplers.sample` does.
    kernel_factory
        ``step_size -> SamplingAlgorithm``, e.g. ``lambda e: fs.kernels.mala(log_prob, e)``.
    initial_positions
        ``(chains, dim)`` starting points (or a pytree / batched kernel state).
    num_steps
        Warm-up steps; the chains move (the returned ``state`` is after the warm-up).
    target_acceptance
        Target mean acceptance rate :math:`\delta`.
    initial_step_size
        :math:`\epsilon_0`; ``None`` finds one with :func:`find_step_size`.
    shared
        One step size for all chains adapted on the mean acceptance over chains (the
        usual choice with ``vmap``), or one per chain on each chain's own acceptance.

    Returns
    -------
    AdaptationResult
        States after warm-up and the adapted :math:`\bar\epsilon_M` with the warm-up history.
    """
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    key = as_key(key)
    key_find, key_run = jax.random.split(key)
    dual_averaging(target_acceptance, t0, gamma, kappa)  # validates the options
    if initial_step_size is None:
        eps0 = find_step_size(key_find, kernel_factory, initial_positions, target_acceptance)
    else:
        eps0 = jnp.asarray(initial_step_size)
    states = _batched_states(kernel_factory, initial_positions, eps0)
    if hasattr(states, "log_prob"):
        eps0 = eps0.astype(states.log_prob.dtype)
    num_chains = jax.tree.leaves(states.position)[0].shape[0]
    chain_keys = jax.random.split(key_run, num_chains)
    per_chain = not shared

    states, step_size, eps_hist, rate_hist = _adapt(
        chain_keys,
        states,
        eps0,
        kernel_factory=kernel_factory,
        optimiser_args=(float(target_acceptance), float(t0), float(gamma), float(kappa)),
        num_steps=int(num_steps),
        per_chain=per_chain,
    )
    return AdaptationResult(states, step_size, eps_hist, rate_hist)
