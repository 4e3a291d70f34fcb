r"""Replica-exchange Wang-Landau (Vogel, Li, Wüst & Landau, PRL 110, 210603 (2013); PRE 90, 023302 (2014)).

The energy range is split into ``num_windows`` overlapping windows; each window has
``walkers_per_window`` walkers sharing one ln g (single-spin WL sweeps of
:func:`flowsamp.samplers.wang_landau.build_sweeps`, 1/t schedule per window).  Every
``exchange_every`` sweeps, for each pair of neighbouring windows (even pairs, then odd pairs
alternately) a random walker ``i`` of window ``a`` and ``j`` of window ``b`` swap configurations
when both energies lie in the overlap, with probability

.. math::

    P_{\rm acc} = \min\left[1, \frac{g_a(E_i)\, g_b(E_j)}{g_a(E_j)\, g_b(E_i)}\right].

The windows' ln g are joined by matching means over each overlap
(:func:`~flowsamp.samplers.wang_landau.stitch_windows`).
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp._progress import ProgressBar
from flowsamp.base import as_key
from flowsamp.estimators.verdict import Verdict, warn_if_not_converged
from flowsamp.samplers._wl_schedule import one_over_t_schedule
from flowsamp.samplers.flat_histogram import compensated, compensated_value, energy_bins, normalize_log_g, reference_log_g
from flowsamp.samplers.wang_landau import (
    WangLandauResult,
    WangLandauState,
    build_sweeps,
    _flatness,
    make_windows,
    stitch_windows,
)
from flowsamp.types import PRNGKey

__all__ = ["replica_exchange_wang_landau"]


def _exchange(rng: np.random.Generator, state: WangLandauState, windows: np.ndarray, group: np.ndarray,
              parity: int, tried: np.ndarray, accepted: np.ndarray) -> WangLandauState:
    """One round of configuration swaps between neighbouring windows (host side)."""
    lg = np.asarray(compensated_value(state.log_g), np.float64)
    level = np.array(state.level)
    positions = np.array(state.positions)
    for a in range(parity, windows.shape[0] - 1, 2):
        b = a + 1
        i = rng.choice(np.nonzero(group == a)[0])
        j = rng.choice(np.nonzero(group == b)[0])
        li, lj = level[i], level[j]
        lo, hi = windows[b, 0], windows[a, 1]  # overlap of a and b
        tried[a] += 1
        if not (lo <= li <= hi and lo <= lj <= hi):
            continue
        log_p = lg[a, li] - lg[a, lj] + lg[b, lj] - lg[b, li]
        if math.log(rng.random() + 1e-300) < min(0.0, log_p):
            accepted[a] += 1
            positions[[i, j]] = positions[[j, i]]
            level[[i, j]] = level[[j, i]]
    return state._replace(positions=jnp.asarray(positions), level=jnp.asarray(level))


def replica_exchange_wang_landau(
    key: PRNGKey,
    target: Any,
    num_windows: int = 4,
    walkers_per_window: int = 4,
    *,
    window_overlap: float = 0.75,
    exchange_every: int = 10,
    check_every: int = 100,
    max_sweeps: int = 100_000,
    log_f_initial: float = 1.0,
    log_f_final: float = 1e-8,
    exact_log_g: Any = "auto",
    stop_error: float | None = None,
    max_seconds: float | None = None,
    progress: bool = False,
) -> WangLandauResult:
    """Replica-exchange 1/t Wang-Landau estimate of ln g(E) for a lattice spin target.

    Parameters
    ----------
    key : PRNGKey
    target
        ``fs.targets.ising`` / ``potts``.
    num_windows, walkers_per_window : int
        Overlapping energy windows and walkers per window (sharing that window's ln g).
    window_overlap : float
        Fraction of a window shared with the next (Vogel et al. use 0.75).
    exchange_every, check_every : int
        Sweeps between exchange rounds, and between schedule/error checks (a multiple of it).
    max_sweeps, log_f_initial, log_f_final, exact_log_g, stop_error
        As in :func:`flowsamp.samplers.wang_landau`.
    max_seconds : float, optional
        Wall-time budget (compilation included), checked every ``check_every`` sweeps.
    progress : bool
        Show a tqdm counter of the sweeps per walker (process 0 only; no total: the run ends
        with ln f) with, at every check, the mean ln f, the flatness :math:`\min H/\overline H`
        of the least flat window, the smallest exchange acceptance between neighbouring
        windows so far, the windows still active and, with a reference, the error. Host-side
        between the jitted sweeps: the numbers are the same with it on or off.

    Returns
    -------
    WangLandauResult
        ``diagnostics`` adds ``exchange_acceptance`` (per neighbouring pair) and
        ``window_errors`` (mean |Δ ln g| per window after stitching, when ``exact_log_g`` is known)
        and ``cpu_seconds`` (process CPU time at each check, beside the wall-clock ``elapsed``).
    """
    for name, v in (("num_windows", num_windows), ("walkers_per_window", walkers_per_window),
                    ("exchange_every", exchange_every), ("check_every", check_every), ("max_sweeps", max_sweeps)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if check_every % exchange_every:
        raise ValueError(f"check_every ({check_every}) must be a multiple of exchange_every ({exchange_every})")
    key = as_key(key)
    bins = energy_bins(target.energy_levels)
    K = bins.levels.size
    windows = make_windows(K, num_windows, window_overlap)
    W = num_windows * walkers_per_window
    group = np.arange(W) % num_windows
    masks = np.zeros((num_windows, K), bool)
    for g, (lo, hi) in enumerate(windows):
        masks[g, lo:hi + 1] = True
    ref = reference_log_g(target, exact_log_g)
    log_g0 = math.log(target.num_states)
    fdt = jnp.result_type(float)
    state = WangLandauState(
        positions=jnp.broadcast_to(target.ground_state(), (W, target.L, target.L)),
        level=jnp.zeros(W, jnp.int32),
        log_g=compensated(jnp.zeros((num_windows, K), fdt)),
        histogram=jnp.zeros((num_windows, K), jnp.int32),
        log_f=jnp.full(num_windows, log_f_initial, fdt),
        num_updates=compensated(jnp.zeros(num_windows, fdt)),
        one_over_t=jnp.zeros(num_windows, bool),
        active=jnp.ones(num_windows, bool),
    )
    run = build_sweeps(target, bins, group, windows, exchange_every)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().astype(np.uint32))
    tried = np.zeros(max(num_windows - 1, 1))
    accepted = np.zeros_like(tried)
    times, errors, log_fs, elapsed, cpu = [], [], [], [], []
    t0, c0 = time.perf_counter(), time.process_time()
    sweeps, parity = 0, 0
    est = None
    bar = ProgressBar(progress, None, "replica_exchange_wang_landau", "sweep")
    while sweeps < max_sweeps:
        for _ in range(check_every // exchange_every):
            key, sub = jax.random.split(key)
            state = run(sub, state)
            sweeps += exchange_every
            if num_windows > 1:
                state = _exchange(rng, state, windows, group, parity, tried, accepted)
                parity = 1 - parity
        state, eff = one_over_t_schedule(state, masks, log_f_final)
        est = _estimate(state, windows, log_g0)
        times.append(sweeps)
        log_fs.append(float(np.mean(eff)))
        errors.append(float(np.mean(np.abs(est - ref[1]))) if ref is not None else np.nan)
        elapsed.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if bar:
            bar.set(sweeps, ln_f=log_fs[-1], flat=float(np.min(_flatness(state.histogram, masks))),
                    exchange=float(np.min(accepted / np.maximum(tried, 1))) if num_windows > 1 else None,
                    active=int(np.sum(np.asarray(state.active))), err=errors[-1] if ref is not None else None)
        if not np.asarray(state.active).any() or (stop_error is not None and errors[-1] <= stop_error):
            break
        if max_seconds is not None and elapsed[-1] >= max_seconds:
            break
    bar.close()
    active = np.asarray(state.active)
    reached = stop_error is not None and errors and errors[-1] <= stop_error
    problems = []
    if active.any() and not reached:
        problems.append(f"ln f did not fall below log_f_final = {log_f_final:g} within {sweeps} sweeps: "
                        f"{int(active.sum())} of {num_windows} windows still active")
    acc = accepted / np.maximum(tried, 1)
    if num_windows > 1 and np.any(acc < 0.01):
        problems.append(f"replica exchange acceptance {acc.min():.3f} between some windows: widen the overlap")
    diag = {"num_sweeps": sweeps, "exchange_acceptance": acc, "final_log_f": log_fs[-1],
            "error": errors[-1], "groups_active": int(active.sum()), "cpu_seconds": np.asarray(cpu)}
    if ref is not None:
        diag["window_errors"] = np.array([np.mean(np.abs(est[lo:hi + 1] - ref[1][lo:hi + 1])) for lo, hi in windows])
    verdict = Verdict(diag, not problems, problems)
    warn_if_not_converged(verdict, "replica_exchange_wang_landau")
    return WangLandauResult(
        energies=bins.levels, log_g=est, histogram=np.asarray(state.histogram), num_sweeps=sweeps,
        times=np.asarray(times), errors=np.asarray(errors), log_f=np.asarray(log_fs),
        elapsed=np.asarray(elapsed), converged=verdict.converged, windows=windows, state=state,
        diagnostics=verdict.diagnostics, problems=verdict.problems)


def _estimate(state: WangLandauState, windows: np.ndarray, log_g0: float) -> np.ndarray:
    c = state.log_g
    lg = np.asarray(c.hi, np.float64) + np.asarray(c.lo, np.float64)
    return normalize_log_g(stitch_windows(lg, windows), log_g0)
