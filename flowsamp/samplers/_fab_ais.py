r"""FAB's inner AIS: from the flow :math:`q_\theta` to :math:`p^\alpha q_\theta^{1-\alpha}` (jittable, traced params).

Fixed linear schedule :math:`0 = \beta_0 < \dots < \beta_T = 1` on the geometric path

.. math:: \log\pi_t(x) = \log q_\theta(x) + \beta_t\,\alpha\,[\log p(x) - \log q_\theta(x)],

:math:`x_0 \sim q_\theta`, one HMC transition (:func:`flowsamp.kernels.hmc.transition`) invariant
for :math:`\pi_t` at every intermediate :math:`t = 1..T-1`, and the AIS weight (Neal 2001)

.. math:: \log w = \sum_{t=1}^{T} (\beta_t - \beta_{t-1})\,\alpha\,[\log p(x_{t-1}) - \log q_\theta(x_{t-1})].

This is not :func:`flowsamp.samplers.ais`: FAB runs it once per training iteration inside one
compiled program whose flow parameters change every iteration, so the schedule is fixed (as in
fab-jax) rather than adapted on the host, and the step size of each intermediate distribution is
adapted by :func:`flowsamp.kernels.adaptation.robbins_monro` on the batch's mean acceptance.

With a ``mesh`` the per-particle transitions (the HMC moves with their
:math:`\nabla\log\pi_t`, and :math:`\log p`, :math:`\log q_\theta` at the moved points) run split
over its devices on the particle axis (:func:`flowsamp.parallel.shard_chains`); the draw
:math:`x_0 \sim q_\theta`, the random numbers and the mean acceptance stay batch-wide, so each
particle follows the path of the single-device run.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from flowsamp.base import Flow
from flowsamp.kernels.adaptation import TARGET_ACCEPTANCE, robbins_monro
from flowsamp.kernels.hmc import HMCState, transition
from flowsamp.parallel import CHAINS, REPLICATED, shard_chains
from flowsamp.types import Array, PRNGKey

__all__ = ["fab_ais"]


def fab_ais(
    key: PRNGKey,
    flow: Flow,
    params: Any,
    log_prob: Callable[[Array], Array],
    num_samples: int,
    betas: Array,
    log_step_sizes: Array,
    num_leapfrog: int,
    alpha: float = 2.0,
    adapt_rate: float = 0.0,
    mesh: Mesh | None = None,
) -> tuple[Array, Array, Array, Array, Array]:
    """Run the AIS above on ``num_samples`` particles.

    Returns ``(x, log_w, log_q, acceptance, log_step_sizes)``: final points, AIS log-weights
    for :math:`p^\\alpha q^{1-\\alpha}`, :math:`\\log q_\\theta(x)`, the mean HMC acceptance per
    intermediate distribution and the updated log step sizes (unchanged when ``adapt_rate`` is 0).
    ``mesh``: split the particles over its devices (``num_samples`` a multiple of their number).
    """
    k0, k_moves = jax.random.split(key)
    params = jax.lax.stop_gradient(params)
    x, lq = flow.sample_and_log_prob(params, k0, num_samples)
    lp = shard_chains(jax.vmap(log_prob), mesh)(x)
    dt = x.dtype
    betas = jnp.asarray(betas, dt)
    rm = robbins_monro(TARGET_ACCEPTANCE["hmc"], adapt_rate if adapt_rate > 0 else 1.0)

    def transition_one(q_params, beta, step, x, momentum, log_u):
        """One HMC transition of one particle for pi_t; (x', log p(x'), log q(x'), acceptance)."""

        def log_pi(y):
            q = flow.log_prob(q_params, y)
            return q + beta * alpha * (log_prob(y) - q)

        val, grad = jax.value_and_grad(log_pi)(x)
        state, info = transition(HMCState(x, val, grad), log_pi, step, num_leapfrog, momentum, log_u)
        y = state.position
        return y, log_prob(y), flow.log_prob(q_params, y), info.acceptance_rate

    transitions = shard_chains(jax.vmap(transition_one, in_axes=(None, None, None, 0, 0, 0)), mesh,
                               (REPLICATED, REPLICATED, REPLICATED, CHAINS, CHAINS, CHAINS))

    def move(carry, inp):
        x, lp, lq, log_w = carry
        t, key, log_eps = inp
        log_w = log_w + (betas[t] - betas[t - 1]) * alpha * (lp - lq)
        k_mom, k_u = jax.random.split(key)
        momentum = jax.random.normal(k_mom, x.shape, dt)
        log_u = jnp.log(jax.random.uniform(k_u, (x.shape[0],), dt))
        step = jnp.exp(log_eps)
        x, lp, lq, rate = transitions(params, betas[t], step, x, momentum, log_u)
        acc = jnp.mean(rate)
        new_log_eps = rm.update(rm.init(step), acc).log_step_size if adapt_rate > 0 else log_eps
        return (x, lp, lq, log_w), (acc, new_log_eps)

    T = betas.shape[0] - 1
    ts = jnp.arange(1, T)
    keys = jax.random.split(k_moves, T - 1)
    (x, lp, lq, log_w), (acc, new_log_eps) = jax.lax.scan(
        move, (x, lp, lq, jnp.zeros((num_samples,), dt)), (ts, keys, log_step_sizes))
    log_w = log_w + (betas[T] - betas[T - 1]) * alpha * (lp - lq)
    log_w = jnp.where(jnp.isnan(log_w), -jnp.inf, log_w)
    return x, log_w, lq, acc, new_log_eps
