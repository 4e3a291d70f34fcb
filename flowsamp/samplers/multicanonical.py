r"""Multicanonical sampling: weight iteration and production run (Berg & Neuhaus 1992).

Walkers sample :math:`p_{\rm mu}(s) \propto 1/\hat g(E(s))` with fixed weights
(single-spin moves accepted with :math:`\min(1, \hat g(E)/\hat g(E'))`, the Wang-Landau
sweep with ln f = 0).  Each iteration replaces the weights by those that would have made
the previous histogram flat,

.. math::

    \ln \hat g_{n+1}(E) = \ln \hat g_n(E) + \ln H_n(E) \quad (H_n(E) > 0),

levels not yet visited keep their weight (so the walk is pushed towards them).  The
production run records the histogram :math:`H(E)` at fixed weights; then

.. math::

    \ln g(E) = \ln \hat g(E) + \ln H(E) + \text{const},

from which :mod:`flowsamp.estimators.canonical` reweights to any beta.  Start from flat
weights or from a (short) Wang-Landau estimate (``initial_log_g``).
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp import io as _io
from flowsamp._progress import ProgressBar
from flowsamp.base import as_key
from flowsamp.estimators.verdict import Verdict, warn_if_not_converged
from flowsamp.samplers import _checkpoint as _ckpt
from flowsamp.samplers.flat_histogram import compensated, energy_bins, normalize_log_g
from flowsamp.samplers.wang_landau import WangLandauState, build_sweeps, make_windows
from flowsamp.types import PRNGKey

__all__ = ["MulticanonicalResult", "multicanonical"]


class MulticanonicalResult(NamedTuple):
    """Output of :func:`multicanonical`.

    ``energies`` (K,); ``log_g`` (K,) the production estimate ln g(E) (ln g(E_0) = ln q;
    ``-inf`` where the production run never visited); ``histogram`` (K,) production
    counts summed over walkers; ``walker_histograms`` (W, K) the same per walker
    (independent replicas: their spread gives standard errors); ``weights_log_g`` (K,) the fixed ln g-hat of the
    production run; ``flatness`` (num_iterations + 1,) min H / mean H of every iteration
    (the last entry is the production run); ``diagnostics`` (``flatness``, ``production_flatness``,
    ``num_unvisited`` production levels, ``walker_levels_missed``: levels some walker never
    visited); ``converged`` (every level visited in production) and ``problems``.
    """

    energies: np.ndarray
    log_g: np.ndarray
    histogram: np.ndarray
    walker_histograms: np.ndarray
    weights_log_g: np.ndarray
    flatness: np.ndarray
    diagnostics: dict
    converged: bool
    problems: list


def multicanonical(
    key: PRNGKey,
    target: Any,
    num_walkers: int = 16,
    *,
    initial_log_g: np.ndarray | None = None,
    num_iterations: int = 5,
    sweeps_per_iteration: int = 1000,
    num_production_sweeps: int = 10_000,
    chunk: int = 500,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = False,
) -> MulticanonicalResult:
    """Multicanonical weight iteration and production run on a lattice spin target.

    Parameters
    ----------
    key : PRNGKey
    target
        Lattice spin target with ``energy_levels``.
    num_walkers : int
        Independent walkers (``vmap``) sharing the weights; their histograms add up.
    initial_log_g : array, optional
        Starting ln g-hat over ``target.energy_levels`` (e.g. ``wang_landau(...).log_g``);
        default flat (canonical at beta = 0).
    num_iterations, sweeps_per_iteration : int
        Weight iterations and sweeps per walker in each.
    num_production_sweeps : int
        Sweeps per walker of the production run at fixed weights.
    chunk : int
        Sweeps per jitted call (the iteration lengths are rounded up to multiples).
    checkpoint_path : str or os.PathLike, optional
        If given, the carry (walker state, current weights ln g-hat, flatness so far, the
        iteration and chunk reached, the keys) is saved there atomically
        (:func:`flowsamp.io.save`) every ``checkpoint_every`` sweeps and at the end.
    checkpoint_every : int, optional
        Sweeps per walker between checkpoints, a multiple of ``chunk`` (default ``10 * chunk``).
    resume : bool
        Continue from ``checkpoint_path`` when it exists; the result is bit-identical to the
        uninterrupted run with the same key. A checkpoint of another run raises a
        ``ValueError`` naming the difference.
    progress : bool
        Show a tqdm progress bar of the sweeps per walker (process 0 only) with the phase
        (weight iteration or production), the flatness :math:`\min H/\overline H` and the
        fraction of levels visited of the current histogram (summed over walkers), and the
        flatness of the last finished iteration. Host-side between the jitted chunks: the
        numbers are the same with it on or off.

    Returns
    -------
    MulticanonicalResult
        Production histogram and ln g(E) = ln g-hat(E) + ln H(E), normalised to ln q.
    """
    for name, v in (("num_walkers", num_walkers), ("sweeps_per_iteration", sweeps_per_iteration),
                    ("num_production_sweeps", num_production_sweeps), ("chunk", chunk)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not isinstance(num_iterations, (int, np.integer)) or num_iterations < 0:
        raise ValueError(f"num_iterations must be an int >= 0, got {num_iterations!r}")
    _ckpt.check_options("multicanonical", checkpoint_path, checkpoint_every, resume, "sweeps",
                        multiple_of=int(chunk))
    key = as_key(key)
    bins = energy_bins(target.energy_levels)
    k = bins.levels.size
    if initial_log_g is None:
        log_g_hat = np.zeros(k)
    else:
        log_g_hat = np.asarray(initial_log_g, np.float64)
        if log_g_hat.shape != (k,) or not np.all(np.isfinite(log_g_hat)):
            raise ValueError(f"initial_log_g must be finite with shape ({k},)")
    # one histogram row per walker (rows of ln g-hat are identical copies of the weights)
    windows = np.repeat(make_windows(k, 1, 0.0), num_walkers, axis=0)
    run = build_sweeps(target, bins, np.arange(num_walkers), windows, chunk)
    fdt = jnp.result_type(float)
    state = WangLandauState(
        positions=jnp.broadcast_to(target.ground_state(), (num_walkers, target.L, target.L)),
        level=jnp.zeros(num_walkers, jnp.int32),
        log_g=compensated(jnp.zeros((num_walkers, k), fdt)),
        histogram=jnp.zeros((num_walkers, k), jnp.int32),
        log_f=jnp.zeros(num_walkers, fdt),
        num_updates=compensated(jnp.zeros(num_walkers, fdt)),
        one_over_t=jnp.zeros(num_walkers, bool),
        active=jnp.zeros(num_walkers, bool),  # weights frozen: no ln g updates
    )

    def reset(state, log_g_hat):
        shifted = log_g_hat - log_g_hat.max()  # keep the float32 weights small
        rows = jnp.broadcast_to(jnp.asarray(shifted, fdt), (num_walkers, k))
        return state._replace(log_g=compensated(rows), histogram=jnp.zeros((num_walkers, k), jnp.int32))

    # phases 0..num_iterations-1 iterate the weights, phase num_iterations is the production run;
    # phase p draws (outer, inner) = split(outer) and chunk c of it split(inner) (resumable carry)
    flat: list[float] = []
    phase, done_chunks, chunks_total = 0, 0, 0
    outer, inner = key, key
    every = None
    if checkpoint_path is not None:
        every = (int(checkpoint_every) if checkpoint_every is not None else 10 * int(chunk)) // int(chunk)
        meta = {
            "sampler": "multicanonical", "num_walkers": int(num_walkers), "num_iterations": int(num_iterations),
            "sweeps_per_iteration": int(sweeps_per_iteration), "num_production_sweeps": int(num_production_sweeps),
            "chunk": int(chunk), "key": [int(v) for v in _ckpt.key_data(key).ravel()],
            "target": _ckpt.fingerprint((bins.levels, target.L, target.num_states, float(target.J))),
            "initial_log_g": None if initial_log_g is None else _ckpt.fingerprint(np.asarray(initial_log_g)),
        }
        if _ckpt.should_resume(checkpoint_path, resume):
            stored = _io.read_meta(checkpoint_path, meta)
            counters = [stored.get(n) for n in ("phase", "done_chunks", "chunks_total", "num_flat")]
            if not all(isinstance(c, int) and c >= 0 for c in counters):
                raise ValueError(f"multicanonical: {os.fspath(checkpoint_path)!r} has no valid counters in its meta")
            phase, done_chunks, chunks_total, num_flat = counters
            like = {"state": state, "outer": _ckpt.key_data(key), "inner": _ckpt.key_data(key),
                    "log_g_hat": log_g_hat, "flat": np.zeros(num_flat, np.float64)}
            tree = _io.load(checkpoint_path, like, meta=meta)
            state, log_g_hat, flat = tree["state"], np.asarray(tree["log_g_hat"]), list(tree["flat"])
            outer, inner = _ckpt.wrap_key(tree["outer"], key), _ckpt.wrap_key(tree["inner"], key)
    walker_hist = None
    per_phase = [-(-sweeps_per_iteration // chunk)] * num_iterations + [-(-num_production_sweeps // chunk)]
    bar = ProgressBar(progress, chunk * sum(per_phase), "multicanonical", "sweep",
                      chunk * (sum(per_phase[:phase]) + done_chunks))
    while phase <= num_iterations:
        production = phase == num_iterations
        n_chunks = -(-(num_production_sweeps if production else sweeps_per_iteration) // chunk)
        if done_chunks == 0:
            outer, inner = jax.random.split(outer)
            state = reset(state, log_g_hat)
        while done_chunks < n_chunks:
            inner, sub = jax.random.split(inner)
            state = run(sub, state)
            done_chunks += 1
            chunks_total += 1
            if every is not None and (chunks_total % every == 0 or (production and done_chunks == n_chunks)):
                tree = {"state": state, "outer": _ckpt.key_data(outer), "inner": _ckpt.key_data(inner),
                        "log_g_hat": np.asarray(log_g_hat, np.float64), "flat": np.asarray(flat, np.float64)}
                _io.save(checkpoint_path, tree, meta={**meta, "phase": phase, "done_chunks": done_chunks,
                                                      "chunks_total": chunks_total, "num_flat": len(flat)})
            if bar:
                h = np.asarray(state.histogram, np.float64).sum(axis=0)
                bar.update(chunk, phase="production" if production else f"iteration {phase + 1}/{num_iterations}",
                           flat=h.min() / h.mean() if h.mean() > 0 else 0.0, visited=float(np.mean(h > 0)),
                           last_flat=flat[-1] if flat else None)
        hist = np.asarray(state.histogram, np.float64)
        if production:
            walker_hist = hist
            break
        hist = hist.sum(axis=0)
        flat.append(hist.min() / hist.mean())
        visited = hist > 0
        log_g_hat = log_g_hat + np.where(visited, np.log(np.maximum(hist, 1.0)), 0.0)
        log_g_hat = log_g_hat - log_g_hat[visited].min()
        phase, done_chunks = phase + 1, 0
    bar.close()
    hist = walker_hist.sum(axis=0)
    flat.append(hist.min() / hist.mean())
    with np.errstate(divide="ignore"):
        log_g = log_g_hat + np.log(hist)
    ground = math.log(target.num_states)
    if np.isfinite(log_g[0]):
        log_g = normalize_log_g(log_g, ground)
    verdict = _verdict(hist, walker_hist, np.asarray(flat))
    warn_if_not_converged(verdict, "multicanonical")
    return MulticanonicalResult(bins.levels, log_g, hist, walker_hist, log_g_hat, np.asarray(flat), *verdict)


def _verdict(hist: np.ndarray, walker_hist: np.ndarray, flat: np.ndarray) -> Verdict:
    """Every level must be visited in production (else ln g is -inf there)."""
    unvisited = int(np.sum(hist == 0))
    missed = int(np.sum(np.any(walker_hist == 0, axis=0)))
    problems = []
    if unvisited:
        problems.append(
            f"{unvisited} of {hist.size} energy levels never visited in production: ln g is -inf there "
            "(more iterations or better initial_log_g)"
        )
    diag = {"flatness": flat, "production_flatness": float(flat[-1]), "num_unvisited": unvisited,
            "walker_levels_missed": missed}
    return Verdict(diag, not problems, problems)
