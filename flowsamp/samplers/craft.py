r"""Annealed flow transport (AFT) and continual repeated annealed flow transport (CRAFT).

SMC along a fixed schedule :math:`0 = \beta_0 < \dots < \beta_T = 1` of the path
:math:`\pi_\beta` (geometric by default, :func:`flowsamp.samplers.smc.geometric_path`), where
before each reweighting the particles are *transported* by a flow :math:`T_t` (one per step,
``flow.forward`` with its own parameters) trained to carry :math:`\pi_{t-1}` onto :math:`\pi_t`:

.. math::
    x_i' = T_t(x_i), \qquad
    \log \tilde w_i = \log\pi_t(T_t(x_i)) + \log\lvert\det \nabla T_t(x_i)\rvert - \log\pi_{t-1}(x_i),

then :math:`\ln\hat Z \mathrel{+}= \ln\sum_i W_i\tilde w_i`, resampling when the ESS falls below
``resample_threshold`` and MCMC moves invariant for :math:`\pi_t` (the SMC engine's,
``flowsamp.samplers._smc_moves``). Each flow is trained on the weighted particles by the
KL divergence of the transported particle measure to :math:`\pi_t`,

.. math:: L_t(\theta_t) = -\sum_i W_i\big[\log\pi_t(T_t(x_i)) + \log\lvert\det\nabla T_t(x_i)\rvert\big]
          \;(+\text{const}),

with ``fs.train.guarded_step`` (the library's one optimiser step; NaN steps skipped).
**CRAFT** (Matthews, Arbel, Rezende & Doucet 2022, arXiv:2201.13117) takes one step on every
:math:`L_t` per repeated run, transporting with the parameters *before* the step, so that
each run's weights stay exact, and keeps the flows (and the optimiser states, and the per-step
MCMC step sizes) from run to run. **AFT** (Arbel, Matthews & Doucet 2021, arXiv:2102.07501) is
one run with ``num_train_steps`` steps per temperature before transporting (here on the same
particles, so its weights carry the small bias of training on them; CRAFT's do not).

After training, ``num_eval_runs`` independent runs with the flows frozen give
:math:`\ln\hat Z` (the mean of the :math:`\hat Z_r`, SE by :func:`flowsamp.estimators.log_evidence`)
and a particle independent Metropolis-Hastings chain over the runs (Andrieu, Doucet &
Holenstein 2010): run :math:`r` is accepted with probability :math:`\min(1, \hat Z_r/\hat Z_{cur})`
by ``fs.kernels.flow_imh.imh_test`` (``log_prob`` = :math:`\ln\hat Z`, ``log_q`` = 0); its
acceptance rate is reported and the chain's particles are exact target draws.
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
from jax.scipy.special import logsumexp
from jax.sharding import Mesh

from flowsamp import io as _io
from flowsamp._progress import ProgressBar
from flowsamp.base import Flow, as_key
from flowsamp.estimators.evidence import log_evidence
from flowsamp.estimators.pareto import pareto_k
from flowsamp.estimators.verdict import Thresholds, importance_verdict, Verdict, warn_if_not_converged
from flowsamp.estimators.weights import ess as kish_ess
from flowsamp.kernels.flow_imh import FlowIMHState, imh_test
from flowsamp.parallel import CHAINS, REPLICATED, chain_mesh, check_divisible, shard_chains
from flowsamp.samplers import _checkpoint as _ckpt
from flowsamp.samplers._smc_moves import KERNELS, MoveConfig, initial_step_size, move
from flowsamp.samplers._smc_resampling import resample_indices
from flowsamp.samplers.smc import PathFn, _base_fns, geometric_path
from flowsamp.train.fit import guarded_step
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["CRAFTOutput", "craft"]


class CRAFTOutput(NamedTuple):
    """Result of :func:`craft`.

    ``particles`` (N, d), ``log_weights`` (N,) normalised: the last evaluation run;
    ``log_Z``, ``log_Z_se``: over the ``num_eval_runs`` frozen-flow runs (``eval_log_Z`` each);
    ``train_log_Z``: :math:`\\ln\\hat Z` of each training run (each one is a valid estimate with
    the flows of that moment); ``params``: the flows' parameters stacked over the T steps
    (leading axis), ``opt_state`` likewise (pass both back to continue training);
    ``log_step_size`` (T,); ``ess`` (runs, T) ESS/N after each transport in the evaluation runs;
    ``acceptance`` (runs, T) MCMC acceptance; ``diagnostics["step_khat"]`` (T,) the Pareto
    :math:`\hat k` of each step's incremental weights (pooled over the runs); ``loss`` (training runs, T);
    ``pimh_acceptance``: acceptance rate of the particle-IMH chain over the evaluation runs,
    ``pimh_particles`` (num_eval_runs, d): its states (one particle per run, drawn from the
    current run's weights); ``betas``; ``wall_s``; ``diagnostics``, ``converged``, ``problems``.
    """

    particles: Array
    log_weights: Array
    log_Z: float
    log_Z_se: float
    eval_log_Z: np.ndarray
    train_log_Z: np.ndarray
    params: Any
    opt_state: Any
    log_step_size: Array
    ess: np.ndarray
    acceptance: np.ndarray
    loss: np.ndarray
    pimh_acceptance: float
    pimh_particles: np.ndarray
    betas: np.ndarray
    wall_s: float
    diagnostics: dict
    converged: bool
    problems: list


def _build_run(flow: Flow, log_prob: LogProbFn, log_base_fn: LogProbFn, path: PathFn, betas: Array,
               optimizer: optax.GradientTransformation, cfg: MoveConfig, resample_threshold: float,
               resampling: str, num_train_steps: int, transport_after_training: bool, mesh: Mesh | None):
    """The jitted annealing run. Per-particle work (``log_pi``: :math:`\log\pi_\beta(x_i)`;
    ``transport``: :math:`T(x_i)` and :math:`\log\pi_\beta(T(x_i)) + \log|\det\nabla T(x_i)|`;
    the MCMC moves) is split over ``mesh``'s devices on the particle axis; weights, ln Z,
    resampling and the loss's sum over particles (hence the flow update) are population-wide."""

    def log_pi_one(b, xi):
        return path(b, log_base_fn(xi), log_prob(xi))

    def transport_one(q, b, xi):
        y, ld = flow.forward(q, xi)
        return y, log_pi_one(b, y) + ld

    log_pi = shard_chains(jax.vmap(log_pi_one, in_axes=(None, 0)), mesh, (REPLICATED, CHAINS))
    transport = shard_chains(jax.vmap(transport_one, in_axes=(None, None, 0)), mesh,
                             (REPLICATED, REPLICATED, CHAINS))

    def run(key, x, params, opt_state, log_eps, it, train):
        n = x.shape[0]

        def body(carry, inp):
            x, log_W, log_Z = carry
            t, p, o, le, k = inp
            b_prev, b = betas[t], betas[t + 1]
            k_tr, k_res, k_mv = jax.random.split(k, 3)
            lp_prev = log_pi(b_prev, x)
            W = jnp.exp(log_W)

            def loss(q, _key):
                lp = transport(q, b, x)[1]
                lp = jnp.where(jnp.isfinite(lp), lp, jnp.asarray(-1e30, lp.dtype))
                return -jnp.sum(W * lp), {}

            def train_steps(po):
                def one(c, s):
                    q, os_, rec = guarded_step(loss, optimizer, c[0], c[1], k_tr, it * num_train_steps + s,
                                               takes_step=False)
                    return (q, os_), rec["loss"]

                (q, os_), ls = jax.lax.scan(one, po, jnp.arange(num_train_steps))
                return q, os_, ls[-1]

            new_p, new_o, last_loss = jax.lax.cond(
                train, train_steps, lambda po: (po[0], po[1], jnp.asarray(jnp.nan, x.dtype)), (p, o))
            use = new_p if transport_after_training else p
            y, lp = transport(use, b, x)
            inc = lp - lp_prev
            inc = jnp.where(jnp.isnan(inc), -jnp.inf, inc)
            log_inc = logsumexp(log_W + inc)
            log_W = log_W + inc - log_inc
            ess = kish_ess(log_W) / n
            do_res = ess < resample_threshold
            idx = jnp.where(do_res, resample_indices(k_res, log_W, resampling), jnp.arange(n))
            y = y[idx]
            log_W = jnp.where(do_res, jnp.full((n,), -math.log(n), log_W.dtype), log_W)
            y, le, acc, _ = move(k_mv, y, lambda z: log_pi_one(b, z), le, cfg, mesh)
            return (y, log_W, log_Z + log_inc), (new_p, new_o, le, ess, jnp.mean(acc), last_loss, inc)

        num_t = betas.shape[0] - 1
        keys = jax.random.split(key, num_t)
        init = (x, jnp.full((n,), -math.log(n), x.dtype), jnp.zeros((), x.dtype))
        (x, log_W, log_Z), (params, opt_state, log_eps, ess, acc, loss, inc) = jax.lax.scan(
            body, init, (jnp.arange(num_t), params, opt_state, log_eps, keys))
        return x, log_W, log_Z, params, opt_state, log_eps, ess, acc, loss, inc

    return jax.jit(run)


def _load_checkpoint(path, meta: dict, like: Any, num_t: int):
    """((params, opt_state, log_eps), train ln Z list, loss list, training runs done) from a CRAFT checkpoint."""
    stored = _io.read_meta(path, meta)
    done = stored.get("done")
    if isinstance(done, bool) or not isinstance(done, int) or not 0 < done <= meta["num_iterations"]:
        raise ValueError(f"craft: {os.fspath(path)!r} has no valid 'done' in its meta (got {done!r})")
    dt = np.dtype(like[2].dtype)
    tree = _io.load(path, {"flows": like, "train_log_Z": np.zeros((done,), np.float64),
                           "loss": np.zeros((done, num_t), dt)}, meta=meta)
    return tree["flows"], [float(v) for v in tree["train_log_Z"]], list(np.asarray(tree["loss"])), done


def craft(
    key: PRNGKey,
    log_prob: LogProbFn,
    base: Any,
    flow: Flow,
    num_particles: int,
    *,
    num_temps: int = 10,
    betas: Array | None = None,
    num_iterations: int = 200,
    num_train_steps: int = 1,
    aft: bool = False,
    optimizer: optax.GradientTransformation | None = None,
    params: Any = None,
    opt_state: Any = None,
    num_eval_runs: int = 20,
    kernel: str = "mala",
    num_mcmc_steps: int = 10,
    mass: str = "diag",
    resample_threshold: float = 0.3,
    resampling: str = "systematic",
    path: PathFn = geometric_path,
    base_log_Z: float | None = None,
    callback: Callable[[int, dict], None] | None = None,
    thresholds: Thresholds | None = None,
    warn: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = False,
    devices: Sequence[jax.Device] | None = None,
) -> CRAFTOutput:
    r"""Train flows between the steps of a fixed annealing schedule (CRAFT or AFT), then evaluate.

    Parameters
    ----------
    key
        PRNG key.
    log_prob
        :math:`\log p(x)` of one point (unnormalised; differentiable).
    base
        As in :func:`flowsamp.samplers.smc` (``sample(key, n)`` / ``log_prob``; its ``log_Z`` added).
    flow
        An ``fs.flows`` flow of dimension d; ``flow.forward(params, x)`` is the transport map.
        One parameter set per step, initialised by ``flow.init`` (the identity).
    num_particles
        ``N`` particles per run.
    num_temps, betas
        ``T`` steps of a linear schedule in :math:`\beta` (CRAFT's choice), or the schedule itself
        (``betas[0] = 0``, ``betas[-1] = 1``, increasing).
    num_iterations
        CRAFT training runs (each one optimiser step per flow); with ``aft=True``, ignored (one run).
    num_train_steps
        Optimiser steps per flow per run (AFT default 200 when ``aft=True`` and left at 1).
    aft
        AFT: one run, training each flow on the particles arriving at its step, then transporting
        with the trained flow.
    optimizer
        optax optimiser (default ``optax.adam(1e-3)``, CRAFT's learning rate order).
    params, opt_state
        Stacked per-step flow parameters / optimiser states from an earlier call (continue training).
    num_eval_runs
        Frozen-flow runs giving ``log_Z``, ``log_Z_se`` and the particle-IMH chain.
    kernel, num_mcmc_steps, mass, resample_threshold, resampling, path, base_log_Z
        As in :func:`flowsamp.samplers.smc` (resampling at ESS < 0.3 N, CRAFT's threshold).
    callback
        ``callback(iteration, {"log_Z", "loss"})`` after each training run.
    thresholds, warn
        Verdict thresholds (``min_ess`` on the final weights' ESS, ``max_khat``) and warning.
    checkpoint_path, checkpoint_every, resume
        Write the flows, optimiser states, step sizes and training curves atomically to
        ``checkpoint_path`` every ``checkpoint_every`` training runs (default a tenth of them)
        and after the last. With ``resume=True`` and an existing file, training continues from
        it (the evaluation runs are then redone) and the result equals an uninterrupted run with
        the same key (``wall_s`` apart); a checkpoint of another run raises a ``ValueError``
        naming the key.
    progress
        Show a tqdm progress bar of the runs (process 0 only): in training the run's
        :math:`\ln\hat Z` and mean loss, in evaluation its :math:`\ln\hat Z`, the smallest
        ESS/N of its steps and the mean move acceptance. Host-side between the compiled runs.
    devices
        Split the particles of every run over these devices (``jax.shard_map``,
        ``flowsamp.parallel``), each device transporting, weighting and moving
        ``num_particles / len(devices)`` of them (``num_particles`` must be a multiple of it);
        the random numbers, :math:`\ln\hat Z`, the resampling and the sum over particles in
        :math:`L_t` (hence every flow's update) stay population-wide and replicated, so only the
        order of the sums over particles differs from the single-device run: under
        ``jax_enable_x64`` the result equals it to 1e-14 (measured 7e-15 on 4 CPU devices), in
        float32 to the last bits (measured 3e-6 after 2 training runs), which long training can
        amplify. (A population resampled onto copies of one particle, ESS = 1/N, has a variance
        of 0 or of rounding size depending on the order of the sum; the move preconditioner
        treats both as no spread, so this does not split the runs.) Checkpoints do not record
        the devices: a run may resume on another device count.

    Returns
    -------
    CRAFTOutput
    """
    t0 = time.perf_counter()
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    _ckpt.check_options("craft", checkpoint_path, checkpoint_every, resume, "training runs")
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be an fs.flows Flow, got {type(flow).__name__}")
    for name, v, lo in (("num_particles", num_particles, 2), ("num_iterations", num_iterations, 0),
                        ("num_train_steps", num_train_steps, 1), ("num_eval_runs", num_eval_runs, 2),
                        ("num_mcmc_steps", num_mcmc_steps, 1), ("num_temps", num_temps, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    log_base_p, base_params, sample, log_Z_base = _base_fns(base, base_log_Z)

    def log_base_fn(x):
        return log_base_p(base_params, x)

    if sample is None:
        raise TypeError("base must have sample(key, n) or sample_and_log_prob(key)")
    if betas is None:
        betas = np.linspace(0.0, 1.0, num_temps + 1)
    betas = np.asarray(betas, np.float64)
    if betas.ndim != 1 or betas[0] != 0.0 or betas[-1] != 1.0 or np.any(np.diff(betas) <= 0):
        raise ValueError("betas must increase strictly from 0 to 1")
    num_t = betas.size - 1
    if aft and num_train_steps == 1:
        num_train_steps = 200
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    key = as_key(key)
    k_init, k_train, k_eval, k_u = jax.random.split(key, 4)
    x_probe = jnp.asarray(sample(k_init, 2))
    dtype, d = x_probe.dtype, x_probe.shape[1]
    if flow.dim != d:
        raise ValueError(f"flow.dim {flow.dim} != the base's dimension {d}")
    if params is None:
        params = jax.vmap(flow.init)(jax.random.split(k_init, num_t))
    if opt_state is None:
        opt_state = jax.vmap(optimizer.init)(params)
    log_eps = jnp.full((num_t,), math.log(initial_step_size(kernel, d)), dtype)
    cfg = MoveConfig(kernel, num_mcmc_steps, 10, mass)
    mesh = None
    if devices is not None:
        mesh = chain_mesh(devices)
        check_divisible(num_particles, mesh, "particles")
    run = _build_run(flow, log_prob, log_base_fn, path, jnp.asarray(betas, dtype), optimizer, cfg,
                     float(resample_threshold), resampling, int(num_train_steps), bool(aft), mesh)
    train_lz, losses = [], []
    num_runs = 1 if aft else num_iterations
    start, ck = 0, None
    if checkpoint_path is not None:
        every = int(checkpoint_every) if checkpoint_every is not None else max(1, num_runs // 10)
        meta = {"sampler": "craft", "num_particles": num_particles, "betas": [float(b) for b in betas],
                "num_iterations": num_runs, "num_train_steps": int(num_train_steps), "aft": bool(aft),
                "kernel": kernel, "num_mcmc_steps": num_mcmc_steps, "mass": mass,
                "resample_threshold": float(resample_threshold), "resampling": resampling,
                "dtype": str(np.dtype(dtype)), "key": [int(v) for v in _ckpt.key_data(key).ravel()],
                "initial_params": _ckpt.fingerprint((params, opt_state)),
                "target": _ckpt.fingerprint(jax.device_get(jax.vmap(log_prob)(x_probe))),
                "base": _ckpt.fingerprint(jax.device_get(jax.vmap(log_base_fn)(x_probe)))}
        ck = (checkpoint_path, every, meta)
        if _ckpt.should_resume(checkpoint_path, resume):
            (params, opt_state, log_eps), train_lz, losses, start = _load_checkpoint(
                checkpoint_path, meta, (params, opt_state, log_eps), num_t)
    bar = ProgressBar(progress, num_runs + num_eval_runs, "craft training", "run", start)
    for it in range(start, num_runs):
        k = jax.random.fold_in(k_train, it)
        x0 = jnp.asarray(sample(jax.random.fold_in(k, 1), num_particles), dtype)
        _, _, lz, params, opt_state, log_eps, _, _, loss, _ = run(k, x0, params, opt_state, log_eps, it, True)
        train_lz.append(float(lz) + log_Z_base)
        losses.append(np.asarray(loss))
        if callback is not None:
            callback(it, {"log_Z": train_lz[-1], "loss": losses[-1]})
        if bar:
            bar.update(1, log_Z=train_lz[-1], loss=float(np.mean(losses[-1])))
        if ck is not None and ((it + 1) % ck[1] == 0 or it + 1 == num_runs):
            _io.save(ck[0], {"flows": (params, opt_state, log_eps), "train_log_Z": np.asarray(train_lz, np.float64),
                             "loss": np.stack(losses)}, meta={**ck[2], "done": it + 1})
    eval_lz, ess, acc, khats = [], [], [], []
    pimh_x, state, n_acc = [], None, 0
    log_u = np.log(np.asarray(jax.random.uniform(k_u, (num_eval_runs,), dtype)))
    bar.phase("craft evaluation")
    for r in range(num_eval_runs):
        k = jax.random.fold_in(k_eval, r)
        x0 = jnp.asarray(sample(jax.random.fold_in(k, 1), num_particles), dtype)
        x, log_W, lz, _, _, _, e, a, _, kh = run(k, x0, params, opt_state, log_eps, 0, False)
        khats.append(np.asarray(kh))
        eval_lz.append(float(lz) + log_Z_base)
        ess.append(np.asarray(e)), acc.append(np.asarray(a))
        pick = x[jax.random.categorical(jax.random.fold_in(k, 2), log_W)]
        proposed = FlowIMHState(pick, jnp.asarray(eval_lz[-1], dtype), jnp.zeros((), dtype))
        if state is None:
            state = proposed
        else:
            state, info = imh_test(jnp.asarray(log_u[r], dtype), state, proposed)
            n_acc += int(info.is_accepted)
        pimh_x.append(np.asarray(state.position))
        if bar:
            bar.update(1, log_Z=eval_lz[-1], ess=float(np.min(ess[-1])), acc=float(np.mean(acc[-1])))
    bar.close()
    eval_lz = np.asarray(eval_lz)
    log_Z, log_Z_se = (float(v) for v in log_evidence(jnp.asarray(eval_lz)))
    iv = importance_verdict(log_W, thresholds=thresholds)
    problems = list(iv.problems)
    # per step, pooled over the evaluation runs (each run's step-t particles approximate pi_{t-1})
    khat = np.asarray(jax.vmap(pareto_k)(jnp.asarray(np.concatenate(khats, axis=1))))
    th = thresholds if thresholds is not None else Thresholds()
    if np.any(khat > th.max_khat):
        t = int(np.argmax(khat))
        problems.append(
            f"incremental weights heavy-tailed at step {t} (Pareto k-hat {khat[t]:.2f} > {th.max_khat}): the flow "
            "under-covers the next density, ln Z is likely biased low and its SE too small")
    sd = float(np.std(eval_lz, ddof=1))
    if sd > 1.0:
        problems.append(f"the {num_eval_runs} evaluation runs' ln Z disagree (sd {sd:.3g} > 1 nat): "
                        "the estimate and its SE are not reliable")
    diag = {**iv.diagnostics, "eval_log_Z_sd": sd, "step_khat": khat, "max_step_khat": float(khat.max()), "min_step_ess": float(np.min(ess)),
            "min_acceptance": float(np.min(acc)), "pimh_acceptance": n_acc / max(num_eval_runs - 1, 1)}
    verdict = Verdict(diag, not problems, problems)
    if warn:
        warn_if_not_converged(verdict, "craft")
    return CRAFTOutput(
        x, log_W, log_Z, log_Z_se, eval_lz, np.asarray(train_lz), params, opt_state, log_eps, np.stack(ess),
        np.stack(acc), np.stack(losses) if losses else np.zeros((0, num_t)), diag["pimh_acceptance"],
        np.stack(pimh_x), betas, time.perf_counter() - t0, *verdict,
    )
