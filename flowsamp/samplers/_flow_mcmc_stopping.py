r"""When the adaptive flow sampler stops training, and when it stops producing.

Host-side pure functions of the per-loop record, so that the rules are tested on synthetic
histories without running a sampler.

**Training** stops when all of these hold (each loop after ``min_training_loops``):

* the global (flow) acceptance has *plateaued*: the best of the last ``patience`` loops
  improves the best earlier one by less than ``plateau_tol``, and is at least
  ``min_global_acceptance`` (a flow that is still useless keeps training);
* the chains *mix*: over the window of the last loops' draws, the rank-normalised split
  :math:`\hat R` (Vehtari et al. 2021) **between chains** of the log-density
  :math:`\log p(x)`, and of the mode indicators :math:`1[\mathrm{mode}(x) = k]` when a
  ``mode_of`` is given, are below :data:`TRAINING_RHAT` (1.05; the verdict on production uses 1.01).
  The mode indicators are taken at the window's *global-phase* draws (:func:`global_draws`):
  a local phase of :math:`n` MALA/HMC steps that cannot leave its mode repeats one label
  :math:`n` times, so with the whole window each split half-chain holds only 2-3 effective
  draws of the indicator and :math:`\hat R \approx \sqrt{1 + 1/n_\mathrm{eff}} \approx 1.16`
  however well the chains mix (measured on the 2-D four-mode job at flow acceptance 0.8: 1.16-1.18
  in every loop, so training always ran to ``max_training_loops``). The global-phase draws are a
  fixed sub-sequence of the same chains (thinning at fixed steps keeps :math:`\hat R` valid) and
  hold the moves at which the chains can change mode;
* there is no one-sided drift: the per-chain change of the mean log-density between the
  window's halves, :math:`\Delta_c`, has :math:`|\bar\Delta| \le 4\, s_\Delta/\sqrt C`
  (chains still climbing towards the typical set, or sliding off it, fail this).

**Production** runs until the smallest bulk ESS over the coordinates reaches ``target_ess``
and the largest rank :math:`\hat R` (of the coordinates, and of the mode indicators when a
``mode_of`` is given: the verdict's own checks) is at most ``thresholds.rhat`` (the sampler checks both at
:func:`next_check`), or ``max_steps`` production steps per chain are spent; then
:func:`budget_problem` says so when the ESS fell short (an :math:`\hat R` above threshold is
in the verdict's own problems).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from flowsamp.estimators.verdict import Thresholds, rank_diagnostics

__all__ = [
    "DRIFT_SIGMAS",
    "TRAINING_RHAT",
    "MixingCheck",
    "budget_problem",
    "clustered_start_problem",
    "global_draws",
    "log_prob_drift",
    "mixing",
    "PREDICT_MARGIN",
    "next_check",
    "plateaued",
    "production_done",
]

DRIFT_SIGMAS = 4.0
"""A mean change of the log-density between halves beyond this many standard errors is drift."""

TRAINING_RHAT = 1.05
"""R-hat limit on the short training window (the production verdict uses ``Thresholds.rhat`` =
1.01). On the 2-D four-mode job, 100 chains at flow acceptance 0.69, the rank R-hat of log p over
a two-loop window (140 draws per chain) stayed at 1.015-1.021 for eight loops: 1.01 is a limit
for long runs (Vehtari et al. 2021), not for a window of a few effective draws per chain."""


def plateaued(
    global_acceptance: Sequence[float], *, patience: int, tol: float, min_acceptance: float
) -> bool:
    """Whether the best of the last ``patience`` values beats the best earlier one by < ``tol``
    while being at least ``min_acceptance`` (False while fewer than ``patience + 1`` values)."""
    a = [float(v) for v in global_acceptance]
    if len(a) < patience + 1:
        return False
    recent, before = max(a[-patience:]), max(a[:-patience])
    return recent >= min_acceptance and recent < before + tol


def global_draws(num_local_steps: int, num_global_steps: int, thinning: int = 1) -> np.ndarray:
    """Boolean mask over one loop's thinned trajectory (local steps, then global steps, every
    ``thinning``-th kept): True at the draws of the global (flow) phase."""
    steps = np.arange(thinning - 1, num_local_steps + num_global_steps, thinning)
    return steps >= num_local_steps


def log_prob_drift(log_probs: np.ndarray) -> float:
    r"""z-score of the change of the mean log-density between the halves of ``(C, S)`` draws.

    :math:`z = \bar\Delta / (s_\Delta / \sqrt C)` with :math:`\Delta_c` chain c's second-half
    mean minus its first-half mean; 0 when every :math:`\Delta_c` is 0, ``inf`` when they are
    equal and non-zero or when a value is not finite.
    """
    lp = np.asarray(log_probs, dtype=float)
    if lp.ndim != 2 or lp.shape[1] < 2:
        raise ValueError(f"log_probs must have shape (chains, draws >= 2), got {lp.shape}")
    if not np.all(np.isfinite(lp)):
        return math.inf
    half = lp.shape[1] // 2
    delta = lp[:, -half:].mean(1) - lp[:, :half].mean(1)
    mean = float(delta.mean())
    sd = float(delta.std(ddof=1)) if delta.size > 1 else 0.0
    if sd == 0.0:
        return 0.0 if mean == 0.0 else math.inf
    return mean / (sd / math.sqrt(delta.size))


class MixingCheck(NamedTuple):
    """Result of :func:`mixing`: ``ok``, ``rhat_log_prob``, ``rhat_modes`` (max over modes,
    NaN without labels), ``drift_z`` and the sentences saying what failed."""

    ok: bool
    rhat_log_prob: float
    rhat_modes: float
    drift_z: float
    reasons: list[str]


def mixing(
    log_probs: np.ndarray,
    mode_labels: np.ndarray | None = None,
    num_modes: int | None = None,
    thresholds: Thresholds | None = None,
    rhat: float | None = None,
) -> MixingCheck:
    r"""Between-chain mixing of a window of draws: :math:`\hat R` of :math:`\log p` ``(C, S)``, of
    the mode indicators (with ``mode_labels`` ``(C, S')`` ints of the same chains, e.g. the
    window's global-phase draws, :func:`global_draws`), and the log-density drift z-score.
    ``rhat`` overrides ``thresholds.rhat`` as the limit (the sampler passes :data:`TRAINING_RHAT`)."""
    th = thresholds if thresholds is not None else Thresholds()
    limit = th.rhat if rhat is None else float(rhat)
    lp = np.asarray(log_probs, dtype=float)
    reasons = []
    r_lp = float(rank_diagnostics(lp)["rhat"][0]) if np.all(np.isfinite(lp)) else math.inf
    if not r_lp <= limit:
        reasons.append(f"R-hat of log p {r_lp:.3g} > {limit}")
    r_modes = math.nan
    if mode_labels is not None:
        labels = np.asarray(mode_labels)
        if labels.ndim != 2 or labels.shape[0] != lp.shape[0] or labels.shape[1] < 4:
            raise ValueError(f"mode_labels must have shape ({lp.shape[0]}, draws >= 4), got {labels.shape}")
        k = int(num_modes) if num_modes is not None else int(labels.max()) + 1
        onehot = (labels[..., None] == np.arange(k)).astype(float)
        rh = rank_diagnostics(onehot)["rhat"]
        r_modes = float(np.nanmax(rh)) if not np.all(np.isnan(rh)) else 1.0
        if not r_modes <= limit:
            reasons.append(f"R-hat of mode indicators {r_modes:.3g} > {limit}")
    z = log_prob_drift(lp)
    if not abs(z) <= DRIFT_SIGMAS:
        reasons.append(f"log p drifted by {z:.1f} SE between the window's halves")
    return MixingCheck(not reasons, r_lp, r_modes, z, reasons)


def production_done(min_ess_bulk: float, steps: int, *, target_ess: float | None, max_steps: int) -> bool:
    """Stop producing once ``min_ess_bulk >= target_ess`` or ``steps >= max_steps``."""
    if steps >= max_steps:
        return True
    return target_ess is not None and float(min_ess_bulk) >= float(target_ess)


def next_check(steps: int, steps_per_loop: int, min_ess_bulk: float, target_ess: float,
               max_rhat: float | None = None, rhat_limit: float | None = None) -> int:
    r"""Production step count at which to compute the ESS (and :math:`\hat R`) again.

    ESS grows about linearly in the steps, so while it is short of the target the next check
    is where the target is predicted, :math:`1.05\,S\,\text{target}/\text{ESS}` (5 % over
    the linear rate, so that one check usually suffices), at least one loop later.

    :math:`\hat R` is predicted the same way when ``max_rhat`` and ``rhat_limit`` are given:
    at stationarity the between-chain variance of the (half-)chain means falls as
    :math:`\tau/n` for :math:`n` draws per chain with integrated autocorrelation time
    :math:`\tau`, so :math:`\hat R^2 - 1 \approx (\tau - 1)/n` (Vehtari et al. 2021, the
    variance-ratio form of :math:`\hat R`), and the limit is reached near
    :math:`S^* = S\,(\hat R^2 - 1)/(\hat R_{\lim}^2 - 1)`; the next check is at
    :math:`1.05\,S^*`, but at most twice the current steps (a noisy or non-mixing
    :math:`\hat R` must not skip the budget in one jump) and at least 20 % later (a check
    costs :math:`O(C S d \log(CS))`, so their total stays of the order of the last). Without
    ``max_rhat``, once the ESS is there, checks are geometric (20 % later). The next check
    is where both are predicted to hold.
    """
    if not np.isfinite(min_ess_bulk) or min_ess_bulk <= 0:
        nxt = 2 * steps
    elif float(min_ess_bulk) >= float(target_ess):
        nxt = math.ceil(1.2 * steps)
    else:
        nxt = math.ceil(PREDICT_MARGIN * steps * float(target_ess) / float(min_ess_bulk))
    if max_rhat is not None and rhat_limit is not None and float(max_rhat) > float(rhat_limit) > 1.0:
        r, lim = float(max_rhat), float(rhat_limit)
        pred = PREDICT_MARGIN * steps * (r * r - 1.0) / (lim * lim - 1.0) if np.isfinite(r) else math.inf
        nxt = max(nxt, math.ceil(min(max(pred, 1.2 * steps), 2.0 * steps)))
    return int(max(steps + steps_per_loop, nxt))


PREDICT_MARGIN = 1.05
"""Margin over the linearly predicted step count at which :func:`next_check` looks again."""


def budget_problem(min_ess_bulk: float, target_ess: float, max_steps: int) -> str:
    """The sentence for a production phase that spent ``max_steps`` before reaching ``target_ess``."""
    return (
        f"max_steps={max_steps} production steps spent with bulk ESS {min_ess_bulk:.0f} "
        f"< target_ess={target_ess:.0f}"
    )


CLUSTERED_PROBLEM = (
    "chains started in one region and no exploration was run: modes never visited cannot be excluded"
)


def clustered_start_problem(initial_positions: np.ndarray, production_sd: np.ndarray) -> str | None:
    r""":data:`CLUSTERED_PROBLEM` when the starts were clustered, else ``None``.

    Clustered: on every coordinate the initial positions' spread is below half the production
    draws' standard deviation (over-dispersed starts, as Gelman & Rubin 1992 ask, have at least
    the posterior's spread).
    """
    x0 = np.asarray(initial_positions, dtype=float)
    sd0 = x0.std(axis=0) if x0.shape[0] > 1 else np.zeros(x0.shape[-1])
    sd = np.asarray(production_sd, dtype=float)
    return CLUSTERED_PROBLEM if bool(np.all(sd0 < 0.5 * sd)) else None
