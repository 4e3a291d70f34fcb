r"""One scan of non-reversible parallel tempering for one ensemble of ``N`` replicas (vmapped over chains).

A scan is: (1) a fresh exact draw from the reference at :math:`\beta_0 = 0`; (2)
``num_local_steps`` transitions of the local kernel at every other rung, targeting
:math:`\log\pi_\beta = \beta \log p + (1 - \beta)\log r`; (3) optionally an independence
(flow) move at every rung (:func:`flowsamp.kernels.flow_imh.imh_test`); (4) the deterministic
even-odd swaps (DEO; Okabe et al. 2001, Syed et al. 2022): at even scans the pairs
:math:`(0,1),(2,3),\dots`, at odd scans :math:`(1,2),(3,4),\dots`, each accepted by the
NaN-safe Metropolis test :func:`flowsamp.base.metropolis_test`.

The carry caches :math:`\log p`, :math:`\nabla\log p`, :math:`\log r`, :math:`\nabla\log r` of
every replica (independent of :math:`\beta`), so a replica that swapped rungs needs no new
evaluation: the kernel state at the new rung is assembled from the cache when the kernel's state
is ``(position, log_prob[, grad])`` (MALA, HMC, RWMH), and built by the kernel's ``init``
otherwise.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.base import Proposal, metropolis_test
from flowsamp.kernels.adaptation import robbins_monro
from flowsamp.kernels.flow_imh import FlowIMHState, imh_test
from flowsamp.types import Array

__all__ = ["PTCarry", "PTConfig", "init_carry", "scan_step"]


class PTConfig(NamedTuple):
    """Static pieces of a run (hashable: the jitted programs are cached on it)."""

    log_prob: Callable
    ref_log_prob: Callable
    ref_sample: Callable  # (key, n) -> (n, dim)
    kernel: Callable  # (log_prob_fn, step_size, **kernel_kwargs) -> SamplingAlgorithm
    kernel_kwargs: tuple
    state_kind: str  # "grad", "value" or "init"
    num_local_steps: int
    target_acceptance: float
    adapt_rate: float
    flow: Proposal | None


class PTCarry(NamedTuple):
    """Per ensemble (one chain): replicas on rungs ``(N, ...)`` plus counters."""

    x: Array  # (N, d)
    lp: Array  # (N,)  log p
    gp: Array  # (N, d)
    lr: Array  # (N,)  log r
    gr: Array  # (N, d)
    replica: Array  # (N,) int: which replica sits on each rung
    direction: Array  # (N,) int per replica id: -1 none yet, 0 last at the reference, 1 last at the target
    round_trips: Array  # () int
    log_eps: Array  # (N,) local step size per rung (Robbins-Monro state)


def _value_grad(fn: Callable, x: Array) -> tuple[Array, Array]:
    v, g = jax.vmap(jax.value_and_grad(fn))(x)
    return v, g


def init_carry(cfg: PTConfig, x: Array, log_eps: Array) -> PTCarry:
    """Carry for one ensemble with replicas at ``x`` (N, d)."""
    lp, gp = _value_grad(cfg.log_prob, x)
    lr, gr = _value_grad(cfg.ref_log_prob, x)
    n = x.shape[0]
    return PTCarry(x, lp, gp, lr, gr, jnp.arange(n), jnp.full((n,), -1), jnp.zeros((), jnp.int32), log_eps)


def _tempered(cfg: PTConfig, beta: Array) -> Callable:
    return lambda y: beta * cfg.log_prob(y) + (1.0 - beta) * cfg.ref_log_prob(y)


def _local(cfg: PTConfig, key, beta, log_eps, x, lp, gp, lr, gr):
    """``num_local_steps`` kernel transitions at one rung; returns (x, mean acceptance, #non-finite, #divergent)."""
    log_pi = _tempered(cfg, beta)
    algo = cfg.kernel(log_pi, jnp.exp(log_eps), **dict(cfg.kernel_kwargs))
    if cfg.state_kind == "init":
        state = algo.init(x)
    else:
        shape = jax.eval_shape(algo.init, x)
        fields = {"position": x, "log_prob": beta * lp + (1.0 - beta) * lr}
        if cfg.state_kind == "grad":
            fields["grad"] = beta * gp + (1.0 - beta) * gr
        state = type(shape)(**fields)

    def body(s, k):
        s, info = algo.step(k, s)
        div = getattr(info, "is_divergent", jnp.zeros((), bool))
        return s, (info.acceptance_rate, ~info.is_finite, div)

    state, (acc, bad, div) = jax.lax.scan(body, state, jax.random.split(key, cfg.num_local_steps))
    return state.position, jnp.mean(acc), jnp.sum(bad), jnp.sum(div)


def _flow_move(cfg: PTConfig, key, betas, x, lp, lr):
    """Independence move from ``cfg.flow`` at every rung ``k >= 1`` (per-rung candidate)."""
    n = x.shape[0]
    k_prop, k_acc = jax.random.split(key)
    y, log_q_y = jax.vmap(cfg.flow.sample_and_log_prob)(jax.random.split(k_prop, n))
    y = y.astype(x.dtype)
    log_q_x = jax.vmap(cfg.flow.log_prob)(x)
    lp_y = jax.vmap(cfg.log_prob)(y)
    lr_y = jax.vmap(cfg.ref_log_prob)(y)
    cur = FlowIMHState(x, betas * lp + (1 - betas) * lr, log_q_x)
    prop = FlowIMHState(y, betas * lp_y + (1 - betas) * lr_y, log_q_y.astype(x.dtype))
    log_u = jnp.log(jax.random.uniform(k_acc, (n,), dtype=x.dtype))
    new, info = imh_test(log_u, cur, prop)
    keep = jnp.arange(n) > 0  # the reference rung is drawn exactly
    moved = info.is_accepted & keep
    return jnp.where(moved[:, None], new.position, x), jnp.where(keep, info.acceptance_rate, 0.0)


def scan_step(cfg: PTConfig, carry: PTCarry, key: Array, step: Array, betas: Array, adapt: Array | bool):
    """One scan (module docs). Returns the new carry and this scan's record; ``adapt`` (may be traced)
    applies the Robbins-Monro step-size update."""
    n, dim = carry.x.shape
    k_ref, k_loc, k_flow, k_swap = jax.random.split(key, 4)
    dt = carry.x.dtype
    betas = betas.astype(dt)
    # (2) local moves at every rung (rung 0 is overwritten by the exact reference draw)
    x, acc, bad, div = jax.vmap(lambda k, b, e, *a: _local(cfg, k, b, e, *a))(
        jax.random.split(k_loc, n), betas, carry.log_eps, carry.x, carry.lp, carry.gp, carry.lr, carry.gr
    )
    # (1) exact reference draw at beta_0 = 0
    x = x.at[0].set(cfg.ref_sample(k_ref, 1)[0].astype(dt))
    acc = acc.at[0].set(1.0)
    flow_acc = jnp.zeros((n,), dt)
    if cfg.flow is not None:
        lp0 = jax.vmap(cfg.log_prob)(x)
        lr0 = jax.vmap(cfg.ref_log_prob)(x)
        x, flow_acc = _flow_move(cfg, k_flow, betas, x, lp0, lr0)
    lp, gp = _value_grad(cfg.log_prob, x)
    lr, gr = _value_grad(cfg.ref_log_prob, x)
    V = lp - lr
    # (4) DEO swaps
    log_r = jnp.diff(betas) * (V[:-1] - V[1:])
    log_u = jnp.log(jax.random.uniform(k_swap, (n - 1,), dtype=dt))
    ok, rates, _ = metropolis_test(log_u, log_r)
    ok = ok & (jnp.arange(n - 1) % 2 == step % 2)
    lower = jnp.concatenate([ok, jnp.zeros((1,), bool)])  # rung j swaps with j + 1
    upper = jnp.concatenate([jnp.zeros((1,), bool), ok])  # rung j swaps with j - 1
    idx = jnp.arange(n)
    src = jnp.where(lower, idx + 1, jnp.where(upper, idx - 1, idx))
    x, lp, gp, lr, gr, replica = (a[src] for a in (x, lp, gp, lr, gr, carry.replica))
    V = V[src]
    # round trips: reference -> target -> reference
    direction = carry.direction
    bottom, top = replica[0], replica[n - 1]
    trip = direction[bottom] == 1
    direction = direction.at[bottom].set(0)
    direction = direction.at[top].set(jnp.where(direction[top] == 0, 1, direction[top]))
    round_trips = carry.round_trips + trip.astype(jnp.int32)
    log_eps = carry.log_eps
    rm = robbins_monro(cfg.target_acceptance, cfg.adapt_rate)
    signal = acc.at[0].set(cfg.target_acceptance)  # rung 0 is drawn exactly: leave its step alone
    log_eps = jnp.where(adapt, rm.update(rm.init(jnp.exp(log_eps)), signal).log_step_size, log_eps)
    new = PTCarry(x, lp, gp, lr, gr, replica, direction, round_trips, log_eps)
    record = {
        "x_top": x[n - 1],
        "V": V,
        "swap_rate": rates,
        "local_acceptance": acc,
        "flow_acceptance": flow_acc,
        "num_nonfinite": jnp.sum(bad[1:]).astype(jnp.int32),
        "num_divergent": jnp.sum(div[1:]).astype(jnp.int32),
    }
    return new, record
