r"""Neural Wang-Landau: WL walkers moved by an autoregressive net, and the Σ 1/q density of states.

The talk's algorithm (Weigel, Riedel & Zierenberg, NTZ Leipzig 2024), with the global
autoregressive net :math:`q_\theta` as the proposal (the autoencoder's semi-local proposal is
the special case :math:`q(s'\mid s)`; here :math:`q(s' \mid s) = q_\theta(s')`):

1. ``M`` walkers start at the ground state; :math:`\ln g(E) = 0`, :math:`\ln f = 1`.
2. Every walker proposes :math:`s' \sim q_\theta` and accepts with

   .. math:: \alpha = \min\left[1, \frac{g(E)\,q_\theta(s)}{g(E')\,q_\theta(s')}\right];

   optionally (``local_sweeps > 0``, the **hybrid**) it also makes classic single-spin WL sweeps
   (:func:`flowsamp.samplers.wang_landau.build_sweeps`, the same code as classic WL).
3. :math:`\ln g(E) \mathrel{+}= \ln f` at every walker's level, :math:`H(E) \mathrel{+}= 1`.
4. One optimiser step of :math:`\mathrm{KL}(q_\theta \,\|\, p_g)`, :math:`p_g(s) \propto 1/g(E(s))`,
   on the batch of proposals (score-function gradient with baseline, as in VAN).
5. ln f is halved when every level has been visited since the last change, and follows
   :math:`1/t` (Belardinelli-Pereyra) once it falls below it, as ``wang_landau(schedule="1/t")``.

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

from flowsamp.autoregressive import AutoregressiveNet
from flowsamp.base import as_key, metropolis_test
from flowsamp.estimators.dos import DOSEstimate, dos_from_samples
from flowsamp.estimators.verdict import Verdict, warn_if_not_converged
from flowsamp.samplers.flat_histogram import (
    reference_log_g,
    Compensated,
    compensated,
    compensated_fold,
    compensated_value,
    energy_bins,
    level_index,
    normalize_log_g,
    wl_log_acceptance,
)
from flowsamp.samplers._wl_schedule import one_over_t_schedule
from flowsamp.samplers.van import default_net
from flowsamp.samplers.wang_landau import WangLandauState, build_sweeps
from flowsamp.train.fit import guarded_step
from flowsamp.types import PRNGKey

__all__ = ["NeuralWangLandauResult", "neural_wang_landau"]


class NeuralWangLandauResult(NamedTuple):
    """Output of :func:`neural_wang_landau`.

    ``energies`` (K,), ``log_g`` (K,) the WL estimate (ln g(E_0) = ln q), ``dos`` the pooled
    Σ 1/q :class:`~flowsamp.estimators.dos.DOSEstimate` (absolute ln g with SEs), ``params`` of
    ``net``; per check: ``times`` (iterations), ``errors`` (mean |Δ ln g| of the WL estimate vs the
    exact one, NaN without it), ``errors_dos`` (same for Σ 1/q over the levels drawn, inf if a level
    was never drawn), ``acceptance`` (neural proposals), ``log_f``, ``elapsed`` (s); ``state`` (the
    :class:`WangLandauState` of the walkers), ``diagnostics``, ``converged``, ``problems``.
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
    state: WangLandauState
    diagnostics: dict
    converged: bool
    problems: list


def _build_iterations(target, net, bins, optimizer, batch_size, local_sweeps, num_iterations):
    """Jitted ``run(key, state, params, opt_state, step) -> (..., (levels, log_q, accepted))``."""
    K = bins.levels.size
    sweeps = (build_sweeps(target, bins, np.zeros(batch_size, np.int32), np.array([[0, K - 1]]),
                           local_sweeps) if local_sweeps > 0 else None)
    sizes = float(K)

    def one(carry, key):
        state, params, opt_state, step = carry
        k_prop, k_u, k_fit, k_loc = jax.random.split(key, 4)
        log_g = compensated_value(state.log_g)[0]
        # 2. neural proposals for every walker, WL-IMH test
        s_new, lq_new = net.sample_and_log_prob(params, k_prop, batch_size)
        lev_new = level_index(bins, target.energy(s_new))
        lq_old = net.log_prob(params, state.positions).astype(lq_new.dtype)
        log_r = wl_log_acceptance(log_g[state.level], log_g[lev_new], lq_old - lq_new)
        log_u = jnp.log(jax.random.uniform(k_u, (batch_size,), lq_new.dtype))
        acc, _, _ = metropolis_test(log_u, jnp.where(lev_new >= 0, log_r, -jnp.inf))
        positions = jnp.where(acc[:, None, None], s_new.astype(state.positions.dtype), state.positions)
        level = jnp.where(acc, lev_new, state.level)
        # 3. WL update at every walker's level (ln f: classic stage or 1/t)
        n_upd = compensated_value(state.num_updates)
        log_f = jnp.where(state.one_over_t, sizes / jnp.maximum(n_upd, 1.0), state.log_f)
        log_f = jnp.where(state.active, log_f, 0.0)
        lg = compensated_fold(Compensated(state.log_g.hi, state.log_g.lo.at[0, level].add(
            log_f[0].astype(state.log_g.lo.dtype))))
        state = state._replace(
            positions=positions, level=level, log_g=lg,
            histogram=state.histogram.at[0, level].add(1),
            num_updates=compensated_fold(Compensated(state.num_updates.hi,
                                                     state.num_updates.lo + batch_size)),
        )
        # 2b. hybrid: classic single-spin WL sweeps (the same kernel as wang_landau)
        if sweeps is not None:
            state = sweeps(k_loc, state)
        # 4. one step of KL(q || p_g), p_g ~ 1/g(E), on the batch of proposals
        log_g_now = jax.lax.stop_gradient(compensated_value(state.log_g)[0])

        def loss(p, _key):
            lq = net.log_prob(p, s_new)
            f = jax.lax.stop_gradient(lq + log_g_now[jnp.maximum(lev_new, 0)])
            return jnp.mean((f - jnp.mean(f)) * lq), {}

        params, opt_state, _ = guarded_step(loss, optimizer, params, opt_state, k_fit, step,
                                            takes_step=False)
        return (state, params, opt_state, step + 1), (lev_new, lq_new, acc)

    @jax.jit
    def run(key, state, params, opt_state, step):
        (state, params, opt_state, step), out = jax.lax.scan(
            one, (state, params, opt_state, step), jax.random.split(key, num_iterations))
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
    learning_rate: float = 1e-3,
    log_f_initial: float = 1.0,
    log_f_final: float = 1e-6,
    burn_in: float = 0.25,
    exact_log_g: Any = "auto",
    stop_error: float | None = None,
    params: Any = None,
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
        Budget in iterations, and iterations per jitted chunk (host-side schedule and checks).
    local_sweeps : int
        Classic single-spin WL sweeps per walker per iteration (0: purely neural).
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
    params : optional
        Starting parameters of ``net`` (e.g. a VAN trained at some β).

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
    if not 0.0 <= burn_in < 1.0:
        raise ValueError(f"burn_in must be in [0, 1), got {burn_in}")
    if not (log_f_initial > 0 and log_f_final > 0):
        raise ValueError("log_f_initial and log_f_final must be > 0")
    net = default_net(target) if net is None else net
    if net.L != target.L or net.num_states != target.num_states:
        raise ValueError(f"net is for L={net.L}, q={net.num_states}; target has L={target.L}, q={target.num_states}")
    bins = energy_bins(target.energy_levels)
    K = bins.levels.size
    ref = reference_log_g(target, exact_log_g)
    log_g0 = math.log(target.num_states)
    key = as_key(key)
    k_init, key = jax.random.split(key)
    params = net.init(k_init) if params is None else params
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))
    opt_state = optimizer.init(params)
    fdt = jnp.result_type(float)
    state = WangLandauState(
        positions=jnp.broadcast_to(target.ground_state(), (batch_size, target.L, target.L)),
        level=jnp.zeros(batch_size, jnp.int32),
        log_g=compensated(jnp.zeros((1, K), fdt)),
        histogram=jnp.zeros((1, K), jnp.int32),
        log_f=jnp.full(1, log_f_initial, fdt),
        num_updates=compensated(jnp.zeros(1, fdt)),
        one_over_t=jnp.zeros(1, bool),
        active=jnp.ones(1, bool),
    )
    run = _build_iterations(target, net, bins, optimizer, batch_size, local_sweeps, check_every)
    step = jnp.int32(0)
    levs, lqs = [], []
    times, errors, errors_dos, accs, log_fs, elapsed = [], [], [], [], [], []
    t0 = time.perf_counter()
    it = 0
    while it < max_iterations:
        key, sub = jax.random.split(key)
        state, params, opt_state, step, (lev, lq, acc) = run(sub, state, params, opt_state, step)
        it += check_every
        levs.append(np.asarray(lev).reshape(-1))
        lqs.append(np.asarray(lq, np.float64).reshape(-1))
        accs.append(float(np.mean(acc)))
        state, eff = one_over_t_schedule(state, np.ones((1, K), bool), log_f_final)
        log_fs.append(float(eff[0]))
        est = normalize_log_g(np.asarray(compensated_value(state.log_g)[0], np.float64), log_g0)
        times.append(it)
        errors.append(float(np.mean(np.abs(est - ref[1]))) if ref is not None else np.nan)
        elapsed.append(time.perf_counter() - t0)
        if not bool(state.active[0]) or (stop_error is not None and errors[-1] <= stop_error):
            break
    elapsed_all = time.perf_counter() - t0
    first = int(burn_in * len(levs))
    lev_all, lq_all = np.concatenate(levs[first:]), np.concatenate(lqs[first:])
    good = lev_all >= 0
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
    if accs and accs[-1] < 0.01:
        problems.append(f"neural acceptance {accs[-1]:.3f}: the net is not helping")
    diag = {"num_iterations": it, "acceptance": accs[-1] if accs else float("nan"),
            "final_log_f": log_fs[-1] if log_fs else float("nan"),
            "error": errors[-1] if errors else float("nan"),
            "error_dos": errors_dos[-1] if errors_dos else float("nan"),
            "levels_missing": missing, "elapsed": elapsed_all}
    verdict = Verdict(diag, not problems, problems)
    warn_if_not_converged(verdict, "neural_wang_landau")
    return NeuralWangLandauResult(
        bins.levels, est, dos, params, net, np.asarray(times), np.asarray(errors),
        np.asarray(errors_dos), np.asarray(accs), np.asarray(log_fs), np.asarray(elapsed), state,
        verdict.diagnostics, verdict.converged, verdict.problems)
