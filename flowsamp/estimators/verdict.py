r"""Convergence verdicts: diagnostics, a boolean ``converged`` and plain-sentence ``problems``.

Every sampler result carries the :class:`Verdict` of its draws. The MCMC diagnostics are the
rank-normalised split :math:`\hat R` and the bulk and tail effective sample sizes of Vehtari,
Gelman, Simpson, Carpenter and Bürkner (2021, arXiv:1903.08008), computed with numpyro's
``split_gelman_rubin`` and ``effective_sample_size`` applied to rank-normalised, folded and
quantile-indicator draws (the same estimators ArviZ's ``rhat(method="rank")`` and
``ess(method="bulk"/"tail")`` compute). Importance sampling gets the Kish ESS and the Pareto
:math:`\hat k` of the weights.

The thresholds follow Stan and ArviZ practice (:class:`Thresholds`) and are overridable.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, NamedTuple

import numpy as np
from numpyro import diagnostics as _nd
from scipy.special import ndtri

from flowsamp.types import Array


class NotConvergedWarning(UserWarning):
    """Issued when a sampler's result fails its convergence verdict; the message lists the problems."""


@dataclasses.dataclass(frozen=True)
class Thresholds:
    r"""Limits a result must meet to be called converged.

    Attributes
    ----------
    rhat
        Largest rank-normalised split :math:`\hat R` allowed on any coordinate (Vehtari et al.
        2021 recommend 1.01).
    ess_bulk, ess_tail
        Smallest bulk / tail ESS allowed on any coordinate (Stan / ArviZ: 100 per chain for four
        chains, i.e. 400).
    max_nonfinite
        Divergent or non-finite proposals allowed (Stan: none).
    min_global_acceptance
        Flow (global) acceptance below this means the flow is not helping.
    mode_drift_sigmas, mode_drift_min
        A mode weight that changes between the first and second half of the draws by more than
        ``mode_drift_sigmas`` standard errors *and* by more than ``mode_drift_min`` (absolute
        weight) is flagged.
    max_khat
        Largest Pareto :math:`\hat k` of importance weights for the estimate to be trusted at
        all, as :math:`\min(1 - 1/\log_{10} S,\ \texttt{max\_khat})` for :math:`S` weights
        (Vehtari, Simpson, Gelman, Yao & Gabry 2024, "Pareto smoothed importance sampling",
        JMLR 25:72: the sample-size-dependent threshold; 0.7 is its large-:math:`S` value).
    max_khat_se
        Largest :math:`\hat k` for which the standard error of a raw (not Pareto-smoothed)
        importance-sampling estimate is trusted (0.5). The raw weights have a finite variance
        only for :math:`k < 1/2` (same paper): above it the CLT that the SE rests on fails, and
        the estimate is typically low by more than its SE (a Gaussian proposal of 1.2 times the
        scale on a 5-D Student :math:`t_3`, 20 000 draws, 6 seeds: :math:`\hat k` 0.66-0.78,
        :math:`\ln\hat Z` low by 0.040-0.059 at SEs of 0.009-0.022, z down to -6.4).
    min_ess
        Smallest Kish ESS of importance-sampling / SMC weights.
    min_acceptance
        Smallest acceptance of a move step in SMC (:func:`flowsamp.samplers.tempered_smc`):
        below it the particles barely move. Not applied to plain MCMC, where low acceptance
        can be legitimate (cold spin systems) and shows in the ESS anyway.
    max_mode_weight_se
        Largest standard error of an estimated mode weight for a claim of convergence (SMC, where
        the SE comes from the islands' spread): 0.01 resolves a weight to ``mode_drift_min`` = 0.02
        at 2 SE. A wider SE is stated as a problem ("imprecise"), not hidden in a wide error bar;
        ``float("inf")`` turns the check off. (Stan/ArviZ report the MCSE and ask ESS >= 400; a
        weight's SE is the MCSE of its indicator, so this is a precision goal in the same spirit.)
    """

    rhat: float = 1.01
    ess_bulk: float = 400.0
    ess_tail: float = 400.0
    max_nonfinite: int = 0
    min_global_acceptance: float = 0.05
    mode_drift_sigmas: float = 4.0
    mode_drift_min: float = 0.02
    max_khat: float = 0.7
    max_khat_se: float = 0.5
    min_ess: float = 100.0
    min_acceptance: float = 0.05
    max_mode_weight_se: float = 0.01


class Verdict(NamedTuple):
    """Diagnostics of a run, whether it converged, and the problems found (plain sentences)."""

    diagnostics: dict
    converged: bool
    problems: list[str]


# --------------------------------------------------------------------------- rank diagnostics


def _z_scale(x: np.ndarray) -> np.ndarray:
    r"""Rank-normalise ``x`` (chains, draws, dim) over the pooled draws, per coordinate.

    .. math:: z = \Phi^{-1}\!\left(\frac{r - 3/8}{S + 1/4}\right),

    :math:`r` the (average) rank among the :math:`S` pooled draws (Blom's offset, as ArviZ).
    """
    c, n, d = x.shape
    flat = x.reshape(c * n, d)
    cols = np.ascontiguousarray(flat.T)  # (dim, draws): sort along contiguous rows
    s = cols.shape[1]
    binary = np.all((cols == 0.0) | (cols == 1.0), axis=1)
    if np.all(binary):
        # 0/1 draws (mode indicators, tail indicators): the average ranks are (1 + n0)/2 for the
        # n0 zeros and n0 + (1 + n1)/2 for the ones, exactly what sorting gives, in O(S)
        n0 = np.sum(cols == 0.0, axis=1, keepdims=True).astype(float)
        r = np.where(cols == 0.0, 0.5 * (1.0 + n0), n0 + 0.5 * (1.0 + s - n0)).T
        return ndtri((r - 0.375) / (c * n + 0.25)).reshape(c, n, d)
    # one vectorised argsort gives the ranks, average ranks over ties (rankdata(method="average"),
    # what ArviZ uses) included.
    order = np.argsort(cols, axis=1)
    srt = np.take_along_axis(cols, order, axis=1)
    # average ranks (rankdata(method="average")): a run of equal sorted values [first, last] gets
    # rank (first + last)/2 + 1 -- MH chains repeat a value at every rejection
    pos = np.broadcast_to(np.arange(s), cols.shape)
    starts = np.ones(cols.shape, bool)
    starts[:, 1:] = srt[:, 1:] != srt[:, :-1]
    ends = np.ones(cols.shape, bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, pos, s - 1)[:, ::-1], axis=1)[:, ::-1]
    r = np.empty(cols.shape, dtype=float)
    np.put_along_axis(r, order, 0.5 * (first + last) + 1.0, axis=1)
    r = r.T
    return ndtri((r - 0.375) / (c * n + 0.25)).reshape(c, n, d)


def _split(x: np.ndarray) -> np.ndarray:
    """Split each chain into halves (the middle draw dropped when odd): (2 chains, draws // 2, dim)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, -half:]], axis=0)


def _rhat_rank(x: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
    r"""Rank-normalised split :math:`\hat R` = max(bulk, folded) per coordinate (Vehtari et al. eq. 11).

    ``z``: ``_z_scale(x)`` when already computed (used for an even number of draws)."""
    half = x.shape[1] // 2
    if x.shape[1] % 2:
        x = np.concatenate([x[:, :half], x[:, -half:]], axis=1)  # odd draws: drop the middle one first
        z = None
    with np.errstate(invalid="ignore", divide="ignore"):
        bulk = _nd.split_gelman_rubin(_z_scale(x) if z is None else z)
        folded = np.abs(x - np.median(x.reshape(-1, x.shape[-1]), axis=0))
        tail = _nd.split_gelman_rubin(_z_scale(folded))
    return np.maximum(bulk, tail)


def _ess(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(_nd.effective_sample_size(_split(x)), dtype=float)


def _ess_bulk(x: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
    """Bulk ESS: ESS of the split, rank-normalised draws (``z``: ``_z_scale(x)`` if computed)."""
    return _ess(_z_scale(x) if z is None else z)


def _ess_tail(x: np.ndarray) -> np.ndarray:
    r"""Tail ESS: min of the ESS of :math:`I(x \le q_{0.05})` and :math:`I(x \ge q_{0.95})`."""
    flat = x.reshape(-1, x.shape[-1])
    q05, q95 = np.quantile(flat, [0.05, 0.95], axis=0)
    lo = _ess((x <= q05).astype(float))
    hi = _ess((x >= q95).astype(float))
    return np.minimum(lo, hi)


def rank_diagnostics(samples: Array) -> dict:
    r"""Rank-normalised split :math:`\hat R`, bulk ESS and tail ESS per coordinate.

    Parameters
    ----------
    samples
        Draws of shape ``(chains, draws)`` or ``(chains, draws, ...)`` (the event is flattened);
        at least 4 draws per chain.

    Returns
    -------
    dict with ``"rhat"``, ``"ess_bulk"``, ``"ess_tail"`` (arrays over the flattened event). A
    coordinate that is constant within every chain gets :math:`\hat R = 1` and ESS ``nan`` when
    the chains agree on its value, :math:`\hat R = \infty` when they do not. A coordinate with
    non-finite draws gets ``nan`` everywhere.
    """
    x = np.asarray(samples, dtype=float)
    if x.ndim < 2:
        raise ValueError(f"samples must have shape (chains, draws, ...), got {x.shape}")
    x = x.reshape(x.shape[0], x.shape[1], -1)
    if x.shape[1] < 4:
        raise ValueError(f"need at least 4 draws per chain for split R-hat, got {x.shape[1]}")
    d = x.shape[-1]
    rhat, ess_bulk, ess_tail = (np.full(d, np.nan) for _ in range(3))
    finite = np.all(np.isfinite(x), axis=(0, 1))
    within_const = np.all(x == x[:, :1], axis=1)  # (chains, dim)
    const_chain = np.all(within_const, axis=0)
    agree = np.all(x[:, 0] == x[:1, 0], axis=0)
    ok = finite & ~const_chain
    if np.any(ok):
        xs = x[:, :, ok]
        z = _z_scale(xs)
        rhat[ok] = _rhat_rank(xs, z)
        ess_bulk[ok] = _ess_bulk(xs, z)
        ess_tail[ok] = _ess_tail(xs)
    const = finite & const_chain
    rhat[const & agree] = 1.0
    rhat[const & ~agree] = np.inf
    return {"rhat": rhat, "ess_bulk": ess_bulk, "ess_tail": ess_tail}


# --------------------------------------------------------------------------- helpers


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return str(float(v))
    if 1.0 <= abs(v) < 10.0:  # R-hat-like values: 1.012 must not print as "1.01 > 1.01"
        return f"{v:.3f}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _nanmax(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.nanmax(a)) if a.size and not np.all(np.isnan(a)) else float("nan")


def _nanmin(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.nanmin(a)) if a.size and not np.all(np.isnan(a)) else float("nan")


def _scalar(v: Any) -> Any:
    if v is None:
        return None
    a = np.asarray(v)
    return a.item() if a.size == 1 else a


def _mode_diagnostics(labels: np.ndarray, num_modes: int | None, th: Thresholds) -> tuple[dict, list[str]]:
    """Mode visits, per-chain mode weights in the two halves, their drift, and R-hat of indicators."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"mode_labels must have shape (chains, draws), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"mode_labels must be integers, got dtype {labels.dtype}")
    c, n = labels.shape
    if n < 4:
        raise ValueError(f"need at least 4 draws per chain for mode diagnostics, got {n}")
    k = int(num_modes) if num_modes is not None else int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"mode_labels must lie in [0, {k}), got range [{labels.min()}, {labels.max()}]")
    onehot = labels[..., None] == np.arange(k)  # (c, n, k)
    half = n // 2
    halves = np.stack([onehot[:, :half].mean(1), onehot[:, -half:].mean(1)], axis=1)  # (c, 2, k)
    visits = np.sum(np.any(onehot, axis=1), axis=0)  # (k,)
    diff = halves[:, 1] - halves[:, 0]  # (c, k)
    mean_diff = diff.mean(0)
    se = diff.std(0, ddof=1) / np.sqrt(c) if c > 1 else np.full(k, np.nan)
    j = int(np.argmax(np.abs(mean_diff)))
    drift, drift_se = float(abs(mean_diff[j])), float(se[j])
    problems = []
    if num_modes is not None and np.sum(visits > 0) < k:
        problems.append(
            f"only {int(np.sum(visits > 0))} of {k} modes visited: modes never visited cannot be excluded"
        )
    flagged = (np.abs(mean_diff) > th.mode_drift_sigmas * se) & (np.abs(mean_diff) > th.mode_drift_min)
    if np.any(flagged):
        m = int(np.argmax(np.where(flagged, np.abs(mean_diff), -1.0)))
        problems.append(
            f"mode weights drifted by {abs(mean_diff[m]):.2f} between halves "
            f"(mode {m}: {halves[:, 0, m].mean():.2f} -> {halves[:, 1, m].mean():.2f}, "
            f"{abs(mean_diff[m]) / se[m]:.1f} SE)"
        )
    rh = rank_diagnostics(onehot.astype(float))["rhat"]
    max_rh = _nanmax(rh)
    if max_rh > th.rhat:
        bad = int(np.sum(rh > th.rhat))
        problems.append(f"R-hat of mode indicators {_fmt(max_rh)} > {th.rhat} for {bad} of {k} modes")
    diag = {
        "mode_visits": visits,
        "mode_weights_halves": halves,
        "mode_weights": onehot.mean((0, 1)),
        "mode_drift": drift,
        "mode_drift_se": drift_se,
        "mode_rhat": rh,
    }
    return diag, problems


# --------------------------------------------------------------------------- verdicts


def mcmc_verdict(
    samples: Array,
    *,
    num_nonfinite: int | None = None,
    num_divergent: int | None = None,
    acceptance: float | None = None,
    global_acceptance: float | None = None,
    mode_labels: Array | None = None,
    num_modes: int | None = None,
    thresholds: Thresholds | None = None,
    rank: dict | None = None,
) -> Verdict:
    r"""Verdict on MCMC draws: rank-normalised :math:`\hat R`, bulk/tail ESS, divergences, modes.

    Parameters
    ----------
    samples
        Draws ``(chains, draws, ...)`` (event flattened) or ``(chains, draws)``.
    num_nonfinite, num_divergent
        Counts of non-finite / divergent proposals over the run (more than
        ``thresholds.max_nonfinite`` is a problem).
    acceptance, global_acceptance
        Mean local acceptance and mean flow (global) acceptance, reported; the latter is a
        problem below ``thresholds.min_global_acceptance``.
    mode_labels
        Integer mode label of every draw, ``(chains, draws)`` (e.g. ``target.mode_of``): gives
        mode visits, the per-chain mode weights in each half, the drift of the weights between
        halves (standard error from the spread over chains of the per-chain differences,
        :math:`\mathrm{SE} = s_c/\sqrt C`) and :math:`\hat R` of the mode indicators.
    num_modes
        Number of modes of the target; with it, unvisited modes are a problem.
    thresholds
        :class:`Thresholds`; defaults to ``Thresholds()``.
    rank
        :func:`rank_diagnostics` of these very ``samples`` when the caller has computed it
        already (a sampler's stopping rule): it is used as given, not recomputed.

    Returns
    -------
    :class:`Verdict` whose ``diagnostics`` hold ``rhat``, ``ess_bulk``, ``ess_tail`` (per
    coordinate), ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``num_nonfinite``,
    ``num_divergent``, ``acceptance``, ``global_acceptance``, ``num_chains``, ``num_draws`` and,
    with ``mode_labels``, ``mode_visits``, ``mode_weights_halves`` ``(chains, 2, modes)``,
    ``mode_weights``, ``mode_drift``, ``mode_drift_se``, ``mode_rhat``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> x = jax.random.normal(jax.random.key(0), (4, 1000, 2))  # 4 chains of exact draws
    >>> mcmc_verdict(x).converged
    True
    >>> mcmc_verdict(x + jnp.arange(4.0)[:, None, None]).problems[0]  # doctest: +ELLIPSIS
    'R-hat ... > 1.01 for 2 of 2 coordinates'

    References
    ----------
    Vehtari, Gelman, Simpson, Carpenter, Bürkner, "Rank-normalization, folding, and
    localization: an improved R-hat for assessing convergence of MCMC", arXiv:1903.08008.
    """
    th = thresholds if thresholds is not None else Thresholds()
    x = np.asarray(samples, dtype=float)
    if x.ndim < 2:
        raise ValueError(f"samples must have shape (chains, draws, ...), got {x.shape}")
    x = x.reshape(x.shape[0], x.shape[1], -1)
    c, n, d = x.shape
    problems: list[str] = []
    rd = rank_diagnostics(x) if rank is None else rank
    if any(np.shape(rd[k]) != (d,) for k in ("rhat", "ess_bulk", "ess_tail")):
        raise ValueError(f"rank diagnostics must have one entry per coordinate ({d}) of the samples")
    bad_draws = int(np.sum(~np.isfinite(x)))
    if bad_draws:
        problems.append(f"{bad_draws} non-finite values in the draws")
    max_rhat, min_bulk, min_tail = _nanmax(rd["rhat"]), _nanmin(rd["ess_bulk"]), _nanmin(rd["ess_tail"])
    if d and np.all(np.isfinite(x)) and np.all(x == x[:1, :1]):
        problems.append("every draw is the same point: the chains never moved")
    if max_rhat > th.rhat:
        bad = int(np.sum(rd["rhat"] > th.rhat))
        problems.append(f"R-hat {_fmt(max_rhat)} > {th.rhat} for {bad} of {d} coordinates")
    for name, lim, val, arr in (
        ("bulk", th.ess_bulk, min_bulk, rd["ess_bulk"]),
        ("tail", th.ess_tail, min_tail, rd["ess_tail"]),
    ):
        if val < lim:
            bad = int(np.sum(arr < lim))
            problems.append(f"{name} ESS {val:.0f} < {lim:.0f} for {bad} of {d} coordinates")
    if num_divergent is not None and int(num_divergent) > th.max_nonfinite:
        problems.append(f"{int(num_divergent)} divergent proposals")
    if num_nonfinite is not None and int(num_nonfinite) > th.max_nonfinite:
        problems.append(f"{int(num_nonfinite)} non-finite proposals")
    if global_acceptance is not None and float(global_acceptance) < th.min_global_acceptance:
        problems.append(f"flow acceptance {float(global_acceptance):.2f}: the flow is not helping")
    diag = {
        **rd,
        "max_rhat": max_rhat,
        "min_ess_bulk": min_bulk,
        "min_ess_tail": min_tail,
        "num_nonfinite": None if num_nonfinite is None else int(num_nonfinite),
        "num_divergent": None if num_divergent is None else int(num_divergent),
        "acceptance": _scalar(acceptance),
        "global_acceptance": _scalar(global_acceptance),
        "num_chains": c,
        "num_draws": n,
    }
    if mode_labels is not None:
        labels = np.asarray(mode_labels)
        if labels.shape != (c, n):
            raise ValueError(f"mode_labels must have shape (chains, draws) = {(c, n)}, got {labels.shape}")
        mdiag, mprob = _mode_diagnostics(labels, num_modes, th)
        diag.update(mdiag)
        problems.extend(mprob)
    return Verdict(diag, not problems, problems)


def khat_threshold(num_samples: int, max_khat: float = 0.7) -> float:
    r"""The sample-size-dependent :math:`\hat k` threshold :math:`\min(1 - 1/\log_{10} S,\ k_{\max})`
    (Vehtari et al. 2024, JMLR 25:72): with few weights a smaller :math:`\hat k` already makes
    the estimate unreliable (0.5 at S = 100, 0.67 at S = 1000, ``max_khat`` = 0.7 from S ≈ 2154)."""
    if num_samples <= 10:
        return 0.0
    return float(min(1.0 - 1.0 / math.log10(num_samples), max_khat))


def importance_verdict(log_weights: Array, *, thresholds: Thresholds | None = None) -> Verdict:
    r"""Verdict on importance weights: Kish ESS and Pareto :math:`\hat k`.

    .. math:: \mathrm{ESS} = \frac{(\sum_i w_i)^2}{\sum_i w_i^2}

    Problems: ESS below ``thresholds.min_ess``; :math:`\hat k` above
    :func:`khat_threshold` (the weights' tail is too heavy for the estimate to be trusted), or
    else above ``thresholds.max_khat_se`` (the weights' variance is infinite, so the CLT standard
    error is not reliable); non-finite weights (counted as zero weight), all weights non-finite.

    Returns
    -------
    :class:`Verdict` with diagnostics ``ess``, ``k_hat``, ``num_samples``, ``num_nonfinite``.
    """
    from flowsamp.estimators.pareto import pareto_k
    from flowsamp.estimators.weights import ess

    th = thresholds if thresholds is not None else Thresholds()
    lw = np.asarray(log_weights)
    if lw.ndim != 1:
        raise ValueError(f"log_weights must be 1-D, got shape {lw.shape}")
    n = lw.shape[0]
    bad = int(np.sum(~np.isfinite(lw)))
    problems: list[str] = []
    if bad == n:
        problems.append(f"all {n} importance weights are non-finite")
        e, k = 0.0, float("nan")
    else:
        e, k = float(ess(lw)), float(pareto_k(lw))
        if e < th.min_ess:
            problems.append(f"importance ESS {e:.1f} < {th.min_ess:.0f}")
        k_max = khat_threshold(n, th.max_khat)
        if k > k_max:
            problems.append(f"Pareto k-hat {k:.2f} > {k_max:.2f}: the weights are too heavy-tailed to trust")
        elif k > th.max_khat_se:
            problems.append(f"Pareto k-hat {k:.2f} > {th.max_khat_se}: the weights' variance is probably "
                            "infinite, so the standard error is not reliable (the estimate is often low by "
                            "more than it)")
        nan = int(np.sum(np.isnan(lw)))
        if nan:
            problems.append(f"{nan} of {n} importance weights are NaN (counted as zero weight)")
    diag = {"ess": e, "k_hat": k, "num_samples": n, "num_nonfinite": bad}
    return Verdict(diag, not problems, problems)


def warn_if_not_converged(verdict: Verdict, what: str) -> None:
    """Issue a :class:`NotConvergedWarning` listing ``verdict.problems`` when not converged."""
    if not verdict.converged:
        warnings.warn(
            NotConvergedWarning(f"{what} did not converge: " + "; ".join(verdict.problems)),
            stacklevel=3,
        )
