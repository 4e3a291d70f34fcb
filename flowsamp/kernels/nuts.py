r"""The No-U-Turn Sampler (NUTS): blackjax's implementation under flowsamp's kernel contract.

NUTS (Hoffman & Gelman, JMLR 15, 1593 (2014); multinomial variant of Betancourt,
arXiv:1701.02434) integrates Hamiltonian dynamics with leapfrog steps of size :math:`\epsilon`
and inverse mass :math:`M^{-1}`, doubling the trajectory in a random direction until it makes a
U-turn,

.. math::

    (p^+ \cdot M^{-1}(x^+ - x^-) < 0) \ \text{or}\ (p^- \cdot M^{-1}(x^+ - x^-) < 0),

or reaches :math:`2^{\text{max\_num\_doublings}}` steps, and draws the next state from the
trajectory with probability :math:`\propto e^{-H}`. It leaves :math:`\pi` invariant and needs no
trajectory length.

The tree building is blackjax's (``blackjax.mcmc.nuts``, iterative and jit-friendly): a
well-kept implementation whose contract is close to flowsamp's (pure ``init``/``build_kernel``,
key first, NamedTuple states). This module only adapts it: the state is :class:`NUTSState`
(position, :math:`\log\pi`, the *flat* gradient, like HMC's), the info carries
``is_accepted``, ``acceptance_rate`` (the mean Metropolis probability over the trajectory),
``is_finite`` and ``is_divergent`` (energy error > 1000 or non-finite, Stan's definition; a NaN
log-density is an energy error of :math:`-\infty` in blackjax, so a divergence), keys of any
``impl`` are accepted, and a non-finite end point is rejected (the state does not move).

References: Hoffman & Gelman (2014); Betancourt (2017); Cabezas et al., "BlackJAX: Composable
Bayesian inference in JAX", arXiv:2402.10797.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

from flowsamp.base import KernelAPI, SamplingAlgorithm, as_key, select
from flowsamp.kernels import _flat, _mass
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["NUTSState", "NUTSInfo", "DIVERGENCE_THRESHOLD", "init", "build_kernel", "nuts"]

#: Energy error above which a trajectory counts as divergent (Stan's ``max_deltaH``).
DIVERGENCE_THRESHOLD = 1000.0


class NUTSState(NamedTuple):
    """Position, :math:`\\log\\pi(x)` and :math:`\\nabla\\log\\pi(x)` (flat vector)."""

    position: Any
    log_prob: Array
    grad: Array


class NUTSInfo(NamedTuple):
    """Diagnostics of one NUTS transition.

    ``is_accepted``: the chain moved; ``acceptance_rate``: mean of
    :math:`\\min(1, e^{-\\Delta H})` over the trajectory (what step-size adaptation targets);
    ``is_finite``: False when the trajectory diverged (blackjax does not tell a non-finite
    energy from a large one); ``is_divergent``: energy error > 1000 or non-finite;
    ``num_integration_steps``: leapfrog steps (gradient evaluations) used; ``is_turning``:
    the trajectory ended on a U-turn; ``energy``: :math:`H` of the returned point.
    """

    is_accepted: Array
    acceptance_rate: Array
    is_finite: Array
    is_divergent: Array
    num_integration_steps: Array
    is_turning: Array
    energy: Array


def init(position: Any, log_prob_fn: LogProbFn) -> NUTSState:
    """Return the state at ``position`` with log-density and flat gradient cached.

    Integer positions are cast to the default float dtype.
    """
    position = _flat.as_float_position(position)
    log_prob, grad = _flat.value_and_grad_flat(log_prob_fn, position)
    return NUTSState(position, log_prob, grad)


def build_kernel(divergence_threshold: float = DIVERGENCE_THRESHOLD) -> Callable[..., tuple[NUTSState, NUTSInfo]]:
    """Return ``kernel(key, state, log_prob_fn, step_size, inverse_mass=None,
    max_num_doublings=10) -> (state, info)``.

    ``inverse_mass`` is ``None`` (identity), a scalar, a flat diagonal or a dense matrix.
    """
    from blackjax.mcmc import hmc as bj_hmc  # lazy: blackjax is needed only when NUTS runs
    from blackjax.mcmc import nuts as bj_nuts

    bj_kernel = bj_nuts.build_kernel(divergence_threshold=divergence_threshold)

    def kernel(
        key: PRNGKey,
        state: NUTSState,
        log_prob_fn: LogProbFn,
        step_size: Any,
        inverse_mass: Any = None,
        max_num_doublings: int = 10,
    ) -> tuple[NUTSState, NUTSInfo]:
        flat, unravel = _flat.flatten(state.position)
        flat_log_prob = _flat.flat_log_prob(log_prob_fn, unravel)
        inv_mass = _mass.as_inverse_mass(inverse_mass, flat.dtype)
        if jnp.ndim(inv_mass) == 0:
            inv_mass = jnp.full(flat.shape, inv_mass)
        step_size = _flat.as_param(step_size, flat.dtype)
        bj_state = bj_hmc.HMCState(flat, state.log_prob, state.grad)
        new, info = bj_kernel(as_key(key), bj_state, flat_log_prob, step_size, inv_mass, max_num_doublings)
        finite = jnp.isfinite(new.logdensity) & jnp.all(jnp.isfinite(new.position))
        proposal = NUTSState(unravel(new.position), new.logdensity.astype(state.log_prob.dtype), new.logdensity_grad)
        new_state = select(finite, proposal, state)
        is_accepted = finite & jnp.any(new.position != flat)
        is_divergent = jnp.asarray(info.is_divergent) | ~finite
        rate = jnp.where(jnp.isfinite(info.acceptance_rate), info.acceptance_rate, 0.0).astype(flat.dtype)
        out = NUTSInfo(
            is_accepted,
            rate,
            ~is_divergent,
            is_divergent,
            jnp.asarray(info.num_integration_steps),
            jnp.asarray(info.is_turning),
            jnp.asarray(info.energy, flat.dtype),
        )
        return new_state, out

    return kernel


def nuts(
    log_prob_fn: LogProbFn,
    step_size: Any,
    inverse_mass: Any = None,
    max_num_doublings: int = 10,
) -> SamplingAlgorithm:
    """NUTS as ``SamplingAlgorithm(init, step)`` (blackjax's tree building, flowsamp's contract).

    Parameters
    ----------
    log_prob_fn
        Unnormalized log-density :math:`\\log\\pi(x)` of one position (differentiable).
    step_size
        Leapfrog step size :math:`\\epsilon` (adapt it with
        :func:`flowsamp.kernels.window_adaptation`, target acceptance 0.8).
    inverse_mass
        :math:`M^{-1}`: ``None`` (identity), a scalar, the flat diagonal or a dense
        ``(dim, dim)`` matrix.
    max_num_doublings
        At most :math:`2^{\\text{max\\_num\\_doublings}}` leapfrog steps per transition (10 as
        in Stan, numpyro and blackjax).

    Raises
    ------
    ValueError
        For a step size that is not positive and finite, a bad ``inverse_mass`` or
        ``max_num_doublings`` < 1 (checked when concrete, not when traced inside ``jit``).

    Returns
    -------
    SamplingAlgorithm
        ``init(position) -> NUTSState``; ``step(key, state) -> (NUTSState, NUTSInfo)``.
    """
    _flat.check_positive("step_size", step_size)
    _flat.check_inverse_mass(inverse_mass)
    _flat.check_num_steps("max_num_doublings", max_num_doublings)
    kernel = build_kernel()

    def init_fn(position: Any) -> NUTSState:
        return init(position, log_prob_fn)

    def step_fn(key: PRNGKey, state: NUTSState) -> tuple[NUTSState, NUTSInfo]:
        return kernel(key, state, log_prob_fn, step_size, inverse_mass, max_num_doublings)

    return SamplingAlgorithm(init_fn, step_fn)


nuts = KernelAPI(nuts, globals(), __all__)
