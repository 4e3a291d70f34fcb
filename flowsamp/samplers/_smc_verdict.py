r"""Verdict of an SMC / AIS run: the trust checks that catch a confident wrong answer.

A tempered SMC run can end with every step's ESS fine and still be wrong: when the moves do
not equilibrate the particles within each tempered density, the resampled population stays
too concentrated and :math:`\ln\hat Z` and the mode weights are biased *identically in every
step's diagnostics* (the 64-D, 4-sigma four-mode mixture gave :math:`\ln\hat Z` 1.4 to 4.3
nats above the truth, weights off by 0.05, with no step flagged). What does show it is
**disagreement between independent islands** (Vergé, Dubarry, Del Moral & Moulines 2015,
arXiv:1306.3911): islands that each sample the same path must agree within their sampling
error. The checks, each a sentence in ``problems``:

* some island's :math:`\beta` short of 1 after ``max_steps``;
* a move step whose population acceptance is below ``thresholds.min_acceptance``;
* the final reweighting's ESS (summed over islands) below ``thresholds.min_ess``;
* fewer than ``thresholds.min_ess`` distinct particles at the end (resampled copies that
  the moves never separated);
* the last move sweep still shifting the population: the weighted mean of
  :math:`\log\pi_1` after the moves minus before, over its SE :math:`\mathrm{sd}/\sqrt{\mathrm{ESS}}`,
  combined over islands (:math:`\sum_m z_m/\sqrt M`), beyond ``MAX_DRIFT_Z`` = 4: a population
  at equilibrium is left invariant by the moves, one that is too concentrated spreads out;
* the last move sweep still widening (or narrowing) the population: the mean change of the
  coordinates' log-variances over the sweep (``flowsamp.samplers.smc._spread_change``) beyond
  ``MAX_SPREAD_CHANGE`` = 0.03 (3 % per sweep) *and* consistent over the islands, Student's
  :math:`|t| >` ``MAX_DRIFT_Z`` (with ``MIN_ISLANDS_SPREAD_TEST`` = 4 islands or more;
  :math:`P(|t_7| > 4) = 0.005`). It catches a population too narrow along a direction the moves
  explore slowly, whose mean log-density is dominated by the well-mixed directions and hardly
  moves: a 20-D Gaussian of condition number 1000, randomly rotated, from a base 5x narrower
  than its long axes, under the default diagonal mass (long axes at 0.4-0.6 of their
  variance, ln Z 0.9-1.5 nat low, log-density drift z -1.3: 6 of 6 seeds claimed convergence
  without this check; with it and the cross-fitted moves of ``_smc_moves.move``, 6 of 6 are
  flagged, ``benchmarks/smc_generated_targets.py``). The effect size keeps off a mild, harmless lag: many-well
  32 widens by 0.6-1.7 % per final sweep at t 2.4-3.5 with ln Z right; right runs on the
  held-out set (a 50-D Gaussian, a banana, 2-D mixtures, Rosenbrock-10, the free field, GMM-40)
  changed by at most 5.4 % at :math:`|t| \le 2.7`;
* **moves that do not mix where the target is** (MALA/HMC moves): a weighted fraction above
  ``MAX_STUCK_FRACTION`` = 0.01 of the particles (mean over islands) whose own acceptance over a
  sweep was below ``STUCK_ACCEPTANCE`` = 0.05 at some tempering step *and whose*
  :math:`\log\pi_\beta` *is above the population's weighted median*. The shared,
  population-adapted step size (and preconditioner) then does not fit the local scale where the
  density is high: the particles sit at the entrance of a region narrower than the step resolves
  (the neck of a funnel, a narrow mixture component), whose mass under :math:`\pi_\beta` grows
  late along the path (:math:`\propto (\sigma_\text{narrow}/\sigma_\text{wide})^{d(1-\beta)}` for
  a narrow Gaussian component; the "phase transition" of tempering, Woodard, Schmidler & Huber
  2009) and which the moves cannot fill, so ln Z comes out biased with islands that agree
  because they share the bias (funnel-10 from :math:`N(0, 3^2)`: ln Z off by 1.0 nat with 8
  agreeing islands, 3.7 % of the particles stuck at beta 0.88; a 2-D 0.7/0.3 mixture with a
  10x narrower component: 22 % stuck, ln Z off by 2-5 SE). This is the gradient kernels'
  counterpart of HMC's divergences (Betancourt 2017, arXiv:1701.02434). Particles stuck in a
  low-density tail (a banana's arms: 3 % of them below the median, 0.2 % above; ln Z right) carry
  little mass and are resampled away, so they are reported (``max_stuck_all``) but not flagged.
  Funnel-5 at scale 1 (4.4 % stuck in its neck, ln Z right within a wide SE of 0.2) stays flagged;
* a component that **no particle ever reaches** leaves no trace in any statistic of the run (the
  5-D 0.7/0.3 mixture with a 10x narrower component 4 sigma away: ln Z = ln 0.7 with agreeing
  islands and nothing stuck): it is caught only with ``mode_of``/``num_modes`` ("only 1 of 2
  modes found"); without them, as for any sampler, modes never found cannot be excluded;
* a move sweep that reached ``max_mcmc_steps`` still decorrelating (largest coordinate
  correlation before/after above ``max_move_correlation`` and falling): the moves are too short
  for that temperature;
* **a run that never resampled (AIS)**: its particles are independent importance draws on the
  extended space of the whole path (Neal 2001, "Annealed importance sampling", Stat. Comput.
  11:125), weighted by :math:`\hat Z_m W_i^{(m)}` over all islands, so the importance verdict of
  those pooled weights applies (:func:`flowsamp.estimators.importance_verdict`): a Kish ESS
  below ``thresholds.min_ess``, or a Pareto :math:`\hat k` above 0.5 (infinite variance: the SE
  is not reliable) or above :func:`~flowsamp.estimators.verdict.khat_threshold`. The per-step
  ESS check above only sees the last reweighting of each island. Measured with
  ``fs.samplers.ais`` at its defaults (1024 particles, base N(0, 25 I)) on a randomly rotated
  20-D Gaussian of condition 1000, 6 seeds: ln Z 0.47-0.85 nat low in 5, of which 3 claimed
  convergence (z -3.7, -4.7, -8.6) with every step's ESS fine; their pooled weights had an ESS
  of 59-86 and :math:`\hat k` 0.44-0.76, so all are flagged now. Not caught: a banana's run at
  z -4.1 with pooled ESS 479 and :math:`\hat k` 0.05, whose weights show nothing of the mass it
  missed (a shifted 5-D Gaussian's run at z -5.2, ESS 192, :math:`\hat k` 0.26, is within 4 SE
  since the genealogy floor of ``flowsamp.samplers._smc_evidence``: z -1.7);
* the islands' :math:`\ln\hat Z_m` spread (sd) above ``MAX_ISLAND_LOG_Z_SD`` = 1 nat: then
  :math:`\hat Z_m` is heavy-tailed, the mean over islands is carried by a few of them and its
  SE is not calibrated (the log-normal SE of ``flowsamp.samplers._smc_evidence`` is then
  conservative, 0.80 x at an islands' sd of 1.5 nat, and the islands' law may not be log-normal
  at all: Rosenbrock-10 with 16 particles per island, one island 9 nat below the others; the
  rule :math:`\operatorname{var}\ln\hat Z \lesssim 1` of Pitt, Silva, Giordani & Kohn 2012
  and Doucet, Pitt, Deligiannidis & Kohn 2015);
* with ``mode_of``: the islands' mode weights vary more than ``thresholds.min_ess``
  independent draws would (their between-island variance :math:`v_k` implies
  :math:`N_\text{eff} = M\,\bar w_k(1-\bar w_k)/v_k` draws over the :math:`M` islands);
  and modes (of ``num_modes``) that no particle found;
* with ``mode_of``: a mode weight whose SE (from the islands' spread) exceeds
  ``thresholds.max_mode_weight_se`` (0.01): the weights are then not resolved to 0.02, and a
  claim of convergence would rest on an error bar too wide to test it (the multimodal grid's
  smc cells 0.021-0.058 off at z <= 2.4 had SE 0.015-0.035). More particles or islands fix it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from flowsamp.estimators.verdict import Thresholds, Verdict, importance_verdict

_STUCK = 0.05  # = flowsamp.samplers.smc.STUCK_ACCEPTANCE (smc imports this module)

MAX_ISLAND_LOG_Z_SD = 1.0
MAX_DRIFT_Z = 4.0
#: the spread check is a t-test over the islands' final sweeps, made with at least this many
MIN_ISLANDS_SPREAD_TEST = 4
#: ... of a mean change of the coordinates' log-variance beyond this (an effect size)
MAX_SPREAD_CHANGE = 0.03
MAX_STUCK_FRACTION = 0.01


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def island_mode_weights(labels: np.ndarray, log_w: np.ndarray, num_modes: int) -> np.ndarray:
    """Self-normalised weight of each mode in each island: ``(M, num_modes)``."""
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    w = w / w.sum(axis=1, keepdims=True)
    out = np.zeros((labels.shape[0], num_modes))
    for m in range(labels.shape[0]):
        out[m] = np.bincount(labels[m], weights=w[m], minlength=num_modes)[:num_modes]
    return out


def smc_verdict(
    *,
    betas: np.ndarray,
    ess: np.ndarray,
    acceptance: np.ndarray,
    distinct: np.ndarray,
    drift: np.ndarray,
    num_steps: np.ndarray,
    spread_change: np.ndarray | None = None,
    num_moves: np.ndarray | None = None,
    move_correlation: np.ndarray | None = None,
    decorrelated: np.ndarray | None = None,
    stuck: np.ndarray | None = None,
    stuck_all: np.ndarray | None = None,
    max_mcmc_steps: int | None = None,
    num_mcmc_steps: int | None = None,
    island_log_Z: np.ndarray,
    particles: np.ndarray,
    log_w: np.ndarray,
    num_resampling: np.ndarray,
    max_steps: int,
    mode_of: Callable | None,
    num_modes: int | None,
    thresholds: Thresholds | None,
) -> Verdict:
    """Diagnostics, ``converged`` and ``problems`` of an SMC run with ``M`` islands.

    Per-step arrays are ``(M, T)`` (NaN after an island finished); ``particles`` ``(M, n, d)``
    and ``log_w`` ``(M, n)`` are the final islands with their normalised log-weights.
    """
    th = thresholds if thresholds is not None else Thresholds()
    m_isl, n_isl = log_w.shape
    problems: list[str] = []
    final_beta = float(np.nanmin(betas[np.arange(m_isl), num_steps - 1]))
    if final_beta < 1.0:
        problems.append(
            f"beta reached only {final_beta:.3g} after max_steps={max_steps}: the particles are not "
            "target draws and log_Z is that of the last tempered distribution")
    acc_min = np.nanmin(acceptance, axis=1)
    low = acc_min < th.min_acceptance
    if np.any(low):
        i = int(np.argmin(acc_min))
        t = int(np.nanargmin(acceptance[i]))
        problems.append(
            f"move acceptance {acceptance[i, t]:.3f} < {th.min_acceptance} at step {t} (beta "
            f"{betas[i, t]:.3g}): the particles barely move, resampled copies stay copies")
    last = ess[np.arange(m_isl), num_steps - 1]
    final_ess = float(np.sum(last) * n_isl)
    if final_ess < th.min_ess:
        problems.append(f"final-step ESS {final_ess:.0f} < {th.min_ess:.0f} particles")
    final_distinct = float(np.sum(distinct[np.arange(m_isl), num_steps - 1]) * n_isl)
    if final_distinct < th.min_ess:
        problems.append(
            f"only {final_distinct:.0f} distinct particles at the end (< {th.min_ess:.0f}): the moves did "
            "not separate the resampled copies")
    last_drift = drift[np.arange(m_isl), num_steps - 1]
    z_drift = float(np.sum(last_drift) / np.sqrt(m_isl))
    if not np.isfinite(z_drift) or abs(z_drift) > MAX_DRIFT_Z:
        problems.append(
            f"the last move sweep changed the mean log-density by {z_drift:.1f} SE (> {MAX_DRIFT_Z:g}): the "
            "population was not at equilibrium, the moves are too short to decorrelate it")
    diag = {}
    if spread_change is not None and m_isl >= MIN_ISLANDS_SPREAD_TEST:
        c = spread_change[np.arange(m_isl), num_steps - 1]
        sd = float(np.std(c, ddof=1))
        mean_c = float(np.mean(c))
        t_spread = mean_c / (sd / np.sqrt(m_isl)) if sd > 0 else 0.0
        diag.update(spread_change=spread_change, final_spread_change=mean_c, final_spread_change_t=t_spread)
        if np.isfinite(mean_c) and abs(mean_c) > MAX_SPREAD_CHANGE and abs(t_spread) > MAX_DRIFT_Z:
            problems.append(
                f"the last move sweep {'widened' if mean_c > 0 else 'narrowed'} the population: its coordinates' "
                f"variances changed by {100 * (np.exp(mean_c) - 1):+.1f}% on average, consistently over the "
                f"islands (t = {t_spread:.1f}): it was not at equilibrium along some direction the moves explore "
                "slowly; try mass='dense' (with 20 particles per dimension in an island), kernel='hmc', more moves "
                "(max_mcmc_steps) or a base at least as wide as the target")
    if stuck is not None:
        stuck_t = np.nanmean(stuck, axis=0)  # over islands, per step
        t = int(np.nanargmax(stuck_t))
        diag["stuck"], diag["max_stuck"] = stuck, float(stuck_t[t])
        if stuck_all is not None:
            diag["stuck_all"], diag["max_stuck_all"] = stuck_all, float(np.nanmax(np.nanmean(stuck_all, axis=0)))
        if stuck_t[t] > MAX_STUCK_FRACTION:
            problems.append(
                f"{100 * stuck_t[t]:.1f}% of the particles (weighted), all where the density is above its median, "
                f"accepted under {100 * _STUCK:.0f}% of their "
                f"moves at step {t} (beta {np.nanmean(betas[:, t]):.3g}) while the population accepted "
                f"{np.nanmean(acceptance[:, t]):.2f}: the shared step size does not fit part of the target "
                "(a funnel-like change of scale), that region is not explored and ln Z may be biased; "
                "try kernel='hmc' with more integration steps, a reparametrisation, or a flow base")
    if move_correlation is not None:
        diag["num_moves"], diag["move_correlation"] = num_moves, move_correlation
        diag["max_move_correlation"] = float(np.nanmax(move_correlation))
        # only when the sweep length was adaptive: a fixed number of moves is the user's choice
        adaptive = max_mcmc_steps is not None and num_mcmc_steps is not None and max_mcmc_steps > num_mcmc_steps
        capped = ~np.asarray(decorrelated, bool) & adaptive
        if np.any(capped):
            i, t = (int(v[0]) for v in np.nonzero(capped))
            problems.append(
                f"the moves did not decorrelate the particles at step {t} (beta {betas[i, t]:.3g}): a coordinate's "
                f"correlation before/after was still {move_correlation[i, t]:.2f} and falling after "
                f"max_mcmc_steps={max_mcmc_steps} transitions")
    diag.update({
        "ess": ess, "drift": drift, "final_drift_z": z_drift, "min_ess": float(np.nanmin(ess)), "final_ess": final_ess,
        "acceptance": acceptance, "min_acceptance": float(np.nanmin(acceptance)),
        "distinct": distinct, "final_distinct": final_distinct,
        "num_steps": int(num_steps.max()), "final_beta": final_beta,
        "num_resampling": num_resampling, "num_islands": m_isl, "island_log_Z": island_log_Z,
    })
    if np.all(np.asarray(num_resampling) == 0):
        pooled = (np.asarray(log_w, np.float64) + np.asarray(island_log_Z, np.float64)[:, None]).ravel()
        iv = importance_verdict(pooled, thresholds=th)
        diag["weights_ess"], diag["weights_k_hat"] = iv.diagnostics["ess"], iv.diagnostics["k_hat"]
        problems.extend(f"final weights (no resampling: AIS): {p}" for p in iv.problems)
    if m_isl > 1:
        sd = float(np.std(island_log_Z, ddof=1))
        diag["island_log_Z_sd"] = sd
        if not np.isfinite(sd) or sd > MAX_ISLAND_LOG_Z_SD:
            problems.append(
                f"the {m_isl} islands' ln Z disagree (sd {_fmt(sd)} > {MAX_ISLAND_LOG_Z_SD:g} nat: "
                f"{np.array2string(island_log_Z, precision=2)}): the estimate and its SE are not reliable")
    if mode_of is not None:
        labels = np.asarray(mode_of(particles.reshape(-1, particles.shape[-1]))).reshape(m_isl, n_isl)
        k = int(num_modes) if num_modes is not None else int(labels.max()) + 1
        wk = island_mode_weights(labels, log_w, k)
        diag["island_mode_weights"] = wk
        found = int(np.sum(wk.max(axis=0) > 0))
        if num_modes is not None and found < k:
            problems.append(f"only {found} of {k} modes found by any particle")
        if m_isl > 1:
            mean, var = wk.mean(0), wk.var(0, ddof=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                implied = np.where(var > 0, m_isl * mean * (1 - mean) / var, np.inf)
            keep = (mean > 0) & (mean < 1)
            n_eff = float(np.min(implied[keep])) if np.any(keep) else float("inf")
            diag["mode_weights"], diag["mode_weights_se"] = mean, np.sqrt(var / m_isl)
            diag["mode_weights_n_eff"] = n_eff
            se_w = np.sqrt(var / m_isl)
            worst = int(np.argmax(np.where(keep, se_w, -np.inf))) if np.any(keep) else 0
            if np.any(keep) and se_w[worst] > th.max_mode_weight_se:
                problems.append(
                    f"imprecise mode weights: mode {worst}'s weight {mean[worst]:.3f} has SE {se_w[worst]:.3f} > "
                    f"{th.max_mode_weight_se:g} (from the {m_isl} islands' spread), so it is not resolved to "
                    f"{2 * th.max_mode_weight_se:g}; use more particles")
            if n_eff < th.min_ess:
                j = int(np.argmin(np.where(keep, implied, np.inf)))
                problems.append(
                    f"mode weights disagree between islands (mode {j}: "
                    f"{np.array2string(wk[:, j], precision=3)}), as only {n_eff:.0f} independent draws "
                    f"would (< {th.min_ess:.0f})")
    return Verdict(diag, not problems, problems)
