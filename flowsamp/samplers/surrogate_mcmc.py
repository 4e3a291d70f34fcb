r"""Surrogate-corrected MCMC with an actively learned surrogate (delayed acceptance + active learning).

The expensive target :math:`\pi` (``log_prob``) is sampled by delayed-acceptance
Metropolis-Hastings (:func:`flowsamp.kernels.delayed_acceptance`, Christen & Fox 2005): a stage-1
kernel runs on a cheap surrogate :math:`\pi^*_\theta` and only its survivors reach the expensive
stage-2 test. Every stage-2 evaluation :math:`(y, \log\pi(y))` is kept in a buffer, and between
rounds the surrogate is refit to the buffer with optax (seed 004's active learning of a machine-
learning potential: the expensive energy on a subset, the learned model for the rest):

.. math::

    \log\pi^*_\theta(x) = b(x) + f_\theta\big((x - m)/s\big), \qquad
    L(\theta) = \frac{1}{\sigma_y^2}\,\overline{\big(r_i - \bar r\big)^2}, \quad
    r_i = \log\pi^*_\theta(x_i) - \log\pi(x_i),

with :math:`f_\theta` a small flax MLP (zero last layer: the untrained surrogate is the base),
:math:`b` a cheap physics model (``base_log_prob``) or, without one, the Gaussian envelope
:math:`-\tfrac12|(x - m)/s|^2` (trainable :math:`m, s`) that keeps the surrogate normalisable. The loss
is the offset-free mean squared error on a minibatch (a constant in :math:`\log\pi^*` cancels in the
delayed-acceptance ratio), minimised by :func:`flowsamp.train.fit_steps` (the library's guarded
optimiser step). The buffer has a fixed capacity and the surrogate parameters enter the jitted round
as *data*, so the round and the fit are each compiled once.

Why adapting between rounds is allowed
--------------------------------------
Within a round the surrogate is frozen and each transition is the delayed-acceptance kernel, which is
reversible with respect to :math:`\pi` for *any* surrogate. Between rounds the surrogate depends on
the chain's past, so the adaptation rounds are not a homogeneous Markov chain and their draws are
discarded as warm-up. The production phase runs with the final surrogate frozen: conditional on the
adaptation history it is a time-homogeneous Markov chain with invariant distribution :math:`\pi`
started from the adapted state, so its draws are ordinary (exact) MCMC output for :math:`\pi`; a bad
surrogate only lowers the stage-2 acceptance. No diminishing-adaptation condition is needed because
nothing adapts during production.

References
----------
J. A. Christen and C. Fox, J. Comput. Graph. Stat. 14, 795 (2005). T. Cui, C. Fox, M. J.
O'Sullivan, arXiv:1011.4927. Seed 004: NF + machine-learning-potential active learning, arXiv:2401.16487.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowsamp import io as _io
from flowsamp._progress import ProgressBar, min_bulk_ess
from flowsamp.base import as_key, check_finite_positions
from flowsamp.estimators.verdict import Thresholds, mcmc_verdict, warn_if_not_converged
from flowsamp.flows.nets import MLP, get_activation
from flowsamp.kernels.delayed_acceptance import build_kernel as _da_build_kernel
from flowsamp.kernels.delayed_acceptance import delayed_acceptance as _delayed_acceptance
from flowsamp.kernels.delayed_acceptance import init as _da_init
from flowsamp.kernels import rwmh as _rwmh
from flowsamp.samplers import _checkpoint as _ckpt
from flowsamp.train.fit import fit_steps
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["Surrogate", "SurrogateMCMCResult", "mlp_surrogate", "surrogate_mcmc"]


class Surrogate(NamedTuple):
    """A learned log-density as pure functions: ``init(key) -> params``, ``log_prob(params, x)``
    on one point ``x`` of shape ``(dim,)``, and ``with_moments(params, loc, scale) -> params`` that
    re-centres the input standardisation (used before the first fit). Optionally
    ``log_prob = base_log_prob(x) + correction(params, x)`` with a parameter-free base: the fit then
    learns the correction on the residuals ``log pi - base``, and the base is never re-evaluated on
    the buffer."""

    init: Callable[[PRNGKey], Any]
    log_prob: Callable[[Any, Array], Array]
    with_moments: Callable[[Any, Array, Array], Any]
    base_log_prob: LogProbFn | None = None
    correction: Callable[[Any, Array], Array] | None = None


def mlp_surrogate(
    dim: int,
    hidden: Sequence[int] = (64, 64),
    *,
    base_log_prob: LogProbFn | None = None,
    activation: str | Callable[[Array], Array] = "silu",
) -> Surrogate:
    r"""An MLP surrogate :math:`\log\pi^*_\theta(x) = b(x) + f_\theta((x - m)/s)`.

    Parameters
    ----------
    dim
        Dimension of ``x``.
    hidden
        Hidden widths of the flax MLP :math:`f_\theta` (last layer zero-initialised).
    base_log_prob
        A cheap physics model :math:`b(x)` the network corrects; ``None`` uses the Gaussian envelope
        :math:`b(x) = -\tfrac12 |(x - m)/s|^2`.
    activation
        Hidden activation (a name of ``flowsamp.flows.nets.ACTIVATIONS`` or a callable).

    Returns
    -------
    Surrogate
        ``params = {"net", "loc", "log_scale"}``; ``loc = 0``, ``log_scale = 0`` at init.
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"mlp_surrogate: dim must be a positive int, got {dim!r}")
    if base_log_prob is not None and not callable(base_log_prob):
        raise TypeError("mlp_surrogate: base_log_prob must be callable or None")
    net = MLP(tuple(int(h) for h in hidden), num_out=1, num_params=1, activation=get_activation(activation))

    def init(key: PRNGKey) -> Any:
        dtype = jnp.zeros(()).dtype
        return {"net": net.init(as_key(key), jnp.zeros((dim,), dtype)), "loc": jnp.zeros((dim,), dtype),
                "log_scale": jnp.zeros((dim,), dtype)}

    def correction(params: Any, x: Array) -> Array:
        z = (x - params["loc"]) * jnp.exp(-params["log_scale"])
        envelope = -0.5 * jnp.sum(z**2) if base_log_prob is None else 0.0
        return envelope + net.apply(params["net"], z)[0, 0]

    def log_prob(params: Any, x: Array) -> Array:
        return correction(params, x) if base_log_prob is None else base_log_prob(x) + correction(params, x)

    def with_moments(params: Any, loc: Array, scale: Array) -> Any:
        return {**params, "loc": jnp.asarray(loc, params["loc"].dtype),
                "log_scale": jnp.log(jnp.asarray(scale, params["loc"].dtype))}

    return Surrogate(init, log_prob, with_moments, base_log_prob, correction if base_log_prob is not None else None)


class SurrogateMCMCResult(NamedTuple):
    r"""Output of :func:`surrogate_mcmc`.

    ``samples`` ``(chains, draws, dim)`` and ``log_prob`` ``(chains, draws)``: the production draws
    (frozen surrogate, exact for :math:`\pi`). Per round (adaptation rounds, then the production phase
    as the last entry): ``expensive_evaluations`` (evaluations of ``log_prob``), ``first_stage_acceptance``
    (fraction of steps whose surrogate stage moved), ``second_stage_acceptance`` (fraction of those the
    expensive stage accepted), ``acceptance`` (overall), ``heldout_error`` (the offset-free RMSE
    :math:`\mathrm{sd}(\log\pi^* - \log\pi)` of the round's surrogate on that round's new expensive
    evaluations, none of which it was trained on; NaN without any). ``num_expensive_evaluations``: the
    total, the initial positions included. ``surrogate``/``surrogate_params``: the final surrogate;
    ``buffer_positions``/``buffer_log_prob``: the training data (:math:`\log\pi`, or the residual
    :math:`\log\pi - b` for a surrogate with a ``base_log_prob``); ``state``: the final
    ``DelayedAcceptanceState`` of every chain; ``timings``: host wall seconds, ``"init"``, ``"rounds"`` and
    ``"refits"`` (one per adaptation round) and ``"production"`` (one per chunk), the first call of each
    jitted program including its compilation; ``diagnostics``/``converged``/``problems``: the
    :func:`flowsamp.estimators.mcmc_verdict` on ``samples``.
    """

    samples: np.ndarray
    log_prob: np.ndarray
    expensive_evaluations: np.ndarray
    first_stage_acceptance: np.ndarray
    second_stage_acceptance: np.ndarray
    acceptance: np.ndarray
    heldout_error: np.ndarray
    num_expensive_evaluations: int
    surrogate: Surrogate
    surrogate_params: Any
    buffer_positions: np.ndarray
    buffer_log_prob: np.ndarray
    state: Any
    timings: dict
    diagnostics: dict
    converged: bool
    problems: list


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"surrogate_mcmc: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _moments(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of points for the input standardisation; a coordinate that does not vary
    (beyond float rounding, e.g. every chain started at one point) gets scale 1."""
    mean = xs.mean(axis=0)
    sd = xs.std(axis=0) if len(xs) > 1 else np.zeros_like(mean)
    return mean, np.where(sd > 1e-4 * (1.0 + np.abs(mean)), sd, 1.0)


def _round_summary(out: dict) -> dict:
    moved = out["first"].sum()
    return {
        "evals": int(out["evals"].sum()),
        "first": float(out["first"].mean()),
        "second": float(out["accepted"].sum() / moved) if moved else float("nan"),
        "acc": float(out["accepted"].mean()),
    }


# production records kept for the result (the proposals ``y``/``lb`` only feed the buffer)
_PROD_KEYS = ("x", "lp", "accepted", "first", "evals", "finite", "ly", "ls")


def _fingerprint_any(tree: Any) -> str:
    try:
        return _ckpt.fingerprint(tree)
    except (TypeError, ValueError):
        return hashlib.sha256(repr(tree).encode()).hexdigest()[:16]


def _show_production(bar: ProgressBar, offset: int, prod: list, num_production_steps: int) -> None:
    """The bar after a production chunk: acceptance of the production steps so far (over all
    chains) and their minimum bulk ESS (at most every 2 s); ``offset`` steps of adaptation before."""
    n = min(sum(p["x"].shape[1] for p in prod), num_production_steps)
    acc = np.concatenate([p["accepted"] for p in prod], axis=1)[:, :n]
    ess = bar.every("ess", 2.0, lambda: min_bulk_ess(np.concatenate([p["x"] for p in prod], axis=1)[:, :n]))
    bar.set(offset + n, acc=float(np.mean(acc)), min_ess=ess)


def surrogate_mcmc(
    key: PRNGKey,
    log_prob: LogProbFn,
    initial_positions: Array,
    *,
    kernel_params: dict,
    proposal_kernel: Any = _rwmh,
    surrogate: Surrogate | None = None,
    surrogate_params: Any = None,
    num_rounds: int = 4,
    steps_per_round: int = 250,
    num_production_steps: int = 1000,
    train_steps: int = 500,
    batch_size: int = 256,
    optimizer: optax.GradientTransformation | None = None,
    vectorize_chains: bool = False,
    thresholds: Thresholds | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = False,
) -> SurrogateMCMCResult:
    r"""Delayed-acceptance MCMC whose surrogate is trained on its own expensive evaluations.

    ``num_rounds`` adaptation rounds of ``steps_per_round`` delayed-acceptance steps per chain, each
    followed by a refit of the surrogate on every expensive evaluation so far; then
    ``num_production_steps`` steps with the surrogate frozen (see the module docstring for why this
    is exact). ``num_rounds=0`` with given ``surrogate_params`` is plain delayed acceptance with a
    fixed surrogate.

    Parameters
    ----------
    key
        PRNG key.
    log_prob
        The expensive unnormalized log-density :math:`\log\pi(x)` of one point ``(dim,)``.
    initial_positions
        ``(chains, dim)``.
    kernel_params
        Parameters of the stage-1 kernel on the surrogate (``{"scale": 0.1}`` for ``rwmh``,
        ``{"step_size": 0.01}`` for ``mala``).
    proposal_kernel
        A ``fs.kernels`` Metropolis-Hastings kernel API (default ``fs.kernels.rwmh``).
    surrogate, surrogate_params
        The learned model (default :func:`mlp_surrogate` of ``dim`` with the Gaussian envelope) and
        its initial parameters (default ``surrogate.init`` standardised to the initial positions'
        mean and spread, re-standardised to the buffer before the first fit).
    num_rounds, steps_per_round, num_production_steps
        Adaptation rounds, steps per round and per chain, production steps per chain (run in
        chunks of ``steps_per_round``, rounded up).
    train_steps, batch_size, optimizer
        Optimiser steps per refit (warm-started from the previous parameters), minibatch size and
        the optax optimiser (default ``optax.adam(1e-3)``).
    vectorize_chains
        ``False`` (default) runs the chains one after another (``lax.map``) so ``lax.cond`` really
        skips the screened-out expensive evaluations; ``True`` uses ``vmap`` (faster for cheap
        targets, but every chain then pays for every branch).
    thresholds
        Verdict thresholds.
    checkpoint_path
        If given, the run is saved there atomically (:func:`flowsamp.io.save`, msgpack, with a
        ``meta`` of the key, the starting points, the initial surrogate parameters and the plain
        options) every ``checkpoint_every`` rounds and after the last one. The saved state: the
        chains' ``DelayedAcceptanceState``, the surrogate parameters, the whole evaluation buffer
        and its fill count, the per-round statistics (evaluations, acceptances, held-out errors),
        the production draws so far, the number of rounds done (the key of round ``r`` is
        ``fold_in(key, r)``, so the counter is the key state) and the timings. There is no
        optimiser state between rounds: every refit starts ``optimizer`` afresh from the
        warm-started parameters.
    checkpoint_every
        Rounds between checkpoints (default 1; needs ``checkpoint_path``). The production phase
        counts as ``ceil(num_production_steps / steps_per_round)`` further rounds (its chunks).
    resume
        Continue from ``checkpoint_path`` when that file exists (else start and write it); the
        result equals the uninterrupted run's with the same key bit for bit (timings aside). A
        checkpoint of another key, start, initial surrogate or options raises the ``ValueError``
        of :func:`flowsamp.io.load` naming the differing ``meta`` entry. ``log_prob``,
        ``surrogate``, ``proposal_kernel`` and ``optimizer`` (callables) cannot be compared: using
        the same ones is the caller's responsibility.
    progress
        Show a tqdm progress bar of the steps per chain (process 0 only, figures over all
        chains): in the adaptation rounds the round's delayed-acceptance acceptance, its first-
        and second-stage acceptance, the expensive evaluations so far and the surrogate's
        held-out error; in production the acceptance and minimum bulk ESS of the production
        draws so far. Host-side between the compiled rounds: the numbers are the same with it
        on or off.

    Returns
    -------
    SurrogateMCMCResult
    """
    key = as_key(key)
    x0 = jnp.asarray(initial_positions)
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        x0 = x0.astype(jnp.zeros(()).dtype)
    if x0.ndim != 2:
        raise ValueError(f"surrogate_mcmc: initial_positions must have shape (chains, dim), got {x0.shape}")
    check_finite_positions(x0)
    if not callable(log_prob):
        raise TypeError("surrogate_mcmc: log_prob must be callable")
    if not isinstance(kernel_params, dict):
        raise TypeError(f"surrogate_mcmc: kernel_params must be a dict, got {type(kernel_params).__name__}")
    num_rounds = _check_int("num_rounds", num_rounds, 0)
    steps = _check_int("steps_per_round", steps_per_round, 1)
    num_production_steps = _check_int("num_production_steps", num_production_steps, 1)
    train_steps = _check_int("train_steps", train_steps, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    _ckpt.check_options("surrogate_mcmc", checkpoint_path, checkpoint_every, resume, "rounds")
    every = 1 if checkpoint_every is None else int(checkpoint_every)
    chains, dim = x0.shape
    if surrogate is None:
        surrogate = mlp_surrogate(dim)
    if not isinstance(surrogate, Surrogate):
        raise TypeError(f"surrogate_mcmc: surrogate must be a Surrogate, got {type(surrogate).__name__}")
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError("surrogate_mcmc: optimizer must be an optax.GradientTransformation")
    key_init, key_run, key_fit = jax.random.split(key, 3)
    if surrogate_params is None:
        params = surrogate.with_moments(surrogate.init(key_init), *_moments(np.asarray(x0)))
        fresh = True
    else:
        params, fresh = surrogate_params, False
    # validates proposal_kernel and kernel_params the way the kernel's constructor does
    _delayed_acceptance(log_prob, lambda x: surrogate.log_prob(params, x), proposal_kernel, **kernel_params)
    kernel = _da_build_kernel(proposal_kernel)
    split = surrogate.base_log_prob is not None and surrogate.correction is not None
    corr = surrogate.correction
    fit_fn = corr if split else surrogate.log_prob  # the buffer holds log pi - base when split
    chain_map = jax.vmap if vectorize_chains else (lambda f: (lambda *a: jax.lax.map(lambda t: f(*t), a)))

    @jax.jit
    def init_chains(params, x0):
        surr = lambda x: surrogate.log_prob(params, x)  # noqa: E731
        return chain_map(lambda x: _da_init(x, log_prob, surr, proposal_kernel))(x0)

    @jax.jit
    def run_round(key, states, params):
        surr = lambda x: surrogate.log_prob(params, x)  # noqa: E731

        def one_chain(k, s):
            # the new surrogate's value (and gradient) at the current point; log pi stays cached
            s = s._replace(surrogate_state=proposal_kernel.init(s.position, surr))

            def step(s, kk):
                s, info = kernel(kk, s, log_prob, surr, **kernel_params)
                rec = {"x": s.position, "lp": s.log_prob, "accepted": info.is_accepted,
                       "first": info.first_stage_accepted, "evals": info.num_expensive_evaluations,
                       "finite": info.is_finite, "y": info.proposed_position, "ly": info.proposed_log_prob,
                       "ls": info.proposed_surrogate_log_prob}
                return s, rec

            s, rec = jax.lax.scan(step, s, jax.random.split(k, steps))
            # base(y) = pi*(y) - correction(y): the fit's residual target without re-running the base
            rec["lb"] = rec["ls"] - jax.vmap(lambda y: corr(params, y))(rec["y"]) if split else rec["ls"]
            return s, rec

        return chain_map(one_chain)(jax.random.split(key, chains), states)

    capacity = chains * (1 + steps * num_rounds)

    @jax.jit
    def refit(params, key, bx, by, count):
        valid = jnp.arange(capacity) < count
        mean_y = jnp.sum(jnp.where(valid, by, 0.0)) / count
        sd_y = jnp.sqrt(jnp.sum(jnp.where(valid, (by - mean_y) ** 2, 0.0)) / count)
        scale_y = jnp.where(sd_y > 0, sd_y, 1.0)

        def loss(p, k):
            idx = jax.random.randint(k, (batch_size,), 0, count)
            r = jax.vmap(lambda x: fit_fn(p, x))(bx[idx]) - by[idx]
            r = r - jnp.mean(r)
            return jnp.mean(r**2) / scale_y**2, {}

        params, _, rec = fit_steps(loss, optimizer, params, optimizer.init(params), key, train_steps)
        return params, rec["loss"][-1]

    chunks = -(-num_production_steps // steps)  # production runs in chunks of `steps` (the compiled round)
    total_units = num_rounds + chunks
    meta0 = None
    if checkpoint_path is not None:
        meta0 = {
            "sampler": "surrogate_mcmc", "key": _ckpt.fingerprint(_ckpt.key_data(key)),
            "start": _ckpt.fingerprint(np.asarray(x0)), "surrogate_params": _fingerprint_any(params),
            "chains": int(chains), "dim": int(dim), "dtype": str(x0.dtype), "num_rounds": num_rounds,
            "steps_per_round": steps, "num_production_steps": num_production_steps, "train_steps": train_steps,
            "batch_size": batch_size, "vectorize_chains": bool(vectorize_chains),
            "kernel_params": _fingerprint_any(kernel_params), "base_log_prob": bool(split),
        }
    timings: dict = {"rounds": [], "refits": [], "production": []}
    buf_x = np.zeros((capacity, dim), np.asarray(x0).dtype)
    summaries, heldout, prod = [], [], []
    done = 0
    if _ckpt.should_resume(checkpoint_path, resume):
        meta = _io.read_meta(checkpoint_path, meta0)
        done = int(meta["num_done"])
        n_sum, n_prod = min(done, num_rounds) + (done == total_units), max(0, done - num_rounds) * steps
        states_like, out_like = jax.eval_shape(lambda p, x: (lambda st: (st, run_round(key_run, st, p)[1]))(
            init_chains(p, x)), params, x0)
        like = {
            "states": jax.tree.map(lambda t: jnp.zeros(t.shape, t.dtype), states_like), "params": params,
            "buf_x": buf_x, "buf_y": np.zeros((capacity,), states_like.log_prob.dtype),
            "evals": np.zeros((n_sum,), np.int64), "first": np.zeros((n_sum,)), "second": np.zeros((n_sum,)),
            "acc": np.zeros((n_sum,)), "heldout": np.zeros((n_sum,)),
            "prod": {k: np.zeros((chains, n_prod) + out_like[k].shape[2:], out_like[k].dtype) for k in _PROD_KEYS},
        }
        tree = _io.load(checkpoint_path, like, meta=meta0)
        states, params = tree["states"], tree["params"]
        buf_x, buf_y = np.array(tree["buf_x"]), np.array(tree["buf_y"])  # writable copies
        summaries = [{"evals": int(e), "first": float(f), "second": float(s2), "acc": float(a)}
                     for e, f, s2, a in zip(tree["evals"], tree["first"], tree["second"], tree["acc"])]
        heldout = [float(h) for h in tree["heldout"]]
        prod = [tree["prod"]] if n_prod else []
        count, num_evals = int(meta["count"]), int(meta["num_evals"])
        timings = {k: list(meta["timings_" + k]) for k in ("rounds", "refits", "production")}
        timings["init"] = float(meta["timings_init"])
    else:
        clock = time.perf_counter()
        states = jax.block_until_ready(init_chains(params, x0))
        timings["init"] = time.perf_counter() - clock
        buf_y = np.zeros((capacity,), np.asarray(states.log_prob).dtype)
        first_x, first_y = np.asarray(states.position), np.asarray(states.log_prob)
        if split:
            first_y = first_y - np.asarray(jax.jit(jax.vmap(surrogate.base_log_prob))(states.position))
        ok = np.isfinite(first_y)
        count = int(ok.sum())
        buf_x[:count], buf_y[:count] = first_x[ok], first_y[ok]
        num_evals = chains

    def consume(out, store):
        nonlocal count
        mask = np.asarray(out["evals"]).astype(bool) & np.isfinite(np.asarray(out["ly"]))
        ly, ls = np.asarray(out["ly"])[mask], np.asarray(out["ls"])[mask]
        d = ls - ly
        heldout.append(float(np.std(d)) if d.size > 1 else float("nan"))
        if store:
            y = np.asarray(out["y"])[mask]
            target = ly - np.asarray(out["lb"])[mask] if split else ly
            n = min(len(ly), capacity - count)
            buf_x[count:count + n], buf_y[count:count + n] = y[:n], target[:n]
            count += n

    def checkpoint(units: int) -> None:
        if checkpoint_path is None or (units % every and units != total_units):
            return
        cat = {k: (np.concatenate([p[k] for p in prod], axis=1) if prod else None) for k in _PROD_KEYS}
        if not prod:
            shapes = jax.eval_shape(run_round, key_run, states, params)[1]
            cat = {k: np.zeros((chains, 0) + shapes[k].shape[2:], shapes[k].dtype) for k in _PROD_KEYS}
        tree = {
            "states": states, "params": params, "buf_x": buf_x, "buf_y": buf_y,
            "evals": np.array([q["evals"] for q in summaries], np.int64),
            "first": np.array([q["first"] for q in summaries], np.float64),
            "second": np.array([q["second"] for q in summaries], np.float64),
            "acc": np.array([q["acc"] for q in summaries], np.float64),
            "heldout": np.array(heldout, np.float64), "prod": cat,
        }
        meta = {**meta0, "num_done": units, "count": count, "num_evals": int(num_evals),
                "timings_init": float(timings["init"]),
                **{"timings_" + k: [float(t) for t in timings[k]] for k in ("rounds", "refits", "production")}}
        _io.save(checkpoint_path, tree, meta=meta)

    bar = ProgressBar(progress, num_rounds * steps + num_production_steps, "surrogate_mcmc rounds", "step",
                      min(done, num_rounds) * steps + min(max(0, done - num_rounds) * steps, num_production_steps))
    for r in range(done, num_rounds):
        clock = time.perf_counter()
        states, out = run_round(jax.random.fold_in(key_run, r), states, params)
        out = jax.device_get(out)
        timings["rounds"].append(time.perf_counter() - clock)
        summaries.append(_round_summary(out))
        num_evals += summaries[-1]["evals"]
        consume(out, store=True)
        if fresh and r == 0:
            params = surrogate.with_moments(params, *_moments(buf_x[:count]))
        clock = time.perf_counter()
        params, _ = jax.block_until_ready(refit(params, jax.random.fold_in(key_fit, r), jnp.asarray(buf_x),
                                                jnp.asarray(buf_y), jnp.int32(max(count, 1))))
        timings["refits"].append(time.perf_counter() - clock)
        checkpoint(r + 1)
        if bar:
            q = summaries[-1]
            bar.update(steps, acc=q["acc"], first=q["first"], second=q["second"], evals=num_evals, heldout=heldout[-1])
    bar.phase("surrogate_mcmc production")
    # production: frozen surrogate, chunks of `steps` reuse the compiled round
    for c in range(max(0, done - num_rounds), chunks):
        clock = time.perf_counter()
        states, out = run_round(jax.random.fold_in(key_run, num_rounds + c), states, params)
        out = jax.device_get(out)
        prod.append({k: out[k] for k in _PROD_KEYS})
        timings["production"].append(time.perf_counter() - clock)
        if bar:
            _show_production(bar, num_rounds * steps, prod, num_production_steps)
        if c == chunks - 1:
            break
        checkpoint(num_rounds + c + 1)
    bar.close()
    if done < total_units:
        out = {k: np.concatenate([p[k] for p in prod], axis=1)[:, :num_production_steps] for k in _PROD_KEYS}
        summaries.append(_round_summary(out))
        num_evals += summaries[-1]["evals"]
        consume(out, store=False)
        checkpoint(total_units)
    else:  # resumed from a finished run: its production summary is already in the checkpoint
        out = {k: v[:, :num_production_steps] for k, v in prod[0].items()}
    samples, lp = out["x"], out["lp"]
    num_nonfinite = int(np.sum(~out["finite"]))
    verdict = mcmc_verdict(samples, num_nonfinite=num_nonfinite, acceptance=summaries[-1]["acc"],
                           thresholds=thresholds)
    warn_if_not_converged(verdict, "surrogate_mcmc")
    return SurrogateMCMCResult(
        samples=samples,
        log_prob=lp,
        expensive_evaluations=np.array([s["evals"] for s in summaries]),
        first_stage_acceptance=np.array([s["first"] for s in summaries]),
        second_stage_acceptance=np.array([s["second"] for s in summaries]),
        acceptance=np.array([s["acc"] for s in summaries]),
        heldout_error=np.array(heldout),
        num_expensive_evaluations=int(num_evals),
        surrogate=surrogate,
        surrogate_params=params,
        buffer_positions=buf_x[:count].copy(),
        buffer_log_prob=buf_y[:count].copy(),
        state=states,
        timings=timings,
        diagnostics=verdict.diagnostics,
        converged=verdict.converged,
        problems=verdict.problems,
    )
