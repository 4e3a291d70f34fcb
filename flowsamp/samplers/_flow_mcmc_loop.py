r"""One loop of the adaptive global-local flow sampler, composed from the library's parts.

A loop, for all ``C`` chains at once:

1. *local phase* -- ``num_local_steps`` steps of :func:`flowsamp.kernels.mala.transition`
   (or :func:`flowsamp.kernels.hmc.transition`) vmapped over chains, with all the Gaussian
   noise and all the uniforms of the phase drawn in one call each (on CPU the threefry draw,
   not the density, dominates cheap kernels); in training the step size follows
   :func:`flowsamp.kernels.adaptation.robbins_monro` on the fraction of chains that
   accepted (an unbiased estimate of the mean acceptance rate);
2. *training* (training loops only) -- the fresh local samples enter a ring buffer of the
   last ``buffer_loops`` loops and the flow takes ``num_epochs`` steps of
   :func:`flowsamp.train.fit_steps` (the guarded optimiser step of :func:`flowsamp.train.fit`)
   on :func:`flowsamp.train.forward_kl` over the buffer, its unfilled slots masked out;
3. *global phase* -- ``num_global_steps`` independence-MH tests
   :func:`flowsamp.kernels.flow_imh.imh_test`, vmapped over chains, on candidates
   :math:`y \sim q_\theta` drawn in bulk: all ``num_global_steps * C`` candidates with
   :math:`\log q_\theta(y)`, :math:`\log p(y)` and :math:`\nabla\log p(y)` in one batched
   call (candidates never depend on the chain, so this is exact), the gradient of the
   accepted candidate carried into the next local phase instead of recomputed.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp._compile import jit_light
from flowsamp.base import Flow, select
from flowsamp.kernels.adaptation import TARGET_ACCEPTANCE, RobbinsMonroState, robbins_monro
from flowsamp.kernels.flow_imh import FlowIMHState, imh_test
from flowsamp.kernels.hmc import init as hmc_init
from flowsamp.kernels.hmc import sample_momentum
from flowsamp.kernels.hmc import transition as hmc_transition
from flowsamp.kernels.mala import init as mala_init
from flowsamp.kernels.mala import transition as mala_transition
from flowsamp.train.fit import fit_steps
from flowsamp.train.losses import forward_kl
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = [
    "LoopPrograms", "LoopStats", "bind_programs", "build_local", "build_loop", "build_programs", "init_adaptation",
    "local_init",
    "loop_keys",
]


class LoopStats(NamedTuple):
    """Statistics of one loop (scalars).

    ``local_acceptance`` / ``global_acceptance``: mean acceptance rate over chains and steps
    of the local and the global (flow) phase; ``loss``: forward-KL loss at the loop's last
    training step (0 in production); ``step_size``: the local step size at the end of the
    loop; ``num_local_nonfinite``: local proposals whose log-ratio was not finite (rejected);
    ``num_divergent``: local proposals that were divergent (HMC: energy error > 1000 or not
    finite; MALA: not finite); ``num_global_nonfinite``:
    flow proposals whose log-ratio was not finite (all rejected); ``num_skipped_updates``:
    optimiser steps the non-finite guard skipped.
    """

    local_acceptance: Array
    global_acceptance: Array
    loss: Array
    step_size: Array
    num_local_nonfinite: Array
    num_divergent: Array
    num_global_nonfinite: Array
    num_skipped_updates: Array


def local_init(local: str, log_prob: LogProbFn, x: Array) -> Any:
    """Batched local-kernel state (``MALAState`` or ``HMCState``) at the rows of ``x``."""
    init = mala_init if local == "mala" else hmc_init
    st = jax.vmap(lambda p: init(p, log_prob))(x)
    return st._replace(log_prob=st.log_prob.astype(x.dtype), grad=st.grad.astype(x.dtype))


def _adaptation(cfg: Any):
    """The step-size adaptation (``None`` when ``adapt_rate = 0`` freezes the step size)."""
    if cfg.adapt_rate > 0:
        return robbins_monro(TARGET_ACCEPTANCE[cfg.local], cfg.adapt_rate)
    return None


def init_adaptation(cfg: Any, dtype: Any, step_size: Any = None) -> RobbinsMonroState:
    """The step-size state before the first loop (``log_step_size`` of ``step_size``, default
    ``cfg.step_size``, or 0.1 when that is ``None``; ``step_size`` may be traced)."""
    if step_size is None:
        step_size = 0.1 if cfg.step_size is None else cfg.step_size
    step_size = jnp.asarray(step_size, dtype)
    adapt = _adaptation(cfg)
    return adapt.init(step_size) if adapt is not None else RobbinsMonroState(jnp.log(step_size))


class LoopPrograms(NamedTuple):
    """The three jitted programs a loop is made of (each compiled once per run, and reused).

    ``local(key, chains, adaptation, training) -> (chains, adaptation, tx, tlp, fresh, (rate, bad,
    div, step_size))`` (``fresh``: the rows the training buffer takes from this phase);
    ``train(params, opt_state, buffer, filled, fresh, loop, store, key) -> (params, opt_state,
    buffer, filled, loss, skipped, heldout_nll)`` (``fresh`` enters slot ``loop % buffer_loops`` of the buffer
    when ``store``; ``heldout_nll`` is :math:`-\\overline{\\log q}` of ``fresh`` under the
    parameters *before* the update, an honest held-out loss); ``global_(key, chains, params, tx, tlp) ->
    (chains, imh, traj, traj_lp, rate, bad)`` (``traj`` ``(C, S, d)``: the local trajectory ``tx``
    then the global steps, thinned); ``loop(state, key, training)`` composes them
    (``training`` a Python bool: production never runs the training program); ``keys(key, loop)
    -> ((k_local, k_train, k_global), loop + 1)`` is the loop's key program.
    ``train_program`` / ``global_program``: the jitted programs behind ``train`` / ``global_``,
    which take ``flow_data`` as their first argument (:func:`build_programs`' ``flow_of``).
    ``score(params, x) -> (log p(x), log p(x) - log q(x))`` for a block of rows ``x`` (the
    verdict's lost-region check), ``score_program`` its jitted program, likewise.
    """

    local: Callable
    train: Callable
    global_: Callable
    loop: Callable
    keys: Callable
    train_program: Callable | None = None
    global_program: Callable | None = None
    flow_data: Any = None
    score: Callable | None = None
    score_program: Callable | None = None


@jax.jit
def loop_keys(key: PRNGKey, loop: Array) -> tuple[tuple[Array, Array, Array], Array]:
    """The local, training and global keys of loop ``loop`` (``split(fold_in(key, loop), 3)``)
    and the next loop counter (computed here: no separate program for ``loop + 1``)."""
    k = jax.random.split(jax.random.fold_in(key, loop), 3)
    return (k[0], k[1], k[2]), loop + 1  # a tuple: unpacking an array of keys is a program of its own


def build_loop(cfg: Any, log_prob: LogProbFn, flow: Flow) -> Callable:
    """Return ``loop(state, key, training) -> (state, LoopStats, positions, log_prob)``
    (``build_programs(...).loop``)."""
    return build_programs(cfg, log_prob, flow).loop


def build_local(cfg: Any, log_prob: LogProbFn) -> Callable:
    """The jitted local phase ``local(key, chains, adaptation, training)`` of
    :class:`LoopPrograms` (it does not involve the flow, so one program serves every flow)."""
    adapt = _adaptation(cfg)
    n_loc = cfg.num_local_steps
    k_keep = min(cfg.buffer_points_per_chain, n_loc)
    keep_idx = np.linspace(0, n_loc - 1, k_keep).round().astype(int)

    def local_step(st, eps, noise, log_u):
        if cfg.local == "mala":
            return mala_transition(st, log_prob, eps, noise, log_u)
        return hmc_transition(st, log_prob, eps, cfg.num_integration_steps, sample_momentum(noise), log_u)

    def local_phase(key, chains, ad, training):
        dt = chains.position.dtype
        k_n, k_u = jax.random.split(key)
        noise = jax.random.normal(k_n, (n_loc,) + chains.position.shape, dtype=dt)
        log_u = jnp.log(jax.random.uniform(k_u, (n_loc,) + chains.log_prob.shape, dtype=dt))

        def one(carry, inp):
            st, ad = carry
            eps = jnp.exp(ad.log_step_size).astype(dt)
            st, info = jax.vmap(local_step, in_axes=(0, None, 0, 0))(st, eps, *inp)
            if adapt is not None:
                # the fraction of chains that accepted: an exact count, so the step size is the
                # same bit for bit however the chains are sharded (a mean of the rates
                # min(1, r) is not: vectorised exp differs in the last bit across layouts)
                ad = select(training, adapt.update(ad, jnp.mean(info.is_accepted.astype(dt))), ad)
            div = info.is_divergent if cfg.local == "hmc" else ~info.is_finite
            return (st, ad), (st.position, st.log_prob, info.acceptance_rate, ~info.is_finite, div)

        (chains, ad), (tx, tlp, rate, bad, div) = jax.lax.scan(one, (chains, ad), (noise, log_u))
        fresh = jnp.swapaxes(tx[keep_idx], 0, 1).reshape(-1, tx.shape[-1])  # (C * k, d) training rows
        stats = (jnp.mean(rate), jnp.sum(bad), jnp.sum(div), jnp.exp(ad.log_step_size))
        return chains, ad, tx, tlp, fresh, stats

    return jit_light(local_phase)


def build_programs(cfg: Any, log_prob: LogProbFn, flow: Flow, local: Callable | None = None, *,
                   flow_of: Callable | None = None, flow_data: Any = None) -> LoopPrograms:
    """Return the :class:`LoopPrograms` of one run.

    Loop ``t = state.loop`` draws its random numbers from ``fold_in(key, t)``.

    ``flow`` is the (possibly symmetrised) proposal :math:`q`; ``state`` an
    ``AdaptiveFlowState``; ``positions`` ``(C, S, d)`` and ``log_prob`` ``(C, S)`` the loop's
    thinned trajectory (local then global steps). The loop is three jitted programs rather than
    one: the exploration's warm start reuses the training program and the baseline acceptance
    reuses the global one, so no flow program is compiled twice (on CPU the flow's gradient is
    most of the compile time of a run). ``local``: a program of :func:`build_local` to reuse.

    ``flow_of(data) -> Flow`` (with ``flow_data``, a pytree of arrays) replaces ``flow``: the
    training and global programs then take ``data`` as an argument, so they do not depend on
    its values (e.g. the exploration's fitted affine map) and can be compiled before those
    are known; ``train`` / ``global_`` are those programs with ``flow_data`` bound.
    """
    n_glob = cfg.num_global_steps
    init_local = mala_init if cfg.local == "mala" else hmc_init
    batch = getattr(cfg, "batch_size", None)

    if flow_of is None:
        flow_of = lambda data: flow  # noqa: E731

    def global_phase(fdata, key, chains, params, tx, tlp):
        flow = flow_of(fdata)
        x = chains.position
        (c, d), dt = x.shape, x.dtype
        k_q, k_u = jax.random.split(key)
        y, log_q_y = flow.sample_and_log_prob(params, k_q, n_glob * c)
        cand = jax.vmap(lambda p: init_local(p, log_prob))(y.astype(dt))  # log p and its gradient, in bulk
        shape = lambda a: a.astype(dt).reshape((n_glob, c) + a.shape[1:])  # noqa: E731
        cand = jax.tree.map(shape, cand)
        log_q_y = shape(log_q_y)
        log_u = jnp.log(jax.random.uniform(k_u, (n_glob, c), dtype=dt))
        start = FlowIMHState(x, chains.log_prob, flow.log_prob(params, x).astype(dt))

        def one(carry, inp):
            imh, grad = carry
            cand, lq, lu = inp
            proposed = FlowIMHState(cand.position, cand.log_prob, lq)
            imh, info = jax.vmap(imh_test)(lu, imh, proposed)
            grad = jnp.where(info.is_accepted[:, None], cand.grad, grad)
            return (imh, grad), (imh.position, imh.log_prob, info.acceptance_rate, ~info.is_finite)

        (imh, grad), (gx, glp, rate, bad) = jax.lax.scan(one, (start, chains.grad), (cand, log_q_y, log_u))
        chains = chains._replace(position=imh.position, log_prob=imh.log_prob, grad=grad)
        # the loop's trajectory, local then global steps, thinned, (C, S, ...)
        traj = jnp.concatenate([tx, gx], axis=0)[cfg.thinning - 1 :: cfg.thinning]
        traj_lp = jnp.concatenate([tlp, glp], axis=0)[cfg.thinning - 1 :: cfg.thinning]
        return chains, imh, jnp.swapaxes(traj, 0, 1), jnp.swapaxes(traj_lp, 0, 1), jnp.mean(rate), jnp.sum(bad)

    def train(fdata, params, opt_state, buffer, filled, fresh, loop, store, key):
        flow = flow_of(fdata)
        slot = loop % cfg.buffer_loops
        heldout = -jnp.mean(flow.log_prob(params, fresh))
        buffer = jnp.where(store, buffer.at[slot].set(fresh), buffer)
        filled = jnp.where(store, filled.at[slot].set(True), filled)
        data = buffer.reshape(-1, buffer.shape[-1])
        b = None if batch is None or batch >= data.shape[0] else int(batch)
        loss = forward_kl(flow, data, b, weights=jnp.repeat(filled, buffer.shape[1]))
        params, opt_state, rec = fit_steps(loss, cfg.optimizer, params, opt_state, key, cfg.num_epochs)
        skipped = jnp.sum(~rec["is_finite"]).astype(jnp.int32)
        return params, opt_state, buffer, filled, rec["loss"][-1].astype(data.dtype), skipped, heldout.astype(data.dtype)

    def score(fdata, params, x):
        lp = jax.vmap(log_prob)(x)
        return lp, lp - flow_of(fdata).log_prob(params, x)

    local_j = build_local(cfg, log_prob) if local is None else local
    raw = LoopPrograms(local_j, None, None, None, loop_keys, jax.jit(train), jit_light(global_phase),
                       score_program=jit_light(score))
    return bind_programs(raw, flow_data)


def bind_programs(programs: LoopPrograms, flow_data: Any) -> LoopPrograms:
    """``programs`` with ``train`` / ``global_`` / ``loop`` on ``flow_data`` (their jitted
    ``train_program`` / ``global_program`` are shared: rebinding compiles nothing new when
    ``flow_data`` keeps its shapes and dtypes)."""
    local_j, keys_j = programs.local, programs.keys
    train_j = functools.partial(programs.train_program, flow_data)
    global_j = functools.partial(programs.global_program, flow_data)
    on = np.ones((), bool)

    def loop(state, key, training):
        training = bool(training)
        (k_loc, k_train, k_glob), next_loop = keys_j(key, state.loop)
        chains, ad, tx, tlp, fresh, (lrate, lbad, ldiv, step) = local_j(k_loc, state.local, state.adaptation,
                                                                         np.asarray(training))
        params, opt_state, buffer, filled = state.params, state.opt_state, state.buffer, state.buffer_filled
        if training:
            params, opt_state, buffer, filled, loss, skipped, _ = train_j(
                params, opt_state, buffer, filled, fresh, state.loop, on, k_train)
        else:
            loss, skipped = np.zeros((), tx.dtype), np.zeros((), np.int32)
        chains, imh, traj, traj_lp, grate, gbad = global_j(k_glob, chains, params, tx, tlp)
        new = state._replace(
            local=chains, flow_imh=imh, adaptation=ad, params=params, opt_state=opt_state,
            buffer=buffer, buffer_filled=filled, loop=next_loop,
        )
        return new, LoopStats(lrate, grate, loss, step, lbad, ldiv, gbad, skipped), traj, traj_lp

    score_j = None if programs.score_program is None else functools.partial(programs.score_program, flow_data)
    return programs._replace(train=train_j, global_=global_j, loop=loop, flow_data=flow_data, score=score_j)
