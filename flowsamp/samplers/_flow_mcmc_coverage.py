r"""Did production visit everything the exploration found? The lost-region checks of the
adaptive flow sampler's verdict.

The exploration (:mod:`flowsamp.samplers._flow_mcmc_explore`) ends with equally weighted
tempered-SMC particles, approximate draws of :math:`p`. Production's draws are exact MCMC draws of
:math:`p` *if the chains mixed*; chains that never enter a region cannot show it in
:math:`\hat R` (every chain agrees on the wrong answer). A region that holds exploration particles
but (almost) no production draw is the trace of that failure: the flow forgot a mode the
exploration found (its particles trained the first flow, the chains' own draws then replaced
them), so no global proposal lands there and no local move reaches it.

The particles' *counts* cannot weigh such a region: once modes separate on the tempered path, a
mode's share of the particles is a martingale whose variance grows by up to :math:`2w(1-w)/N` at
each of the :math:`T` steps, so a mode of weight 0.01 seen by 2048 particles over 30 steps is
uncertain by about its own size. The region is therefore weighed afresh by importance sampling,
and the test uses production's draws only:

1. **Where** (a screen, not a decision). Without mode labels: the particles (and, separately,
   the user's starting points) whose log importance weight under the production flow,
   :math:`s(x) = \log\tilde p(x) - \log q_\theta(x)`, exceeds the largest :math:`s` of :math:`M`
   production draws (where the flow has lost mass, :math:`q_\theta` is tiny and :math:`s` huge). With mode labels: the particles of a mode that
   holds less than a quarter (:data:`SCREEN_FACTOR`) of the particles' fraction of production's
   draws.
2. **How much** (:func:`lost_mass`): the :math:`p`-mass :math:`\mu` of that region (the set
   :math:`\{s > t\}`, or the mode's cell), by importance sampling from a Gaussian kernel mixture
   centred on the region's particles (Scott's bandwidth on their covariance, West 1993's mixture
   importance sampling), relative to the exploration's :math:`\hat Z` (with labels: to the sum of
   every populated mode's mass weighed the same way, so that the SMC's :math:`\ln\hat Z` error,
   0.16-0.5 nats in the 6-D case below, cancels); its lower bound
   :math:`\mu_- = \hat\mu\,e^{-4\,\mathrm{se}(\ln\hat\mu)}` is what counts.
3. **Whether production can have missed it by chance** (:func:`miss_pvalue`): with :math:`n_p`
   effective production draws, a region of mass :math:`\mu` gets
   :math:`B \sim \mathrm{Binomial}(n_p, \mu)` of them; the region is flagged when
   :math:`P(B \le b) < \Phi(-4)/K` (one-sided, the library's 4σ convention, Bonferroni over the
   :math:`K` regions tested) with :math:`b` production's (effective) count there, which is 0 for
   the set :math:`\{s > t\}` by construction. For :math:`b = 0` this is
   :math:`(1-\mu_-)^{n_p} < \alpha`, i.e. :math:`\mu_- \gtrsim 10.4/n_p`.

Under :math:`H_0` (production right) the :math:`p`-mass above the largest of :math:`M` independent
production scores is :math:`\mathrm{Beta}(1, M)`, of order :math:`1/M`, an order of magnitude
below the :math:`10.4/n_p` a flag needs (with :math:`n_p \le M`): the exploration's imperfections
can move the screen's region, not the verdict. Production's effective size :math:`n_p` is the
bulk ESS of the score :math:`s` (of the mode's indicator when production visited the mode) capped
by :math:`M` (the score's ESS also for a mode production never entered, whose indicator has no
ESS; the smallest bulk ESS of the coordinates when the score's ESS is not finite). A mode the chains started in but where the exploration found no
particle is reported (``coverage_start_counts``), never flagged on its own: MCMC starting points
are often outside the typical set (burn-in), and a mode with neither particles nor draws carries
no evidence of mass.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy.special import betainc, logsumexp, ndtr

from flowsamp.estimators.evidence import log_evidence
from flowsamp.estimators.verdict import rank_diagnostics

__all__ = [
    "COVERAGE_DRAWS",
    "COVERAGE_REFERENCE",
    "COVERAGE_SIGMAS",
    "LostRegion",
    "SCREEN_FACTOR",
    "coverage_verdict",
    "kernel_mixture",
    "lost_mass",
    "miss_pvalue",
    "suspect_modes",
]

COVERAGE_SIGMAS = 4.0
r"""One-sided level of the test, :math:`\alpha = \Phi(-4)` (the 4σ of
:class:`~flowsamp.estimators.Thresholds`' drift test), Bonferroni-divided over the regions."""

COVERAGE_DRAWS = 1024
"""Importance draws per region weighed by :func:`lost_mass`."""

MAX_CENTRES = 256
"""Most kernel centres of :func:`kernel_mixture` (a random subset of the region's particles)."""

COVERAGE_REFERENCE = 4096
"""Most production draws (thinned evenly over each chain) whose score sets the screen's
threshold :math:`t`."""


def miss_pvalue(mass: float, production_ess: float, production_count: float = 0.0) -> float:
    r""":math:`P(B \le b)` for :math:`B \sim \mathrm{Binomial}(n_p, \mu)`: how likely production's
    :math:`n_p` effective draws put at most ``production_count`` = :math:`b` of them in a region of
    mass ``mass`` = :math:`\mu` (real :math:`n_p, b`: the regularised incomplete beta
    :math:`I_{1-\mu}(n_p - b, b + 1)`)."""
    mu, n, b = float(mass), float(production_ess), float(production_count)
    if not (mu > 0.0 and n > 0.0) or b >= n:
        return 1.0
    if mu >= 1.0:
        return 0.0
    return float(betainc(n - b, b + 1.0, 1.0 - mu))


def kernel_mixture(centres: np.ndarray, rng: np.random.Generator, num_draws: int) -> tuple[np.ndarray, Callable]:
    r"""Draws and log-density of the defensive mixture
    :math:`g = \tfrac12\,\mathcal N(\bar c, \hat\Sigma) + \tfrac12\,\frac1m\sum_i \mathcal N(c_i, h^2\hat\Sigma)`
    over the ``centres`` :math:`c_i` (m, d; the kernels on a random :data:`MAX_CENTRES` of them
    when more): :math:`\hat\Sigma = \lambda S + (1-\lambda)\,\tfrac{\mathrm{tr} S}{d} I`,
    :math:`\lambda = m/(m+d)`, their covariance :math:`S` shrunk towards its mean variance (the
    identity for a single centre), :math:`h = m^{-1/(d+4)}` (Scott's rule). The Gaussian half is
    the proposal that works in many dimensions for a region that is one mode (a kernel estimate
    from ~100 points in 32-D is too wide per coordinate: its weights degenerate); the kernel half
    keeps a region of several separated modes covered (Hesterberg 1995's defensive mixture)."""
    c_all = np.asarray(centres, np.float64)
    c = c_all[rng.choice(c_all.shape[0], MAX_CENTRES, replace=False)] if c_all.shape[0] > MAX_CENTRES else c_all
    n_all, d = c_all.shape
    m = c.shape[0]
    if n_all >= 2:
        cov = np.cov(c_all.T).reshape(d, d)
        lam = n_all / (n_all + d)  # shrunk towards its mean variance: few centres in many dimensions
        cov = lam * cov + (1.0 - lam) * max(float(np.trace(cov)) / d, 1e-12) * np.eye(d)
    else:
        cov = np.eye(d)
    chol_g = np.linalg.cholesky(cov)
    h = m ** (-1.0 / (d + 4.0))
    chol = h * chol_g
    mean = c_all.mean(0)
    half = num_draws // 2
    idx = rng.integers(0, m, num_draws - half)
    y = np.concatenate([mean + rng.standard_normal((half, d)) @ chol_g.T,
                        c[idx] + rng.standard_normal((num_draws - half, d)) @ chol.T])
    norm = 0.5 * d * math.log(2.0 * math.pi)
    log_det, log_det_g = float(np.sum(np.log(np.diag(chol)))), float(np.sum(np.log(np.diag(chol_g))))
    inv, inv_g = np.linalg.inv(chol), np.linalg.inv(chol_g)
    cu = c @ inv.T  # whitened centres: |L^-1 (x - c)|^2 = |u - cu|^2
    mu_g = mean @ inv_g.T

    def log_g(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        u = x @ inv.T
        d2 = np.sum(u * u, 1)[:, None] - 2.0 * u @ cu.T + np.sum(cu * cu, 1)[None]
        log_kde = logsumexp(-0.5 * np.maximum(d2, 0.0), axis=1) - math.log(m) - log_det - norm
        v = x @ inv_g.T - mu_g
        log_gauss = -0.5 * np.sum(v * v, 1) - log_det_g - norm
        return np.logaddexp(log_kde, log_gauss) - math.log(2.0)

    return y, log_g


def lost_mass(log_p_y: np.ndarray, log_g_y: np.ndarray, inside: np.ndarray, log_Z: float) -> tuple[float, float]:
    r"""Importance estimate of the :math:`p`-mass of a region and the standard error of its log.

    With :math:`y_j \sim g`, :math:`\hat\mu = \frac{1}{J \hat Z}\sum_j \frac{\tilde p(y_j)}{g(y_j)}
    1[y_j \in A]` (``inside``), via :func:`flowsamp.estimators.log_evidence`. Returns
    ``(mu, se_log_mu)``; ``(0, inf)`` when no draw is inside or every weight is zero."""
    lw = np.where(np.asarray(inside, bool) & np.isfinite(log_p_y), np.asarray(log_p_y, np.float64) - log_g_y, -np.inf)
    if not np.any(np.isfinite(lw)):
        return 0.0, math.inf
    lz, se = log_evidence(lw)
    return float(np.exp(float(lz) - float(log_Z))), float(se)


SCREEN_FACTOR = 4.0
"""A mode is weighed (:func:`suspect_modes`) when production's fraction of it is below the
particles' fraction divided by this: the particles' count must already say "far too few"."""


def suspect_modes(exploration_labels: np.ndarray, production_labels: np.ndarray, num_modes: int) -> list[int]:
    """Modes where production's fraction is below the particles' fraction / :data:`SCREEN_FACTOR`
    (the screen; the binomial test on the weighed mass decides)."""
    e = np.bincount(np.asarray(exploration_labels).ravel(), minlength=num_modes)[:num_modes] / np.size(exploration_labels)
    p = np.bincount(np.asarray(production_labels).ravel(), minlength=num_modes)[:num_modes] / np.size(production_labels)
    return [m for m in range(num_modes) if e[m] > 0 and p[m] < e[m] / SCREEN_FACTOR]


class LostRegion(dict):
    """One tested region (a ``dict``: ``what``, ``num_particles``, ``particle_fraction``,
    ``production_fraction``, ``mass``, ``mass_lower``, ``production_ess``, ``pvalue``,
    ``flagged``)."""


def _thin(traj: np.ndarray, most: int) -> np.ndarray:
    """``(C, S, d)`` draws thinned evenly along each chain to at most ``most`` in all."""
    c, s = traj.shape[:2]
    step = max(1, math.ceil(c * s / most))
    return traj[:, step - 1 :: step] if s >= step else traj[:, -1:]


def coverage_verdict(
    particles: np.ndarray,
    log_Z: float,
    production: np.ndarray,
    score: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    seed: int = 0,
    min_ess_bulk: float,
    labels: Callable[[np.ndarray], np.ndarray] | None = None,
    production_labels: np.ndarray | None = None,
    num_modes: int | None = None,
    start_labels: np.ndarray | None = None,
    starts: np.ndarray | None = None,
    sigmas: float = COVERAGE_SIGMAS,
    num_draws: int = COVERAGE_DRAWS,
) -> tuple[dict, list[str]]:
    r"""The lost-region test of the module docs.

    Parameters
    ----------
    particles
        ``(N, d)`` the exploration's equally weighted particles.
    log_Z
        The exploration's :math:`\ln\hat Z` of :math:`\tilde p`.
    production
        ``(C, S, d)`` production draws.
    score
        ``score(x) -> (log p~(x), s(x))`` on ``(n, d)`` rows, :math:`s = \log\tilde p - \log q_\theta`.
    seed
        Seed of the importance draws.
    min_ess_bulk
        Smallest bulk ESS of production's coordinates (:math:`n_p` when the score's ESS is not
        finite).
    labels, production_labels, num_modes, start_labels
        With a labelling function ``labels(x) -> (n,)`` ints: the mode test, with production's
        ``(C, S)`` labels, :math:`K` and the user's starting points' labels.
    starts
        ``(C0, d)`` the user's starting points: those the production flow does not cover are a
        region of their own, weighed like the particles' (starting points far out in a tail
        weigh nothing, so burn-in starts are not flagged).

    Returns
    -------
    (diagnostics, problems)
        ``coverage``: a list of :class:`LostRegion` (the regions weighed), ``coverage_threshold``
        :math:`t`, ``coverage_reference_ess`` (:math:`n_p` of the score), and with labels
        ``coverage_particle_weights``, ``coverage_production_weights``, ``coverage_start_counts``.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(particles, np.float64)
    ref = _thin(np.asarray(production), COVERAGE_REFERENCE)
    c, s_ref, d = ref.shape
    _, s_e = score(x)
    _, s_r = score(ref.reshape(-1, d))
    s_r = s_r.reshape(c, s_ref)
    finite = np.isfinite(s_r)
    t = float(np.max(s_r[finite])) if finite.any() else math.inf
    ess_s = float(rank_diagnostics(s_r)["ess_bulk"][0]) if s_ref >= 4 and finite.all() else float("nan")
    n_ref = float(min(c * s_ref, ess_s)) if np.isfinite(ess_s) else float(min(c * s_ref, min_ess_bulk))
    diag: dict = {"coverage_threshold": t, "coverage_reference_ess": n_ref}
    regions: list[LostRegion] = []

    def weigh(what: str, centres: np.ndarray, inside_fn: Callable, n_p: float, b: float, frac_p: float) -> LostRegion:
        y, log_g = kernel_mixture(centres, rng, num_draws)
        lp_y, _ = score(y)
        mu, se = lost_mass(lp_y, log_g(y), inside_fn(y), log_Z)
        lower = mu * math.exp(-sigmas * se) if np.isfinite(se) else 0.0
        return LostRegion(what=what, num_particles=int(centres.shape[0]), particle_fraction=centres.shape[0] / x.shape[0],
                          production_fraction=frac_p, mass=mu, mass_lower=lower, production_ess=n_p,
                          pvalue=miss_pvalue(lower, n_p, b), flagged=False)

    orphans = s_e > t
    if orphans.any() and np.isfinite(t):
        regions.append(weigh("particles the production flow does not cover", x[orphans],
                             lambda y: score(y)[1] > t, n_ref, 0.0, 0.0))
    if starts is not None and np.isfinite(t):
        x0 = np.asarray(starts, np.float64)
        lp0, s0 = score(x0)
        out0 = (s0 > t) & np.isfinite(lp0)
        if out0.any():
            r0 = weigh("starting points the production flow does not cover", x0[out0],
                       lambda y: score(y)[1] > t, n_ref, 0.0, 0.0)
            r0["particle_fraction"] = float("nan")  # points of the user's, not particles
            regions.append(r0)
    if labels is not None and production_labels is not None:
        lab_e = np.asarray(labels(x)).astype(np.int64)
        lab_p = np.asarray(production_labels).astype(np.int64)
        seen = [lab_e.max(), lab_p.max()] + ([] if start_labels is None else [int(np.max(start_labels))])
        k = int(num_modes) if num_modes is not None else int(max(seen)) + 1
        fe = np.bincount(lab_e, minlength=k)[:k] / lab_e.size
        fp = np.bincount(lab_p.ravel(), minlength=k)[:k] / lab_p.size
        c0 = np.zeros(k, np.int64) if start_labels is None else np.bincount(np.asarray(start_labels).astype(np.int64),
                                                                           minlength=k)[:k]
        diag.update(coverage_particle_weights=fe, coverage_production_weights=fp, coverage_start_counts=c0)
        ess_ind = rank_diagnostics((lab_p[..., None] == np.arange(k)).astype(float))["ess_bulk"]
        suspects = suspect_modes(lab_e, lab_p, k)
        if suspects:
            # every populated mode's mass by IS, normalised by their sum (no SMC log Z in the ratio)
            weighed = {}
            for m in np.flatnonzero(fe > 0):
                y, log_g = kernel_mixture(x[lab_e == m], rng, num_draws)
                weighed[int(m)] = lost_mass(score(y)[0], log_g(y), np.asarray(labels(y)) == m, 0.0)
            z = np.array([v[0] for v in weighed.values()])
            total = float(z.sum())
            se_total = float(np.sqrt(np.sum((z / total) ** 2 * np.array([v[1] for v in weighed.values()]) ** 2))) \
                if total > 0 else math.inf
        for m in suspects:
            entered = fp[m] > 0 and np.isfinite(ess_ind[m])
            n_p = float(ess_ind[m]) if entered else n_ref
            where = f" (where {int(c0[m])} of {int(np.size(start_labels))} starting points lie)" if c0[m] else ""
            z_m, se_m = weighed[m]
            mu = z_m / total if total > 0 else 0.0
            se = math.hypot(se_m, se_total)
            lower = mu * math.exp(-sigmas * se) if np.isfinite(se) else 0.0
            regions.append(LostRegion(what=f"mode {m}{where}", num_particles=int(np.sum(lab_e == m)),
                                      particle_fraction=float(fe[m]), production_fraction=float(fp[m]), mass=mu,
                                      mass_lower=lower, production_ess=n_p, pvalue=miss_pvalue(lower, n_p, fp[m] * n_p),
                                      flagged=False))
    problems = []
    alpha = float(ndtr(-sigmas)) / max(1, len(regions))
    for r in regions:
        r["flagged"] = bool(r["pvalue"] < alpha)
        if r["flagged"]:
            problems.append(
                f"{r['what']}: "
                + (f"{r['num_particles']} exploration particles ({r['particle_fraction']:.3f}) hold mass "
                   if np.isfinite(r["particle_fraction"]) else f"{r['num_particles']} of them, around which lies mass ")
                + f"{r['mass']:.3g} (>= {r['mass_lower']:.3g}) but production put {r['production_fraction']:.3f} of "
                f"its draws there (p = {r['pvalue']:.1e}, {r['production_ess']:.0f} effective draws): the chains lost "
                "a region the exploration found")
    diag["coverage"] = regions
    return diag, problems
