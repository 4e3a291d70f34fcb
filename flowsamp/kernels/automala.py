r"""autoMALA: MALA whose step size is chosen afresh at every transition from the local geometry.

One shared step size cannot fit a target whose scale changes with position (the neck and the
mouth of Neal's funnel differ by :math:`e^{\pm 3\sigma_v/2}`): where it is too large the chain
stops moving. autoMALA (Biron-Lattes, Surjanovic, Syed, Campbell & Bouchard-Côté 2024,
"autoMALA: locally adaptive Metropolis-adjusted Langevin algorithm", AISTATS, arXiv:2310.16782;
the involutive form of Liu et al. 2024, "AutoStep", arXiv:2410.18929) picks the step size
:math:`\epsilon_j = \epsilon_0\,4^{j}` (the leapfrog step :math:`h = \sqrt{2\epsilon}` doubled or
halved) of each transition from the state, the noise and two uniforms, and corrects the choice
exactly.

Given :math:`x`, :math:`\xi \sim \mathcal N(0, I)` and :math:`a < b` the order statistics of two
:math:`U(0, 1)`, let :math:`\ell_j(x, \xi)` be the MALA log-ratio (:func:`flowsamp.kernels.mala.propose`)
of step :math:`\epsilon_j` and :math:`s_j = -|\ell_j|` its symmetrised value. The selection
:math:`\mu(x, \xi, a, b)` starts at :math:`j = 0`; if :math:`s_0 < \log a` (step too large) it
halves until :math:`s_j \ge \log a` and returns that :math:`j`; if :math:`s_0 > \log b` (too small)
it doubles while :math:`s_{j+1} > \log b` and returns the last such :math:`j`; else 0, with
:math:`|j| \le` ``max_exponent``. The MALA map with step :math:`\epsilon_{j^*}` sends
:math:`(x, \xi)` to :math:`(y, \xi')`, :math:`\xi' = L^{-1}(x - y - \epsilon M^{-1}\nabla\log\pi(y))
/ \sqrt{2\epsilon}` (the noise that brings :math:`y` back to :math:`x`); it is a volume-preserving
involution at fixed :math:`\epsilon`, and :math:`\ell_{j}(y, \xi') = -\ell_j(x, \xi)`. The
proposal is accepted with probability

.. math:: \min\big(1, e^{\ell_{j^*}(x, \xi)}\big)\; \mathbf 1\{\mu(y, \xi', a, b) = j^*\},

which is the Metropolis-Hastings ratio of an involution on the augmented space
:math:`\pi(x)\,\mathcal N(\xi)\,p(a, b)` restricted to where the two selections agree, so
:math:`\pi` is invariant whatever the selection rule; the symmetrised :math:`s_j` makes the
reverse selection agree as often as possible. Each transition costs :math:`1 + |j^*|` (forward)
plus :math:`1 + |j^*|` (reverse) gradient evaluations, one more when it doubles; where
:math:`\epsilon_0` fits, about two.

:func:`transition` is the deterministic map given the pre-drawn :math:`\xi`, :math:`\log u` and
the two uniforms; :func:`build_kernel`'s kernel draws them. The state is
:class:`flowsamp.kernels.mala.MALAState`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.base import KernelAPI, SamplingAlgorithm, metropolis_test, select
from flowsamp.kernels import _flat, _mass
from flowsamp.kernels.mala import MALAState, init, propose
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["MALAState", "AutoMALAInfo", "init", "select_exponent", "transition", "build_kernel", "automala"]

#: step sizes :math:`\epsilon_0 4^j` with :math:`|j| \le 10`: leapfrog steps over a factor 2^{+-10}
MAX_EXPONENT = 10


class AutoMALAInfo(NamedTuple):
    """Diagnostics: ``acceptance_rate`` :math:`\\min(1, e^{\\ell_{j^*}})` times the reversibility
    indicator (0 when not finite), ``exponent`` :math:`j^*` of the step :math:`\\epsilon_0 4^{j^*}`
    used, ``reversible`` whether the reverse selection agreed."""

    is_accepted: Array
    acceptance_rate: Array
    is_finite: Array
    exponent: Array
    reversible: Array


def _symmetric(log_ratio: Array) -> Array:
    """:math:`-|\\ell|`, with :math:`-\\infty` for a non-finite :math:`\\ell` (a step too large)."""
    return jnp.where(jnp.isfinite(log_ratio), -jnp.abs(log_ratio), -jnp.inf)


def select_exponent(
    flat: Array,
    log_prob: Array,
    grad: Array,
    flat_log_prob: Callable[[Array], Array],
    step_size: Array,
    noise: Array,
    log_a: Array,
    log_b: Array,
    inv_mass: Array,
    chol: Array,
    max_exponent: int = MAX_EXPONENT,
) -> tuple[Array, tuple[Array, Array, Array, Array]]:
    r"""The selection :math:`\mu(x, \xi, a, b)` of the module docstring: ``(j, (y, log_prob(y),
    grad(y), log r))`` at the chosen step :math:`\epsilon_0 4^j` (``step_size`` is :math:`\epsilon_0`)."""

    def at(j):
        return propose(flat, log_prob, grad, flat_log_prob, step_size * 4.0 ** j.astype(flat.dtype), noise,
                       inv_mass, chol)

    j0 = jnp.int32(0)
    p0 = at(j0)
    s0 = _symmetric(p0[3])
    direction = jnp.where(s0 < log_a, -1, jnp.where(s0 > log_b, 1, 0)).astype(jnp.int32)

    def cond(carry):
        j, _, going = carry
        return going & (jnp.abs(j) < max_exponent)

    def body(carry):
        j, prop, _ = carry
        cand = at(j + direction)
        s = _symmetric(cand[3])
        # halving: move to the candidate and go on while it is still too large;
        # doubling: move to the candidate only while it is still too small
        take = (direction < 0) | (s > log_b)
        going = jnp.where(direction < 0, s < log_a, s > log_b)
        j = jnp.where(take, j + direction, j)
        prop = jax.tree.map(lambda c, p: jnp.where(take, c, p), cand, prop)
        return j, prop, going

    j, prop, _ = jax.lax.while_loop(cond, body, (j0, p0, direction != 0))
    return j, prop


def transition(
    state: MALAState,
    log_prob_fn: LogProbFn,
    step_size: Any,
    noise: Array,
    log_u: Array,
    uniforms: Array,
    inverse_mass: Any = None,
    max_exponent: int = MAX_EXPONENT,
) -> tuple[MALAState, AutoMALAInfo]:
    """One autoMALA transition given its random numbers.

    Parameters
    ----------
    state
        Current state (position, :math:`\\log\\pi(x)`, flat gradient).
    log_prob_fn
        Unnormalized log-density of one position.
    step_size
        Base step :math:`\\epsilon_0 > 0` (MALA's :math:`\\epsilon`, from which the selection
        starts).
    noise
        :math:`\\xi \\sim \\mathcal N(0, I)`, shaped like the flat position.
    log_u
        :math:`\\log u`, :math:`u \\sim U(0, 1)` (scalar) for the Metropolis test.
    uniforms
        Two :math:`U(0, 1)` draws ``(2,)``; their minimum and maximum are :math:`a` and :math:`b`.
    inverse_mass
        :math:`M^{-1}`: ``None`` (identity), a scalar, a flat diagonal vector or a dense
        ``(dim, dim)`` matrix.
    max_exponent
        Largest :math:`|j|` of the step :math:`\\epsilon_0 4^j` (static).

    Returns
    -------
    (MALAState, AutoMALAInfo)
        The proposal if the reverse selection agrees and :math:`\\log u < \\ell_{j^*}`
        (NaN-safe), else ``state``.
    """
    flat, unravel = _flat.flatten(state.position)
    step_size = _flat.as_param(step_size, flat.dtype)
    inv_mass = _mass.as_inverse_mass(inverse_mass, flat.dtype)
    chol = _mass.cholesky(inv_mass)
    flat_log_prob = _flat.flat_log_prob(log_prob_fn, unravel)
    uniforms = jnp.asarray(uniforms, flat.dtype)
    log_a, log_b = jnp.log(jnp.min(uniforms)), jnp.log(jnp.max(uniforms))
    j, (y, lp_y, g_y, log_ratio) = select_exponent(flat, state.log_prob, state.grad, flat_log_prob, step_size,
                                                   noise, log_a, log_b, inv_mass, chol, max_exponent)
    eps = step_size * 4.0 ** j.astype(flat.dtype)
    back = _mass.whiten(flat - y - eps * _mass.matvec(inv_mass, g_y), chol) / jnp.sqrt(2.0 * eps)
    j_back, _ = select_exponent(y, lp_y, g_y, flat_log_prob, step_size, back, log_a, log_b, inv_mass, chol,
                                max_exponent)
    reversible = j_back == j
    is_accepted, rate, _ = metropolis_test(log_u, jnp.where(reversible, log_ratio, -jnp.inf))
    is_finite = jnp.isfinite(log_ratio)  # of the proposal itself, not of the masked ratio
    proposal = MALAState(unravel(y), lp_y, g_y)
    new_state = select(is_accepted, proposal, state)
    return new_state, AutoMALAInfo(is_accepted, rate, is_finite, j, reversible)


def build_kernel(max_exponent: int = MAX_EXPONENT) -> Callable[..., tuple[MALAState, AutoMALAInfo]]:
    """Return ``kernel(key, state, log_prob_fn, step_size, inverse_mass=None) -> (state, info)``.

    The kernel draws :math:`\\xi`, :math:`\\log u` and the two uniforms from ``key`` and calls
    :func:`transition`.
    """
    _flat.check_num_steps("max_exponent", max_exponent)

    def kernel(
        key: PRNGKey, state: MALAState, log_prob_fn: LogProbFn, step_size: Any, inverse_mass: Any = None
    ) -> tuple[MALAState, AutoMALAInfo]:
        key_prop, key_acc, key_ab = jax.random.split(key, 3)
        flat, _ = _flat.flatten(state.position)
        noise = _flat.normal(key_prop, flat)
        log_u = _flat.log_uniform(key_acc, state.log_prob)
        uniforms = jax.random.uniform(key_ab, (2,), flat.dtype)
        return transition(state, log_prob_fn, step_size, noise, log_u, uniforms, inverse_mass, max_exponent)

    return kernel


def automala(
    log_prob_fn: LogProbFn, step_size: Any, inverse_mass: Any = None, max_exponent: int = MAX_EXPONENT
) -> SamplingAlgorithm:
    """autoMALA as ``SamplingAlgorithm(init, step)``.

    Parameters
    ----------
    log_prob_fn
        Unnormalized log-density :math:`\\log\\pi(x)` of one position (differentiable).
    step_size
        Base step :math:`\\epsilon_0` from which each transition's step :math:`\\epsilon_0 4^j` is
        selected (a value that suits the bulk of the target, e.g. a tuned MALA step).
    inverse_mass
        Preconditioner :math:`M^{-1}`: ``None`` (identity), a scalar, the flat diagonal or a
        dense ``(dim, dim)`` matrix.
    max_exponent
        Largest :math:`|j|` (default 10).

    Raises
    ------
    ValueError
        If ``step_size`` is not positive and finite, ``inverse_mass`` is not positive (definite)
        or ``max_exponent`` is not a positive int. Only concrete values are checked.

    Returns
    -------
    SamplingAlgorithm
        ``init(position) -> MALAState``; ``step(key, state) -> (MALAState, AutoMALAInfo)``.
    """
    _flat.check_positive("step_size", step_size)
    _flat.check_inverse_mass(inverse_mass)
    kernel = build_kernel(max_exponent)

    def init_fn(position: Any) -> MALAState:
        return init(position, log_prob_fn)

    def step_fn(key: PRNGKey, state: MALAState) -> tuple[MALAState, AutoMALAInfo]:
        return kernel(key, state, log_prob_fn, step_size, inverse_mass)

    return SamplingAlgorithm(init_fn, step_fn)


automala = KernelAPI(automala, globals(), __all__)
