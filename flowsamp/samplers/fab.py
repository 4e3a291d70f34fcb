r"""Flow annealed importance sampling bootstrap (FAB) with a prioritised replay buffer.

Midgley, Stimper, Simm, Schölkopf & Hernández-Lobato, ICLR 2023, arXiv:2208.01893. The flow
:math:`q_\theta` is trained by the α = 2 divergence :math:`\int p^2/q_\theta` (the variance of the
importance weights :math:`p/q_\theta`), whose minimum-variance proposal
:math:`p^2/q_\theta` is reached by AIS starting from the flow itself (:mod:`._fab_ais`: HMC
moves along :math:`q^{1-\beta}(p^2/q)^{\beta}`). Each iteration

1. draws ``updates_per_iteration`` batches from the buffer with probability :math:`\propto w`
   (:func:`flowsamp.train.replay_buffer.prioritised_buffer`) and takes one guarded optimiser
   step on each (:func:`flowsamp.train.guarded_step` on
   :func:`flowsamp.train.alpha_divergence.fab_buffer_loss`), re-weighting the drawn entries for
   the moved flow;
2. runs AIS from the (pre-update) flow towards :math:`p^2/q` and adds the batch to the buffer.

The buffer is first filled with ``buffer_min_batches`` AIS batches. After training, ln Z is
estimated by importance sampling with the trained flow (:func:`flowsamp.importance_sampling`:
:math:`\ln\hat Z` with its SE, Kish ESS and Pareto :math:`\hat k`), and the verdict is that of
the importance weights.

Defaults are fab-jax's (``experiments/config``): 8 intermediate distributions (many-well),
HMC with 5 leapfrog steps tuned to acceptance 0.65, α = 2, weight-adjustment clip 10, buffer of
400 batches sampled from 40 on, 4 updates per AIS batch, Adam with a linear warm-up to 2e-4
and a cosine decay to 0.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowsamp import io as _io
from flowsamp._progress import ProgressBar
from flowsamp.base import Flow, as_key
from flowsamp.estimators.verdict import Thresholds, Verdict, warn_if_not_converged
from flowsamp.estimators.weights import ess as kish_ess
from flowsamp.parallel import chain_mesh, check_divisible
from flowsamp.samplers import _checkpoint as _ckpt
from flowsamp.samplers._fab_ais import fab_ais
from flowsamp.samplers.importance import ISResult, importance_sampling
from flowsamp.train.alpha_divergence import fab_buffer_loss
from flowsamp.train.fit import guarded_step
from flowsamp.train.replay_buffer import BufferState, prioritised_buffer
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["FABResult", "FABState", "fab"]


class FABState(NamedTuple):
    """Training state: flow ``params``, optimiser state, buffer, per-intermediate HMC log step sizes."""

    params: Any
    opt_state: Any
    buffer: BufferState
    log_step_sizes: Array


class FABResult(NamedTuple):
    r"""Result of :func:`fab`.

    ``params`` the trained flow parameters (for :func:`flowsamp.importance_sampling`);
    ``log_Z``, ``log_Z_se``, ``ess``, ``k_hat`` of the final importance sampling with the
    trained flow (``importance`` is its :class:`~flowsamp.samplers.importance.ISResult`);
    ``history``: per iteration ``loss`` (mean over the updates), ``ais_ess`` (ESS/N of the
    AIS weights of the batch), ``ais_acceptance`` (mean HMC acceptance), ``is_finite``
    (fraction of applied updates); ``step_sizes`` per intermediate distribution; ``state`` the
    final :class:`FABState` (continue training by passing it back); ``wall_s``;
    ``diagnostics``, ``converged``, ``problems`` of the importance weights.
    """

    params: Any
    log_Z: float
    log_Z_se: float
    ess: float
    k_hat: float
    importance: ISResult
    history: dict
    step_sizes: np.ndarray
    state: FABState
    wall_s: float
    diagnostics: dict
    converged: bool
    problems: list


def _default_optimizer(num_updates: int) -> optax.GradientTransformation:
    sched = optax.warmup_cosine_decay_schedule(2e-5, 2e-4, min(10, num_updates // 2 + 1), max(num_updates, 11), 0.0)
    return optax.adam(sched)


def _build(flow, log_prob, optimizer, buffer, batch_size, updates, betas, num_leapfrog, alpha, clip, adapt_rate,
           mesh):
    def ais(key, params, log_eps, rate):
        return fab_ais(key, flow, params, log_prob, batch_size, betas, log_eps, num_leapfrog, alpha, rate, mesh)

    def fill(key, state: FABState, num_batches: int):
        def body(st, k):
            x, log_w, lq, _, log_eps = ais(k, st.params, st.log_step_sizes, adapt_rate)
            return st._replace(buffer=buffer.add(st.buffer, x, log_w, lq), log_step_sizes=log_eps), None

        return jax.lax.scan(body, state, jax.random.split(key, num_batches))[0]

    def iteration(carry, inp):
        state = carry
        key, it = inp
        k_buf, k_upd, k_ais = jax.random.split(key, 3)
        xb, lqb, idx = buffer.sample(k_buf, state.buffer, updates * batch_size)
        xb = xb.reshape(updates, batch_size, -1)
        lqb = lqb.reshape(updates, batch_size)

        def update(c, u):
            params, opt_state = c
            loss = fab_buffer_loss(flow, xb[u], lqb[u], alpha=alpha, w_adjust_clip=clip)
            params, opt_state, rec = guarded_step(loss, optimizer, params, opt_state, k_upd, it * updates + u,
                                                  takes_step=True)
            return (params, opt_state), (rec["loss"], rec["is_finite"], rec["aux"]["log_w_adjust"],
                                         rec["aux"]["log_q"])

        (params, opt_state), (losses, finite, log_w_adj, log_q) = jax.lax.scan(
            update, (state.params, state.opt_state), jnp.arange(updates))
        buf = buffer.adjust(state.buffer, idx, log_w_adj.reshape(-1), log_q.reshape(-1))
        x, log_w, lq, acc, log_eps = ais(k_ais, state.params, state.log_step_sizes, adapt_rate)
        buf = buffer.add(buf, x, log_w, lq)
        rec = {"loss": jnp.mean(losses), "is_finite": jnp.mean(finite.astype(x.dtype)),
               "ais_ess": kish_ess(log_w) / batch_size, "ais_acceptance": jnp.mean(acc)}
        return FABState(params, opt_state, buf, log_eps), rec

    def chunk(key, state, start, *, length):
        its = start + jnp.arange(length)
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(its)
        return jax.lax.scan(iteration, state, (keys, its))

    return jax.jit(fill, static_argnames=("num_batches",)), jax.jit(chunk, static_argnames=("length",))


def _load_checkpoint(path, meta: dict, like: FABState):
    """(state, history lists, iterations done, elapsed) from a FAB checkpoint."""
    stored = _io.read_meta(path, meta)
    done = stored.get("done")
    if isinstance(done, bool) or not isinstance(done, int) or not 0 <= done <= meta["num_iterations"]:
        raise ValueError(f"fab: {os.fspath(path)!r} has no valid 'done' in its meta (got {done!r})")
    dt = np.dtype(like.log_step_sizes.dtype)
    curves = {k: np.zeros((done,), dt) for k in ("loss", "is_finite", "ais_ess", "ais_acceptance")}
    tree = _io.load(path, {"state": like, "history": curves}, meta=meta)
    hist = {k: [np.asarray(v)] if done else [] for k, v in tree["history"].items()}
    return tree["state"], hist, done, float(stored.get("elapsed", 0.0))


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"fab: `{name}` must be an int >= {lo}, got {v!r}")
    return int(v)


def fab(
    key: PRNGKey,
    log_prob: LogProbFn,
    flow: Flow,
    *,
    params: Any = None,
    state: FABState | None = None,
    num_iterations: int = 2000,
    batch_size: int = 1024,
    num_intermediate: int = 8,
    num_leapfrog: int = 5,
    step_size: float = 1e-2,
    alpha: float = 2.0,
    w_adjust_clip: float = 10.0,
    buffer_max_batches: int = 400,
    buffer_min_batches: int = 40,
    updates_per_iteration: int = 4,
    optimizer: optax.GradientTransformation | None = None,
    adapt_rate: float = 0.5,
    num_eval_samples: int = 10_000,
    chunk_size: int = 50,
    progress: bool = False,
    callback: Callable[[int, FABState, dict], None] | None = None,
    thresholds: Thresholds | None = None,
    warn: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    devices: Sequence[jax.Device] | None = None,
) -> FABResult:
    r"""Train ``flow`` on ``log_prob`` by FAB with a prioritised buffer; ln Z by IS with the trained flow.

    Parameters
    ----------
    key
        PRNG key (any ``impl``) or int.
    log_prob
        Unnormalised target log-density of one point (differentiable: HMC moves).
    flow
        A :class:`flowsamp.base.Flow`; ``params`` its initial parameters (default ``flow.init``).
    state
        A :class:`FABState` from an earlier result (``result.state``) to continue training.
    num_iterations
        AIS batches after the buffer is filled (each followed by ``updates_per_iteration``
        optimiser steps).
    batch_size
        AIS particles per iteration and samples per optimiser step.
    num_intermediate, num_leapfrog, step_size
        AIS intermediate distributions (linear β), leapfrog steps per HMC move, initial HMC step
        (adapted per distribution towards acceptance 0.65 by Robbins-Monro at ``adapt_rate`` on the
        batch-mean acceptance, which is nearly noise-free, hence the large default; 0 keeps it fixed).
    alpha, w_adjust_clip
        α of the divergence and the clip of the buffer weight adjustment.
    buffer_max_batches, buffer_min_batches, updates_per_iteration
        Buffer size and initial fill, in batches; optimiser steps per AIS batch.
    optimizer
        Any optax transformation (default Adam, warm-up to 2e-4 then cosine decay over the run).
    num_eval_samples
        Flow samples for the final importance-sampling estimate.
    chunk_size
        Iterations per compiled call (progress and history between calls).
    progress
        Show a tqdm progress bar (process 0 only) with the latest loss, AIS ESS/N and AIS
        acceptance, updated between compiled calls.
    callback
        ``callback(iterations_done, state, records)`` after every chunk (e.g. a learning curve of
        ``state.params``); ``records`` holds the chunk's per-iteration history.
    checkpoint_path, checkpoint_every, resume
        Write the training state (flow, optimiser, buffer, step sizes, history) atomically to
        ``checkpoint_path`` after the buffer fill and every ``checkpoint_every`` iterations (a
        multiple of ``chunk_size``; default ``chunk_size``). With ``resume=True`` and an existing
        file, training continues from it and the result equals an uninterrupted run with the same
        key (``wall_s`` apart); a checkpoint of another run raises a ``ValueError`` naming the key.
    devices
        Split every AIS batch (the buffer fill and each iteration's batch) over these devices
        (``jax.shard_map``, ``flowsamp.parallel``): each device makes the HMC transitions of
        ``batch_size / len(devices)`` particles (``batch_size`` must be a multiple of it). The
        draws from the flow, the random numbers, the buffer and the loss/gradient step of the
        flow stay batch-wide and replicated, so only the order of the sums over particles differs
        from the single-device run: under ``jax_enable_x64`` the result equals it to 1e-14
        (measured 7e-15 on 4 CPU devices), in float32 to the last bits (measured 4e-6 after 2
        iterations), which long training can amplify. Checkpoints do not record the devices: a
        run may resume on another device count.

    Returns
    -------
    FABResult
    """
    t0 = time.perf_counter()
    key = as_key(key)
    if not isinstance(flow, Flow):
        raise TypeError(f"fab: `flow` must be a flowsamp.base.Flow, got {type(flow).__name__}")
    if not callable(log_prob):
        raise TypeError("fab: `log_prob` must be callable")
    num_iterations = _check_int("num_iterations", num_iterations, 0)
    batch_size = _check_int("batch_size", batch_size, 2)
    num_intermediate = _check_int("num_intermediate", num_intermediate, 1)
    num_leapfrog = _check_int("num_leapfrog", num_leapfrog, 1)
    buffer_max_batches = _check_int("buffer_max_batches", buffer_max_batches, 1)
    buffer_min_batches = _check_int("buffer_min_batches", buffer_min_batches, 1)
    updates = _check_int("updates_per_iteration", updates_per_iteration, 1)
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    if updates * batch_size > buffer_min_batches * batch_size or buffer_min_batches > buffer_max_batches:
        raise ValueError("fab: need updates_per_iteration <= buffer_min_batches <= buffer_max_batches")
    if not (np.isfinite(step_size) and step_size > 0):
        raise ValueError(f"fab: `step_size` must be positive, got {step_size!r}")
    _ckpt.check_options("fab", checkpoint_path, checkpoint_every, resume, "iterations", multiple_of=chunk_size)
    if not alpha > 1:
        raise ValueError(f"fab: `alpha` must be > 1 (FAB's alpha-divergence), got {alpha!r}")
    k_init, k_fill, k_train, k_eval = jax.random.split(key, 4)
    optimizer = optimizer if optimizer is not None else _default_optimizer(num_iterations * updates)
    buffer = prioritised_buffer(buffer_max_batches * batch_size)
    betas = np.linspace(0.0, 1.0, num_intermediate + 2)
    mesh = None
    if devices is not None:
        mesh = chain_mesh(devices)
        check_divisible(batch_size, mesh, "particles (batch_size)")
    fill, chunk = _build(flow, log_prob, optimizer, buffer, batch_size, updates, tuple(betas), num_leapfrog,
                         float(alpha), float(w_adjust_clip), float(adapt_rate), mesh)
    given_state = state
    if state is None:
        params = flow.init(k_init) if params is None else params
        dt = jax.tree.leaves(jax.eval_shape(lambda: flow.sample_and_log_prob(params, k_init, 1)))[0].dtype
        state = FABState(params, optimizer.init(params), buffer.init(flow.dim, dt),
                         jnp.full((num_intermediate,), math.log(step_size), dt))
    hist: dict[str, list] = {"loss": [], "is_finite": [], "ais_ess": [], "ais_acceptance": []}
    done = 0
    ck = None
    if checkpoint_path is not None:
        every = int(checkpoint_every) if checkpoint_every is not None else chunk_size
        probe = flow.sample_and_log_prob(state.params, jax.random.fold_in(k_init, 7), 4)[0]
        meta = {"sampler": "fab", "num_iterations": num_iterations, "batch_size": batch_size,
                "num_intermediate": num_intermediate, "num_leapfrog": num_leapfrog, "step_size": float(step_size),
                "alpha": float(alpha), "w_adjust_clip": float(w_adjust_clip),
                "buffer_max_batches": buffer_max_batches, "buffer_min_batches": buffer_min_batches,
                "updates_per_iteration": updates, "adapt_rate": float(adapt_rate), "chunk_size": chunk_size,
                "key": [int(v) for v in _ckpt.key_data(key).ravel()],
                "initial_state": _ckpt.fingerprint(state if given_state is not None else state.params),
                "target": _ckpt.fingerprint(jax.device_get(jax.vmap(log_prob)(probe))),
                "optimizer": _ckpt.fingerprint(jax.tree.map(np.shape, state.opt_state))}
        ck = (checkpoint_path, every, meta)
        if _ckpt.should_resume(checkpoint_path, resume):
            state, hist, done, elapsed = _load_checkpoint(checkpoint_path, meta, state)
            t0 -= elapsed
            given_state = state  # no refill
    if given_state is None:
        state = fill(k_fill, state, num_batches=buffer_min_batches)

    def save() -> None:
        curves = {k: np.concatenate(v) if v else np.zeros((0,), np.dtype(state.log_step_sizes.dtype))
                  for k, v in hist.items()}
        _io.save(ck[0], {"state": state, "history": curves},
                 meta={**ck[2], "done": int(done), "elapsed": time.perf_counter() - t0})

    if ck is not None and done == 0:
        save()
    bar = ProgressBar(progress, num_iterations, "fab", "it", done)
    while done < num_iterations:
        n = min(chunk_size, num_iterations - done)
        state, rec = chunk(k_train, state, done, length=n)
        for k in hist:
            hist[k].append(np.asarray(rec[k]))
        done += n
        if ck is not None and (done % ck[1] == 0 or done == num_iterations):
            save()
        if callback is not None:
            callback(done, state, {k: np.asarray(v) for k, v in rec.items()})
        if bar:
            bar.update(n, loss=rec["loss"][-1], ais_ess=rec["ais_ess"][-1], acc=rec["ais_acceptance"][-1])
    bar.close()
    history = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in hist.items()}
    res = importance_sampling(k_eval, flow, state.params, log_prob, num_eval_samples, thresholds=thresholds,
                              warn=False)
    problems = list(res.problems)
    if history["is_finite"].size and float(np.mean(history["is_finite"])) < 0.9:
        problems.append(f"{100 * (1 - float(np.mean(history['is_finite']))):.0f}% of the optimiser steps were "
                        "skipped as non-finite")
    diag = dict(res.diagnostics, final_ais_ess=float(history["ais_ess"][-1]) if done else float("nan"),
                num_iterations=done)
    converged = not problems
    if warn and not converged:
        warn_if_not_converged(Verdict(diag, converged, problems), "fab")
    return FABResult(state.params, float(res.log_Z), float(res.log_Z_se), float(res.ess), float(res.pareto_k), res,
                     history, np.exp(np.asarray(state.log_step_sizes, np.float64)), state,
                     time.perf_counter() - t0, diag, converged, problems)
