r"""Wang-Landau sampling of the density of states g(E) of a lattice spin target.

Walkers (a leading ``vmap`` axis) make single-spin moves accepted with

.. math::

    \alpha = \min\left(1, \frac{g(E)}{g(E')}\right),

and after every trial the current level gets :math:`\ln g(E) \mathrel{+}= \ln f`,
:math:`H(E) \mathrel{+}= 1`.  Walkers are grouped: all walkers of a group share one
ln g (``share="shared"``: their updates add up) or each walker owns one
(``share="walker"``); each group covers an energy window (``num_windows`` overlapping
windows, stitched at the end).  A walker outside its window is driven towards it
(moves that do not increase the distance are accepted, nothing is recorded).

Schedules of ln f (applied on the device every ``check_every`` sweeps; the whole run is one
compiled program, :mod:`flowsamp.samplers._wl_engine`).  Checking every sweep, as a
single-walker C code does, lets many walkers sharing ln g halve ln f every sweep and enter the
1/t stage with a poor ln g that 1/t cannot repair (measured: the C code with 64 walkers checked
every sweep did not reach 0.02 on 8x8 Ising in 4e9 trials):

* ``"halving"`` (Wang & Landau, PRL 86, 2050 (2001)): ln f -> ln f / 2 whenever H is flat
  (:math:`\min H \ge c\,\overline H`, default c = 0.8), until ln f < ``log_f_final``.  The
  error of ln g saturates.
* ``"1/t"`` (Belardinelli & Pereyra, PRE 75, 046701 (2007)): halve ln f whenever every
  level of the window has been visited (default c = 0), until ln f < 1/t; from then on
  ln f = 1/t continuously, with :math:`t = n_{\rm upd} / N_E` the number of ln g updates
  applied to the group so far divided by its number of levels N_E (Monte Carlo time per
  level; a single walker doing one trial per step has t = trials / N_E, their
  convention).  The error decays as :math:`t^{-1/2}`.

ln g is a :class:`~flowsamp.samplers.flat_histogram.Compensated` float pair (folded after
every sweep), so tiny late increments are kept in float32.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp import io as _io
from flowsamp._progress import ProgressBar
from flowsamp.base import as_key
from flowsamp.estimators.verdict import Verdict, warn_if_not_converged
from flowsamp.samplers import _checkpoint as _ckpt
from flowsamp.samplers._wl_engine import build_sweeps, checks_program
from flowsamp.samplers.flat_histogram import (
    Compensated,
    compensated,
    compensated_fold,
    compensated_value,
    energy_bins,
    is_flat,
    normalize_log_g,
    reference_log_g,
    wl_log_acceptance,
)
from flowsamp.types import Array, PRNGKey

__all__ = ["WangLandauState", "WangLandauResult", "wang_landau", "build_sweeps", "stitch_windows",
           "make_windows"]

SCHEDULES = ("1/t", "halving")
_BUFFER = 256        # checks per device call at most
_CALL_SECONDS = 0.25  # target wall time of one device call
_ENGINE = 2          # version of the sweep engine (its random numbers); part of the checkpoint meta
SHARES = ("shared", "walker")


class WangLandauState(NamedTuple):
    """Everything the next sweep needs (save it to resume a run).

    ``positions`` (W, L, L) spins; ``level`` (W,) current level index; ``log_g`` (G, K)
    compensated ln g per group; ``histogram`` (G, K) visits since the last ln f change;
    ``log_f`` (G,) modification factor of the classic stage; ``num_updates`` (G,) ln g
    updates applied so far (compensated: float32 cannot count past 2**24); ``one_over_t`` (G,) whether the group is in the 1/t stage;
    ``active`` (G,) whether the group still updates ln g.
    """

    positions: Array
    level: Array
    log_g: Compensated
    histogram: Array
    log_f: Array
    num_updates: Array
    one_over_t: Array
    active: Array


class WangLandauResult(NamedTuple):
    """Output of :func:`wang_landau`.

    ``energies`` (K,) the levels; ``log_g`` (K,) ln g(E) (float64) normalised so that
    ln g(E_0) is the ln of the ground-state degeneracy (ln q); ``histogram`` (G, K) of the
    last stage; ``num_sweeps`` sweeps per walker; ``times`` (sweeps per walker),
    ``errors`` (mean |ln g - ln g_exact| over levels, or NaN without a reference) and
    ``log_f`` (mean effective ln f over groups) and ``elapsed`` (wall seconds since the
    call began, compilation included; the checks of one device call share the time at which
    the call returned, about 0.25 s apart, and the last check's time is exact) at every check; ``converged`` (every group's ln f fell
    below ``log_f_final``, or ``stop_error`` was reached); ``windows`` (G, 2) inclusive level
    ranges; ``state`` the final :class:`WangLandauState`; ``diagnostics`` (``num_sweeps``,
    ``final_log_f``, ``log_f_final``, ``groups_active``, ``flatness`` per group = min H /
    mean H over its window, ``error`` against the exact ln g or NaN, ``stop_error``);
    ``problems`` the reasons it did not converge, as sentences.
    """

    energies: np.ndarray
    log_g: np.ndarray
    histogram: np.ndarray
    num_sweeps: int
    times: np.ndarray
    errors: np.ndarray
    log_f: np.ndarray
    elapsed: np.ndarray
    converged: bool
    windows: np.ndarray
    state: WangLandauState
    diagnostics: dict
    problems: list


def make_windows(num_levels: int, num_windows: int, overlap: float) -> np.ndarray:
    """``num_windows`` inclusive level-index ranges covering 0..K-1, neighbours overlapping."""
    if num_windows == 1:
        return np.array([[0, num_levels - 1]])
    width = num_levels / (num_windows - (num_windows - 1) * overlap)
    out = []
    for w in range(num_windows):
        lo = int(round(w * width * (1 - overlap)))
        hi = min(num_levels - 1, int(round(lo + width)) - 1)
        out.append([lo, hi])
    out[-1][1] = num_levels - 1
    if any(b[0] >= a[1] for a, b in zip(out, out[1:])):
        raise ValueError(f"{num_windows} windows over {num_levels} levels do not overlap")
    return np.array(out)


def stitch_windows(log_g: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Join per-window ln g (G, K) into one (K,) curve, matching means over each overlap."""
    out = np.full(log_g.shape[1], np.nan)
    lo, hi = windows[0]
    out[lo : hi + 1] = log_g[0, lo : hi + 1]
    for g in range(1, windows.shape[0]):
        lo, hi = windows[g]
        prev_hi = windows[g - 1][1]
        ov = slice(lo, prev_hi + 1)
        shift = np.mean(out[ov] - log_g[g, ov])
        cur = log_g[g, lo : hi + 1] + shift
        merged = cur.copy()
        k = prev_hi + 1 - lo
        merged[:k] = 0.5 * (out[ov] + cur[:k])
        out[lo : hi + 1] = merged
    return out


def _combine(log_g: np.ndarray, windows: np.ndarray, window_of_group: np.ndarray) -> np.ndarray:
    """Average groups of the same window (after removing their mean), then stitch."""
    num_windows = int(window_of_group.max()) + 1
    per_window = np.zeros((num_windows, log_g.shape[1]))
    wins = np.zeros((num_windows, 2), int)
    for w in range(num_windows):
        rows = np.where(window_of_group == w)[0]
        lo, hi = windows[rows[0]]
        wins[w] = (lo, hi)
        seg = log_g[rows, lo : hi + 1]
        per_window[w, lo : hi + 1] = np.mean(seg - seg.mean(axis=1, keepdims=True), axis=0)
    return stitch_windows(per_window, wins)


def wang_landau(
    key: PRNGKey,
    target: Any,
    num_walkers: int = 64,
    schedule: str = "1/t",
    *,
    flatness: float | None = None,
    log_f_initial: float = 1.0,
    log_f_final: float = 1e-8,
    check_every: int = 100,
    max_sweeps: int = 100_000,
    num_windows: int = 1,
    window_overlap: float = 0.5,
    share: str = "shared",
    exact_log_g: Any = "auto",
    initial_state: WangLandauState | None = None,
    stop_error: float | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = False,
) -> WangLandauResult:
    """Estimate ln g(E) of a lattice spin target by Wang-Landau sampling.

    Parameters
    ----------
    key : PRNGKey
    target
        Lattice spin target (``fs.targets.ising`` / ``potts``) with ``energy_levels``.
    num_walkers : int
        Walkers run in parallel (``vmap``); they share ln g within a group.  Default 64: the
        median time to mean |Δ ln g| <= 0.02 on 8x8 Ising (1/t, 7 seeds, repeat calls, CPU) was
        0.87 s with 64 walkers, 1.9 s with 128, 2.7 s with 16 (the per-trial cost falls with
        the walkers: 102, 38, 33 ns; the trials needed grow beyond 64).
    schedule : {"1/t", "halving"}
        ln f schedule (module docstring).
    flatness : float, optional
        c in :math:`\\min H \\ge c\\,\\overline H`; default 0.8 for "halving", 0 (every level
        visited, Belardinelli & Pereyra's rule) for "1/t".  With many walkers sharing ln g a
        flat first stage can pay off (8x8 Ising, 64 walkers, 10 seeds: ``flatness=0.8,
        check_every=20`` needed a median 2.0e7 trials to mean |Δ ln g| <= 0.02, at most 7.6e7,
        against 3.1e7 and 1.8e8 with the defaults), but it can hold ln f at its first value for
        long on hard landscapes (first-order transitions), which "every level visited" never does.
    log_f_initial, log_f_final : float
        First ln f, and the value below which a group stops (1/t: when 1/t < log_f_final).
    check_every : int
        Sweeps per walker between checks of the error curve and of the stop conditions (on the
        device), and of the ln f schedule.
    max_sweeps : int
        Budget in sweeps per walker.
    num_windows, window_overlap : int, float
        Overlapping energy windows (fraction of a window shared with the next).
    share : {"shared", "walker"}
        One ln g per window shared by its walkers, or one per walker (averaged at the end).
    exact_log_g
        ``(energies, log_g)`` reference for the error curve, ``None``, or ``"auto"``
        (``target.exact_log_dos()`` when ``q**L <= 256``).
    initial_state : WangLandauState, optional
        Resume from a previous ``result.state`` (same walkers, windows and share).
    stop_error : float, optional
        Stop at the first check whose error against ``exact_log_g`` is at most this
        (time-to-result benchmarks).
    checkpoint_path : str or os.PathLike, optional
        If given, the run's carry (the :class:`WangLandauState` with ln g, histograms, ln f
        and update counts, the current key, the error / ln f curves) is saved there
        atomically (:func:`flowsamp.io.save`) every ``checkpoint_every`` sweeps and at the end.
    checkpoint_every : int, optional
        Sweeps per walker between checkpoints, a multiple of ``check_every`` (default
        ``10 * check_every``).
    resume : bool
        Continue from ``checkpoint_path`` when it exists: the result (state, ln g, curves;
        not ``elapsed``) is bit-identical to the uninterrupted run with the same key. A
        checkpoint of another run (options, key, target) raises a ``ValueError`` naming
        the difference.
    progress : bool
        Show a tqdm counter of the sweeps per walker (process 0 only; the run ends when ln f
        does, so it has no total) with, after each compiled call, the mean ln f of the last
        check, the flatness :math:`\min H/\overline H` of the least flat group's histogram
        over its window, the groups still active and, with a reference, the error. Host-side
        between the calls: the numbers are the same with it on or off.

    Returns
    -------
    WangLandauResult
        ``energies`` and ``log_g`` (same length; ln g(E_0) = ln q), histograms, the error
        curve over Monte Carlo time, and the final state.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    if share not in SHARES:
        raise ValueError(f"unknown share {share!r}; choose one of {SHARES}")
    for name, v in (("num_walkers", num_walkers), ("check_every", check_every),
                    ("max_sweeps", max_sweeps), ("num_windows", num_windows)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if flatness is None:
        flatness = 0.8 if schedule == "halving" else 0.0
    if not 0.0 <= flatness < 1.0:
        raise ValueError(f"flatness must be in [0, 1), got {flatness}")
    if not (log_f_initial > 0 and log_f_final > 0):
        raise ValueError("log_f_initial and log_f_final must be > 0")
    _ckpt.check_options("wang_landau", checkpoint_path, checkpoint_every, resume, "sweeps",
                        multiple_of=int(check_every))
    key = as_key(key)
    key0 = key
    bins = energy_bins(target.energy_levels)
    num_levels = bins.levels.size
    win = make_windows(num_levels, num_windows, window_overlap)
    if share == "shared":
        if num_walkers % num_windows:
            raise ValueError(f"num_walkers ({num_walkers}) must be a multiple of num_windows")
        group = np.arange(num_walkers) % num_windows
        windows, window_of_group = win, np.arange(num_windows)
    else:
        group = np.arange(num_walkers)
        window_of_group = np.arange(num_walkers) % num_windows
        windows = win[window_of_group]
    num_groups = windows.shape[0]
    ref = reference_log_g(target, exact_log_g)
    if ref is not None and exact_log_g is not None and not isinstance(exact_log_g, str):
        if not np.allclose(ref[0], bins.levels):
            raise ValueError("exact_log_g energies differ from target.energy_levels")
    log_g0 = math.log(target.num_states)

    fdt = jnp.result_type(float)
    if initial_state is None:
        start = jnp.broadcast_to(target.ground_state(), (num_walkers, target.L, target.L))
        state = WangLandauState(
            positions=start,
            level=jnp.zeros(num_walkers, jnp.int32),
            log_g=compensated(jnp.zeros((num_groups, num_levels), fdt)),
            histogram=jnp.zeros((num_groups, num_levels), jnp.int32),
            log_f=jnp.full(num_groups, log_f_initial, fdt),
            num_updates=compensated(jnp.zeros(num_groups, fdt)),
            one_over_t=jnp.zeros(num_groups, bool),
            active=jnp.ones(num_groups, bool),
        )
    else:
        state = initial_state
    masks = np.zeros((num_groups, num_levels), bool)
    for g, (lo, hi) in enumerate(windows):
        masks[g, lo : hi + 1] = True
    run = checks_program(target, bins, group, windows, masks, window_of_group, log_g0,
                         check_every=int(check_every), flatness=float(flatness),
                         one_over_t=schedule == "1/t", with_error=ref is not None, buffer=_BUFFER)
    run_args = (jnp.asarray(log_f_final, fdt), jnp.asarray(-np.inf if stop_error is None else stop_error, fdt),
                jnp.asarray(np.zeros(num_levels) if ref is None else ref[1], fdt))

    times, errors, log_fs, elapsed = [], [], [], []
    t_start = time.perf_counter()
    sweeps = 0
    every = None
    if checkpoint_path is not None:
        every = int(checkpoint_every) if checkpoint_every is not None else 10 * int(check_every)
        meta = {
            "sampler": "wang_landau", "num_walkers": int(num_walkers), "schedule": schedule,
            "flatness": float(flatness), "log_f_initial": float(log_f_initial), "log_f_final": float(log_f_final),
            "check_every": int(check_every), "max_sweeps": int(max_sweeps), "num_windows": int(num_windows),
            "window_overlap": float(window_overlap), "share": share,
            "stop_error": None if stop_error is None else float(stop_error),
            "key": [int(v) for v in _ckpt.key_data(key0).ravel()],
            "target": _ckpt.fingerprint((bins.levels, target.L, target.num_states, float(target.J))),
            "initial_state": None if initial_state is None else _ckpt.fingerprint(initial_state),
            "reference": None if ref is None else _ckpt.fingerprint(ref),
            "engine": _ENGINE,
        }
        if _ckpt.should_resume(checkpoint_path, resume):
            state, key, sweeps, times, errors, log_fs, elapsed = _load_checkpoint(
                checkpoint_path, meta, state, key)
            t_start -= elapsed[-1] if elapsed else 0.0

    def finished() -> bool:
        if not times:
            return False
        return not np.asarray(state.active).any() or (stop_error is not None and errors[-1] <= stop_error)

    # One compiled program runs whole checks (ln f schedule and error at the end of every
    # check) until a stop condition; the host only sizes the calls (about _CALL_SECONDS each, so
    # that ``elapsed`` stays meaningful) and ends them at checkpoint boundaries.  Check k of the
    # run is keyed by fold_in(key, k): the split into calls does not change the result.
    per_check, compiled = None, False
    bar = ProgressBar(progress, None, "wang_landau", "sweep", sweeps)
    while sweeps < max_sweeps and not finished():
        left = -(-(max_sweeps - sweeps) // check_every)
        n_calls = 1 if per_check is None else max(1, int(_CALL_SECONDS / max(per_check, 1e-9)))
        n_calls = min(n_calls, left, _BUFFER)
        if every is not None:
            n_calls = min(n_calls, max(1, (every - sweeps % every) // check_every))
        t_call = time.perf_counter()
        state, out = run(key, state, sweeps // check_every, n_calls, *run_args)
        done = int(out.num_checks)
        now = time.perf_counter()
        if compiled:  # the first call compiles: size later calls by the second one on
            per_check = (now - t_call) / max(done, 1)
        compiled = True
        errs = np.asarray(out.errors, np.float64)[:done]
        lfs = np.asarray(out.log_f, np.float64)[:done]
        for i in range(done):
            sweeps += check_every
            times.append(sweeps)
            errors.append(float(errs[i]))
            log_fs.append(float(lfs[i]))
            elapsed.append(now - t_start)
        if every is not None and (sweeps % every == 0 or sweeps >= max_sweeps or finished()):
            tree = {"state": state, "key": _ckpt.key_data(key),
                    "curves": np.asarray([times, errors, log_fs, elapsed], np.float64)}
            _io.save(checkpoint_path, tree, meta={**meta, "done": int(sweeps), "num_checks": len(times)})
        if bar:
            bar.set(sweeps, ln_f=log_fs[-1] if log_fs else None, flat=float(np.min(_flatness(state.histogram, masks))),
                    active=int(np.sum(np.asarray(state.active))), err=errors[-1] if ref is not None and errors else None)
    bar.close()

    lg = _estimate(state, windows, window_of_group, log_g0)
    verdict = _verdict(state, masks, sweeps, max_sweeps, log_f_final, log_fs, errors, stop_error)
    warn_if_not_converged(verdict, "wang_landau")
    return WangLandauResult(
        energies=bins.levels,
        log_g=lg,
        histogram=np.asarray(state.histogram),
        num_sweeps=sweeps,
        times=np.asarray(times),
        errors=np.asarray(errors),
        log_f=np.asarray(log_fs),
        elapsed=np.asarray(elapsed),
        converged=verdict.converged,
        windows=windows,
        state=state,
        diagnostics=verdict.diagnostics,
        problems=verdict.problems,
    )


def _load_checkpoint(path, meta, state, key):
    """(state, key, sweeps done, times, errors, log_fs, elapsed) from a Wang-Landau checkpoint."""
    stored = _io.read_meta(path, meta)
    n = stored.get("num_checks")
    if not isinstance(n, int) or n < 0 or not isinstance(stored.get("done"), int):
        raise ValueError(f"wang_landau: {os.fspath(path)!r} has no valid 'done' / 'num_checks' in its meta")
    like = {"state": state, "key": _ckpt.key_data(key), "curves": np.zeros((4, n), np.float64)}
    tree = _io.load(path, like, meta=meta)
    curves = np.asarray(tree["curves"], np.float64)
    times = [int(t) for t in curves[0]]
    return (tree["state"], _ckpt.wrap_key(tree["key"], key), int(stored["done"]), times,
            list(curves[1]), list(curves[2]), list(curves[3]))


def _flatness(histogram: Any, masks: Any) -> np.ndarray:
    """Per group, :math:`\min H / \overline H` of its histogram over its window's levels (0 if empty)."""
    hist = np.asarray(histogram, np.float64)
    masks = np.asarray(masks, bool)
    return np.array([h[m].min() / h[m].mean() if h[m].mean() > 0 else 0.0 for h, m in zip(hist, masks)])


def _verdict(state, masks, sweeps, max_sweeps, log_f_final, log_fs, errors, stop_error) -> Verdict:
    """Converged when every group finished its ln f schedule, or the error reached ``stop_error``."""
    active = np.asarray(state.active)
    flat = _flatness(state.histogram, masks)
    error = float(errors[-1]) if errors else float("nan")
    reached = stop_error is not None and np.isfinite(error) and error <= stop_error
    problems = []
    if active.any() and not reached:
        problems.append(
            f"ln f did not fall below log_f_final = {log_f_final:g} within {sweeps} sweeps "
            f"(max_sweeps {max_sweeps}): {int(active.sum())} of {active.size} groups still active, "
            f"mean ln f {log_fs[-1] if log_fs else float('nan'):.3g}"
        )
    if stop_error is not None and np.isfinite(error) and not reached:
        problems.append(f"error {error:.3g} against the exact ln g did not reach stop_error {stop_error:g}")
    diag = {
        "num_sweeps": int(sweeps),
        "final_log_f": float(log_fs[-1]) if log_fs else float("nan"),
        "log_f_final": float(log_f_final),
        "groups_active": int(active.sum()),
        "flatness": flat,
        "error": error,
        "stop_error": stop_error,
    }
    return Verdict(diag, not problems, problems)


def _estimate(state, windows, window_of_group, log_g0) -> np.ndarray:
    c = state.log_g
    lg = np.asarray(c.hi, np.float64) + np.asarray(c.lo, np.float64)
    return normalize_log_g(_combine(lg, windows, window_of_group), log_g0)


def _error(state, windows, window_of_group, ref, log_g0) -> float:
    """Mean over levels of |ln g - ln g_exact| with ln g(E_0) fixed to ln q."""
    est = _estimate(state, windows, window_of_group, log_g0)
    return float(np.mean(np.abs(est - ref[1])))
