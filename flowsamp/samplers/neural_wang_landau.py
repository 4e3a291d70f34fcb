r"""Neural and hybrid Wang-Landau: WL walkers moved by an autoregressive net, and the Σ 1/q density of states.

The talk's algorithm (Weigel, Riedel & Zierenberg, NTZ Leipzig 2024), with the global
autoregressive net :math:`q_\theta` as the proposal (the autoencoder's semi-local proposal is
the special case :math:`q(s'\mid s)`; here :math:`q(s' \mid s) = q_\theta(s')`).  One iteration:

1. (``local_sweeps > 0``, the **hybrid**) every walker makes ``local_sweeps`` classic single-spin
   WL sweeps (:func:`flowsamp.samplers.wang_landau.build_sweeps`, the classic engine's own code,
   :math:`\ln g(E) \mathrel{+}= \ln f` after every trial);
2. a batch of ``M`` states :math:`s'_k \sim q_\theta`, one per walker, and

   * ``update="walkers"`` (exact, the semi-local scheme's acceptance with a global proposal):
     walker k moves to :math:`s'_k` with

     .. math:: \alpha = \min\left[1, \frac{g(E)\,q_\theta(s)}{g(E')\,q_\theta(s')}\right]

     (an independence Metropolis-Hastings step whose stationary law at fixed g and θ is
     :math:`p_g(s) \propto 1/g(E(s))`), then :math:`\ln g(E_k) \mathrel{+}= \ln f` at every
     walker's level;
   * ``update="weights"`` (the talk's first algorithm, no walkers):
     :math:`\ln g(E(s'_k)) \mathrel{+}= M w_k \ln f` with the self-normalised weights
     :math:`w_k = \hat w_k / \sum_j \hat w_j`, :math:`\hat w_k = 1/(g(E(s'_k))\, q_\theta(s'_k))`;
3. one optimiser step: ``loss="reverse_kl"`` (the talk's, and VAN's) is
   :math:`\mathrm{KL}(q_\theta \,\|\, p_g)` on the proposals with the score-function gradient
   and batch-mean baseline; ``loss="forward_kl"`` is maximum likelihood
   :math:`-\frac1M\sum_k \ln q_\theta(s_k)` on the walkers' current states, which sample
   :math:`p_g` (the talk's "supervised training"; no sampling in the gradient, no mode collapse);
   with ``stop_training="plateau"`` training stops once the neural acceptance has not improved
   by 0.01 for three checks, so the net's cost afterwards is its draws alone;
4. ln f is halved as soon as every level has been visited since the last change (checked after
   every iteration, on device) and follows :math:`1/t` (Belardinelli-Pereyra, t = ln g updates /
   levels) once it falls below it, as ``wang_landau(schedule="1/t")``.

The proposals are independent draws of nets fixed before each draw, so besides the WL estimate
the pooled estimator :math:`\hat g(E) = n^{-1}\sum_k \mathbb 1[E_k = E]/q_{\theta_k}(s_k)`
(:func:`flowsamp.estimators.dos_from_samples`) gives an unbiased, absolutely normalised
ln g with standard errors.  ``result.log_g`` is the WL estimate (ln g(E_0) = ln q, like
``wang_landau``); ``result.dos`` is the Σ 1/q estimate.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowsamp._progress import ProgressBar
from flowsamp.autoregressive import AutoregressiveNet
from flowsamp.base import as_key, metropolis_test
from flowsamp.estimators.dos import DOSEstimate, dos_from_samples
from flowsamp.estimators.verdict import Verdict, warn_if_not_converged
from flowsamp.samplers.flat_histogram import (
    Compensated,
    compensated,
    compensated_fold,
    compensated_value,
    energy_bins,
    level_index,
    normalize_log_g,
    reference_log_g,
    wl_log_acceptance,
)
from flowsamp.samplers._wl_schedule import effective_log_f, schedule_step
from flowsamp.samplers.van import default_net
from flowsamp.samplers.wang_landau import WangLandauState, _flatness, build_sweeps
from flowsamp.train.fit import guarded_step
from flowsamp.types import PRNGKey

__all__ = ["NeuralWangLandauResult", "neural_wang_landau", "build_iterations", "initial_state"]

LOSSES = ("reverse_kl", "forward_kl")
UPDATES = ("walkers", "weights")
STOP_TRAINING = ("plateau", "never")


class NeuralWangLandauResult(NamedTuple):
    """Output of :func:`neural_wang_landau`.

    ``energies`` (K,), ``log_g`` (K,) the WL estimate (ln g(E_0) = ln q), ``dos`` the pooled
    Σ 1/q :class:`~flowsamp.estimators.dos.DOSEstimate` (absolute ln g with SEs), ``params`` of
    ``net``; per check: ``times`` (iterations), ``errors`` (mean |Δ ln g| of the WL estimate vs the
    exact one, NaN without it), ``errors_dos`` (same for Σ 1/q over the levels drawn, inf if a level
    was never drawn), ``acceptance`` (neural proposals; Kish ESS / M of the weights for
    ``update="weights"``), ``log_f``, ``elapsed`` (s, compile included), ``training`` (whether the
    net was still trained in that chunk); ``state`` (the :class:`WangLandauState` of the walkers),
    ``diagnostics``, ``converged``, ``problems``.
    """

    energies: np.ndarray
    log_g: np.ndarray
    dos: DOSEstimate
    params: Any
    net: AutoregressiveNet
    times: np.ndarray
    errors: np.ndarray
    errors_dos: np.ndarray
    acceptance: np.ndarray
    log_f: np.ndarray
    elapsed: np.ndarray
    training: np.ndarray
    state: WangLandauState
    diagnostics: dict
    converged: bool
    problems: list


def initial_state(target: Any, num_walkers: int, num_levels: int, log_f_initial: float = 1.0) -> WangLandauState:
    """Walkers at the ground state, ln g = 0, ln f = ``log_f_initial``, one group."""
    fdt = jnp.result_type(float)
    return WangLandauState(
        positions=jnp.broadcast_to(target.ground_state(), (num_walkers, target.L, target.L)),
        level=jnp.zeros(num_walkers, jnp.int32),
        log_g=compensated(jnp.zeros((1, num_levels), fdt)),
        histogram=jnp.zeros((1, num_levels), jnp.int32),
        log_f=jnp.full(1, log_f_initial, fdt),
        num_updates=compensated(jnp.zeros(1, fdt)),
        one_over_t=jnp.zeros(1, bool),
        active=jnp.ones(1, bool),
    )


def build_iterations(target: Any, net: AutoregressiveNet, optimizer: optax.GradientTransformation,
                     num_walkers: int, num_iterations: int, *, local_sweeps: int = 0,
                     loss: str = "reverse_kl", update: str = "walkers", log_f_final: float = 1e-6,
                     q_correction: bool = True, neural_every: int = 1):
    """Jitted ``run(key, state, params, opt_state, step, train) -> (state, params, opt_state, step,
    (proposed levels (T, M), proposed log q (T, M), acceptance (T,)))`` doing ``num_iterations``
    iterations of the module docstring.  ``train`` (bool) switches the optimiser step on or off
    without recompiling; with ``state.active`` false ln f = 0 and g stays fixed, so the walkers
    make an exact MCMC for :math:`p_g` (the invariance tests use this).  ``q_correction=False``
    drops :math:`q(s)/q(s')` from the test (wrong; for the tests' power check only).
    ``neural_every`` k: neural proposals (and training) in every k-th iteration only; 0: never
    (classic walkers on this driver's schedule, the control of a benchmark).
    """
    bins = energy_bins(target.energy_levels)
    K = bins.levels.size
    M = int(num_walkers)
    masks = np.ones((1, K), bool)
    sweeps = (build_sweeps(target, bins, np.zeros(M, np.int32), np.array([[0, K - 1]]), local_sweeps)
              if local_sweeps > 0 else None)

    def wl_add(state, levels, amount, log_f):
        lg = compensated_fold(Compensated(state.log_g.hi, state.log_g.lo.at[0, levels].add(
            (amount * log_f[0]).astype(state.log_g.lo.dtype))))
        return state._replace(
            log_g=lg, histogram=state.histogram.at[0, levels].add(1),
            num_updates=compensated_fold(Compensated(state.num_updates.hi, state.num_updates.lo + M)))

    def one(carry, xs):
        state, params, opt_state, step = carry
        key, train = xs
        k_loc, k_prop, k_u, k_fit = jax.random.split(key, 4)
        if sweeps is not None:  # 1. classic single-spin WL sweeps (the classic engine's kernel)
            state = sweeps(k_loc, state)
        log_g = compensated_value(state.log_g)[0]
        n_upd = compensated_value(state.num_updates)
        log_f = jnp.where(state.one_over_t, K / jnp.maximum(n_upd, 1.0), state.log_f)
        log_f = jnp.where(state.active, log_f, 0.0)

        def neural(args):
            state, params, opt_state = args
            # 2. a batch of proposals from the net
            s_new, lq_new = net.sample_and_log_prob(params, k_prop, M)
            lev_new = level_index(bins, target.energy(s_new))
            valid = lev_new >= 0
            safe_new = jnp.maximum(lev_new, 0)
            if update == "walkers":
                lq_old = net.log_prob(params, state.positions).astype(lq_new.dtype)
                log_r = wl_log_acceptance(log_g[state.level], log_g[safe_new],
                                          (lq_old - lq_new) if q_correction else 0.0)
                log_u = jnp.log(jax.random.uniform(k_u, (M,), lq_new.dtype))
                acc, rate, _ = metropolis_test(log_u, jnp.where(valid, log_r, -jnp.inf))
                state = state._replace(
                    positions=jnp.where(acc[:, None, None], s_new.astype(state.positions.dtype), state.positions),
                    level=jnp.where(acc, safe_new, state.level))
                state = wl_add(state, state.level, 1.0, log_f)
                stat = jnp.mean(rate)
            else:
                log_w = jnp.where(valid, -log_g[safe_new] - lq_new, -jnp.inf)
                w = jax.nn.softmax(log_w)
                state = wl_add(state, safe_new, jnp.where(valid, M * w, 0.0), log_f)
                stat = 1.0 / (M * jnp.sum(w**2))  # Kish ESS / M
            # 3. one optimiser step
            log_g_now = jax.lax.stop_gradient(compensated_value(state.log_g)[0])
            walkers = state.positions

            def objective(p, _key):
                if loss == "forward_kl":
                    return -jnp.mean(net.log_prob(p, walkers)), {}
                lq = net.log_prob(p, s_new)
                f = jax.lax.stop_gradient(lq + log_g_now[safe_new])
                return jnp.mean(jnp.where(valid, (f - jnp.mean(f)) * lq, 0.0)), {}

            def fit(po):
                p, o, _ = guarded_step(objective, optimizer, *po, k_fit, step, takes_step=False)
                return p, o

            params, opt_state = jax.lax.cond(train, fit, lambda po: po, (params, opt_state))
            return state, params, opt_state, lev_new, lq_new, jnp.asarray(stat, log_g.dtype)

        if neural_every == 0:
            lev_new, lq_new = -jnp.ones(M, jnp.int32), jnp.zeros(M, log_g.dtype)
            stat = jnp.asarray(jnp.nan, log_g.dtype)
        else:
            def skip(args):
                return (*args, -jnp.ones(M, jnp.int32), jnp.zeros(M, log_g.dtype), jnp.asarray(jnp.nan, log_g.dtype))
            state, params, opt_state, lev_new, lq_new, stat = jax.lax.cond(
                step % neural_every == 0, neural, skip, (state, params, opt_state))
        # 4. ln f schedule
        state = schedule_step(state, masks, log_f_final)
        return (state, params, opt_state, step + 1), (lev_new, lq_new, stat)

    @jax.jit
    def run(key, state, params, opt_state, step, train):
        keys = jax.random.split(key, num_iterations)
        flags = jnp.broadcast_to(jnp.asarray(train, bool), (num_iterations,))
        (state, params, opt_state, step), out = jax.lax.scan(one, (state, params, opt_state, step), (keys, flags))
        return state, params, opt_state, step, out

    return run


def neural_wang_landau(
    key: PRNGKey,
    target: Any,
    net: AutoregressiveNet | None = None,
    *,
    batch_size: int = 256,
    max_iterations: int = 4_000,
    check_every: int = 50,
    local_sweeps: int = 0,
    loss: str = "reverse_kl",
    update: str = "walkers",
    stop_training: str = "never",
    neural_every: int = 1,
    learning_rate: float = 1e-3,
    log_f_initial: float = 1.0,
    log_f_final: float = 1e-6,
    burn_in: float = 0.25,
    exact_log_g: Any = "auto",
    stop_error: float | None = None,
    max_seconds: float | None = None,
    params: Any = None,
    progress: bool = False,
) -> NeuralWangLandauResult:
    """Neural (or, with ``local_sweeps > 0``, hybrid) Wang-Landau estimate of ln g(E).

    Parameters
    ----------
    key : PRNGKey
    target
        ``fs.targets.ising`` / ``potts``.
    net : AutoregressiveNet, optional
        Default :func:`flowsamp.samplers.van.default_net` (symmetrised MADE).
    batch_size : int
        Walkers = proposals (and training batch) per iteration, ``M``.
    max_iterations, check_every : int
        Budget in iterations, and iterations per jitted chunk (host-side checks).
    local_sweeps : int
        Classic single-spin WL sweeps per walker per iteration (0: purely neural).
    loss : {"reverse_kl", "forward_kl"}
        Training objective (module docstring); "forward_kl" needs ``update="walkers"``.
    update : {"walkers", "weights"}
        Exact WL-IMH walkers, or the talk's normalised-weight update of g (no walkers).
    stop_training : {"never", "plateau"}
        Train every iteration, or stop once the neural acceptance plateaus.
    neural_every : int
        Neural proposals (and training) every ``neural_every``-th iteration; 0: never (the
        classic walkers on this schedule alone, a benchmark's control).
    learning_rate : float
        Adam step size.
    log_f_initial, log_f_final : float
        Starting ln f, and the 1/t value at which the run stops.
    burn_in : float
        Fraction of the iterations done so far whose proposals are left out of Σ 1/q.
    exact_log_g
        ``"auto"`` (``target.exact_log_dos()`` when ``q**L <= 256``), ``None`` or ``(energies, log_g)``.
    stop_error : float, optional
        Stop when the WL estimate's mean |Δ ln g| vs ``exact_log_g`` is at most this.
    max_seconds : float, optional
        Wall-time budget (checked between chunks, compilation included).
    params : optional
        Starting parameters of ``net`` (e.g. a VAN trained at some β).
    progress : bool
        Show a tqdm counter of the iterations (process 0 only; the run ends with ln f) with,
        after every jitted chunk, ln f, the neural proposals' acceptance, the flatness
        :math:`\min H/\overline H` of the histogram, whether the net still trains and, with a
        reference, the error. Host-side between the chunks: the numbers are the same with it
        on or off.

    Returns
    -------
    NeuralWangLandauResult
    """
    for name, v in (("batch_size", batch_size), ("max_iterations", max_iterations),
                    ("check_every", check_every)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(local_sweeps, bool) or not isinstance(local_sweeps, (int, np.integer)) or local_sweeps < 0:
        raise ValueError(f"local_sweeps must be an int >= 0, got {local_sweeps!r}")
    for name, v, allowed in (("loss", loss, LOSSES), ("update", update, UPDATES),
                             ("stop_training", stop_training, STOP_TRAINING)):
        if v not in allowed:
            raise ValueError(f"unknown {name} {v!r}; choose one of {allowed}")
    if update == "weights" and (loss == "forward_kl" or local_sweeps > 0):
        raise ValueError("update='weights' has no walkers: use loss='reverse_kl' and local_sweeps=0")
    if isinstance(neural_every, bool) or not isinstance(neural_every, (int, np.integer)) or neural_every < 0:
        raise ValueError(f"neural_every must be an int >= 0, got {neural_every!r}")
    if neural_every == 0 and local_sweeps == 0:
        raise ValueError("neural_every=0 needs local_sweeps > 0 (nothing would move the walkers)")
    if not 0.0 <= burn_in < 1.0:
        raise ValueError(f"burn_in must be in [0, 1), got {burn_in}")
    if not (log_f_initial > 0 and log_f_final > 0):
        raise ValueError("log_f_initial and log_f_final must be > 0")
    net = default_net(target) if net is None else net
    if net.L != target.L or net.num_states != target.num_states:
        raise ValueError(f"net is for L={net.L}, q={net.num_states}; target has L={target.L}, q={target.num_states}")
    t0 = time.perf_counter()
    bins = energy_bins(target.energy_levels)
    K = bins.levels.size
    ref = reference_log_g(target, exact_log_g)
    log_g0 = math.log(target.num_states)
    key = as_key(key)
    k_init, key = jax.random.split(key)
    params = net.init(k_init) if params is None else params
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))
    opt_state = optimizer.init(params)
    state = initial_state(target, batch_size, K, log_f_initial)
    run = build_iterations(target, net, optimizer, batch_size, check_every, local_sweeps=local_sweeps,
                           loss=loss, update=update, log_f_final=log_f_final,
                           neural_every=int(neural_every))
    step = jnp.int32(0)
    levs, lqs = [], []
    times, errors, errors_dos, accs, log_fs, elapsed, trained = [], [], [], [], [], [], []
    train, best, stale = True, -1.0, 0
    it = 0
    bar = ProgressBar(progress, None, "neural_wang_landau", "it")
    while it < max_iterations:
        key, sub = jax.random.split(key)
        state, params, opt_state, step, (lev, lq, acc) = run(sub, state, params, opt_state, step, train)
        it += check_every
        levs.append(np.asarray(lev).reshape(-1))
        lqs.append(np.asarray(lq, np.float64).reshape(-1))
        accs.append(float(np.nanmean(acc)) if np.any(np.isfinite(acc)) else float("nan"))
        trained.append(train)
        log_fs.append(float(effective_log_f(state, np.ones((1, K), bool))[0]))
        est = normalize_log_g(np.asarray(compensated_value(state.log_g)[0], np.float64), log_g0)
        times.append(it)
        errors.append(float(np.mean(np.abs(est - ref[1]))) if ref is not None else np.nan)
        elapsed.append(time.perf_counter() - t0)
        if bar:
            bar.set(it, ln_f=log_fs[-1], acc=accs[-1], flat=float(_flatness(state.histogram, np.ones((1, K), bool))[0]),
                    train=train, err=errors[-1] if ref is not None else None)
        if train and stop_training == "plateau":
            stale = 0 if accs[-1] > best + 0.01 else stale + 1
            best = max(best, accs[-1])
            train = stale < 3
        if not bool(state.active[0]) or (stop_error is not None and errors[-1] <= stop_error):
            break
        if max_seconds is not None and elapsed[-1] >= max_seconds:
            break
    bar.close()
    elapsed_all = time.perf_counter() - t0
    first = int(burn_in * len(levs))
    lev_all, lq_all = np.concatenate(levs[first:]), np.concatenate(lqs[first:])
    good = lev_all >= 0
    if good.sum() < 2:  # no neural proposals (neural_every=0)
        lev_all, lq_all, good = np.zeros(2, int), np.zeros(2), np.ones(2, bool)
    dos = dos_from_samples(bins.levels[lev_all[good]], lq_all[good], bins.levels)
    if ref is not None:
        errors_dos.append(float(np.mean(np.abs(dos.log_g - ref[1]))) if np.all(dos.counts > 0) else np.inf)
    est = normalize_log_g(np.asarray(compensated_value(state.log_g)[0], np.float64), log_g0)
    problems = []
    if bool(state.active[0]) and not (stop_error is not None and errors and errors[-1] <= stop_error):
        problems.append(f"ln f did not fall below log_f_final = {log_f_final:g} within {it} iterations "
                        f"(ln f {log_fs[-1]:.3g})")
    missing = int(np.sum(dos.counts == 0))
    if missing:
        problems.append(f"{missing} of {K} energy levels were never proposed by the net (Σ 1/q undefined there)")
    if accs and accs[-1] < 0.01 and neural_every:
        problems.append(f"neural acceptance {accs[-1]:.3f}: the net is not helping")
    diag = {"num_iterations": it, "acceptance": accs[-1] if accs else float("nan"),
            "final_log_f": log_fs[-1] if log_fs else float("nan"),
            "error": errors[-1] if errors else float("nan"),
            "error_dos": errors_dos[-1] if errors_dos else float("nan"),
            "levels_missing": missing, "elapsed": elapsed_all,
            "training_iterations": int(check_every * sum(trained))}
    verdict = Verdict(diag, not problems, problems)
    warn_if_not_converged(verdict, "neural_wang_landau")
    return NeuralWangLandauResult(
        bins.levels, est, dos, params, net, np.asarray(times), np.asarray(errors),
        np.asarray(errors_dos), np.asarray(accs), np.asarray(log_fs), np.asarray(elapsed),
        np.asarray(trained), state, verdict.diagnostics, verdict.converged, verdict.problems)
