"""Batched building blocks of the global-local flow sampler (all chains at once).

Each block takes all chains as a leading axis and draws its random numbers in bulk
(one normal draw and one uniform draw per block, not one per chain-step): on CPU the
threefry draw, not the density, dominates cheap kernels.

* :func:`local_mala` -- ``n`` MALA steps, optionally adapting ``log(step_size)``
  towards a target acceptance (Robbins-Monro on the chain-averaged rate);
* :func:`local_hmc` -- ``n`` HMC steps through :mod:`flowsamp.kernels.hmc` (vmapped);
* :func:`global_imh` -- ``n`` independent-MH steps with the flow: all ``n * chains``
  candidates and their log p, log q are computed in one batched call, then a scan does
  the accept tests (exact: candidates never depend on the state);
* :func:`forward_kl_epochs` -- ``n`` full-batch Adam steps on
  :math:`-\\sum_i m_i \\log q_\\theta(x_i) / \\sum_i m_i` over a masked sample buffer.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from flowsamp.base import Flow, metropolis_test
from flowsamp.kernels.hmc import HMCState, build_kernel as _build_hmc_kernel
from flowsamp.types import Array, PRNGKey

TARGET_ACCEPTANCE = {"mala": 0.574, "hmc": 0.65}


def value_and_grad_batch(log_prob_fn: Callable[[Array], Array], x: Array) -> tuple[Array, Array]:
    """``(log p(x_c), grad log p(x_c))`` for every chain ``c`` (rows of ``x``)."""
    lp, g = jax.vmap(jax.value_and_grad(log_prob_fn))(x)
    return lp.astype(x.dtype), g.astype(x.dtype)


def _mala_log_q(to, frm, grad_frm, eps):
    d = to - frm - eps * grad_frm
    return -jnp.sum(d * d, axis=-1) / (4.0 * eps)


def local_mala(
    key: PRNGKey,
    x: Array,
    log_p: Array,
    grad: Array,
    log_eps: Array,
    log_prob_fn: Callable[[Array], Array],
    num_steps: int,
    adapt_rate: float,
) -> tuple[tuple[Array, Array, Array, Array], tuple[Array, Array, Array]]:
    """``num_steps`` MALA steps for all chains; ``adapt_rate = 0`` freezes the step size.

    Proposal :math:`y = x + \\epsilon\\nabla\\log p(x) + \\sqrt{2\\epsilon}\\,\\xi` (the
    convention of :mod:`flowsamp.kernels.mala`), NaN-safe acceptance.
    Returns the carry ``(x, log_p, grad, log_eps)`` and per step ``(x, log_p, accept_rate)``
    of shapes ``(n, C, d)``, ``(n, C)``, ``(n, C)``.
    """
    dt = x.dtype
    k_n, k_u = jax.random.split(key)
    noise = jax.random.normal(k_n, (num_steps,) + x.shape, dtype=dt)
    log_u = jnp.log(jax.random.uniform(k_u, (num_steps, x.shape[0]), dtype=dt))
    target = TARGET_ACCEPTANCE["mala"]

    def one(carry, inp):
        x, lp, g, log_eps = carry
        xi, lu = inp
        eps = jnp.exp(log_eps).astype(dt)
        y = x + eps * g + jnp.sqrt(2.0 * eps) * xi
        lp_y, g_y = value_and_grad_batch(log_prob_fn, y)
        log_r = lp_y - lp + _mala_log_q(x, y, g_y, eps) - _mala_log_q(y, x, g, eps)
        acc, rate, _ = metropolis_test(lu, log_r)
        x = jnp.where(acc[:, None], y, x)
        lp = jnp.where(acc, lp_y, lp)
        g = jnp.where(acc[:, None], g_y, g)
        log_eps = log_eps + adapt_rate * (jnp.mean(rate) - target)
        return (x, lp, g, log_eps), (x, lp, rate)

    return jax.lax.scan(one, (x, log_p, grad, log_eps), (noise, log_u))


def local_hmc(
    key: PRNGKey,
    x: Array,
    log_p: Array,
    grad: Array,
    log_eps: Array,
    log_prob_fn: Callable[[Array], Array],
    num_steps: int,
    adapt_rate: float,
    num_integration_steps: int,
) -> tuple[tuple[Array, Array, Array, Array], tuple[Array, Array, Array]]:
    """``num_steps`` HMC steps (:func:`flowsamp.kernels.hmc.build_kernel`, vmapped over
    chains) with the same step-size adaptation and outputs as :func:`local_mala`."""
    kernel = _build_hmc_kernel()
    target = TARGET_ACCEPTANCE["hmc"]
    keys = jax.random.split(key, (num_steps, x.shape[0]))

    def one(carry, ks):
        x, lp, g, log_eps = carry
        eps = jnp.exp(log_eps).astype(x.dtype)
        st = HMCState(x, lp, g)
        st, info = jax.vmap(lambda k, s: kernel(k, s, log_prob_fn, eps, num_integration_steps))(ks, st)
        rate = info.acceptance_rate.astype(x.dtype)
        log_eps = log_eps + adapt_rate * (jnp.mean(rate) - target)
        return (st.position, st.log_prob, st.grad, log_eps), (st.position, st.log_prob, rate)

    return jax.lax.scan(one, (x, log_p, grad, log_eps), keys)


def global_imh(
    key: PRNGKey,
    x: Array,
    log_p: Array,
    flow: Flow,
    params: Any,
    log_prob_fn: Callable[[Array], Array],
    num_steps: int,
    proposal_fn: Callable[[Any, PRNGKey, int], tuple[Array, Array]] | None = None,
    log_q_fn: Callable[[Any, Array], Array] | None = None,
) -> tuple[tuple[Array, Array], tuple[Array, Array, Array]]:
    """``num_steps`` independent-MH steps with :math:`q_\\theta` for all chains.

    .. math:: \\alpha = \\min\\left(1, \\frac{p(x')\\,q_\\theta(x)}{p(x)\\,q_\\theta(x')}\\right)

    ``proposal_fn(params, key, n)`` / ``log_q_fn(params, x)`` default to the flow's own
    ``sample_and_log_prob`` / ``log_prob`` (a symmetrised proposal may replace them).
    Returns the carry ``(x, log_p)`` and per step ``(x, log_p, accept_rate)``.
    """
    sample = proposal_fn or flow.sample_and_log_prob
    log_q_of = log_q_fn or flow.log_prob
    dt = x.dtype
    c, d = x.shape
    k_q, k_u = jax.random.split(key)
    y, log_q_y = sample(params, k_q, num_steps * c)
    y = y.astype(dt).reshape(num_steps, c, d)
    log_q_y = log_q_y.astype(dt).reshape(num_steps, c)
    log_p_y = jax.vmap(log_prob_fn)(y.reshape(-1, d)).astype(dt).reshape(num_steps, c)
    log_u = jnp.log(jax.random.uniform(k_u, (num_steps, c), dtype=dt))
    log_w_x = log_p - log_q_of(params, x).astype(dt)

    def one(carry, inp):
        x, lp, lw = carry
        y, lp_y, lq_y, lu = inp
        lw_y = lp_y - lq_y
        acc, rate, _ = metropolis_test(lu, lw_y - lw)
        x = jnp.where(acc[:, None], y, x)
        lp = jnp.where(acc, lp_y, lp)
        lw = jnp.where(acc, lw_y, lw)
        return (x, lp, lw), (x, lp, rate)

    (x, lp, _), out = jax.lax.scan(one, (x, log_p, log_w_x), (y, log_p_y, log_q_y, log_u))
    return (x, lp), out


def forward_kl_epochs(
    flow: Flow,
    optimizer: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    data: Array,
    mask: Array,
    num_epochs: int,
    log_q_fn: Callable[[Any, Array], Array] | None = None,
) -> tuple[Any, Any, Array]:
    """``num_epochs`` full-batch optimizer steps on the masked forward KL (max. likelihood).

    .. math:: L(\\theta) = -\\frac{\\sum_i m_i \\log q_\\theta(x_i)}{\\sum_i m_i}

    A step whose loss or gradient is not finite is skipped (params unchanged).
    Returns ``(params, opt_state, losses)`` with ``losses`` of shape ``(num_epochs,)``.
    """
    log_q_of = log_q_fn or flow.log_prob
    w = mask.astype(data.dtype) / jnp.maximum(jnp.sum(mask), 1).astype(data.dtype)
    safe = jnp.where(mask[:, None], data, 0.0)

    def loss_fn(p):
        lq = log_q_of(p, safe)
        return -jnp.sum(w * jnp.where(mask, lq, 0.0))

    def one(carry, _):
        p, s = carry
        loss, g = jax.value_and_grad(loss_fn)(p)
        upd, s_new = optimizer.update(g, s, p)
        p_new = optax.apply_updates(p, upd)
        ok = jnp.isfinite(loss) & jnp.all(
            jnp.array([jnp.all(jnp.isfinite(l)) for l in jax.tree.leaves(g)])
        )
        p = jax.tree.map(lambda a, b: jnp.where(ok, a, b), p_new, p)
        s = jax.tree.map(lambda a, b: jnp.where(ok, a, b), s_new, s)
        return (p, s), loss

    (params, opt_state), losses = jax.lax.scan(one, (params, opt_state), None, length=num_epochs)
    return params, opt_state, losses
