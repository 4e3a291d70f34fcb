r"""Importance reweighting from a learned potential to the true one ("approximate, then correct").

Draws :math:`x_i` made cheaply under a learned log-density :math:`\log\tilde\pi` (an MLP potential,
:math:`\log\tilde\pi = -\beta \tilde U`) are corrected to the true, expensive :math:`\log\pi` by the
self-normalised importance weights

.. math::

    \log w_i = \log\pi(x_i) - \log\tilde\pi(x_i), \qquad
    \hat\mu_f = \sum_i \bar w_i f(x_i), \qquad
    \operatorname{se}(\hat\mu_f)^2 \approx \sum_i \bar w_i^2 \big(f(x_i) - \hat\mu_f\big)^2,

(seed 000's "approximate then correct"; seed 004 samples under a machine-learning potential and
evaluates the expensive energy on a subset). Normalising constants cancel, so both log-densities may
be unnormalised. The estimate is consistent whenever :math:`\tilde\pi > 0` wherever :math:`\pi > 0`,
but it is only *trustworthy* when the weights are not too heavy-tailed: the verdict
(:func:`flowsamp.estimators.importance_verdict`) flags a Kish ESS below ``thresholds.min_ess`` or a
Pareto :math:`\hat k` above ``thresholds.max_khat`` (Vehtari et al., arXiv:1507.02646): then the learned
potential is too far from the true one.

The standard errors assume independent draws: pass thinned MCMC output (spacing beyond the
integrated autocorrelation time) or the last states of many independent chains.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.estimators.evidence import expectation
from flowsamp.estimators.verdict import Thresholds, importance_verdict, warn_if_not_converged
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["ReweightResult", "reweight"]


class ReweightResult(NamedTuple):
    """Output of :func:`reweight`.

    ``mean``/``se``: the reweighted expectations of the observables under the true :math:`\\pi` and
    their standard errors; ``learned_mean``: the unweighted means (the learned potential's answer);
    ``log_weights``; ``ess`` (Kish) and ``ess_fraction`` (ESS/N); ``k_hat`` (Pareto);
    ``num_expensive_evaluations`` (evaluations of the true log-density); ``indices``: the draws that
    were reweighted; ``diagnostics``/``converged``/``problems``: the importance verdict.
    """

    mean: np.ndarray
    se: np.ndarray
    learned_mean: np.ndarray
    log_weights: np.ndarray
    ess: float
    ess_fraction: float
    k_hat: float
    num_expensive_evaluations: int
    indices: np.ndarray
    diagnostics: dict
    converged: bool
    problems: list


def _evaluate(fn: Callable, x: Array, batch_size: int | None) -> Array:
    if batch_size is None:
        return jax.jit(jax.vmap(fn))(x)
    return jax.jit(lambda x: jax.lax.map(fn, x, batch_size=batch_size))(x)


def reweight(
    samples: Array,
    log_prob_true: LogProbFn,
    log_prob_learned: LogProbFn | Array,
    observables: Callable[[Array], Array] | None = None,
    *,
    key: PRNGKey | None = None,
    num_expensive: int | None = None,
    batch_size: int | None = None,
    thresholds: Thresholds | None = None,
) -> ReweightResult:
    r"""Reweight draws of a learned potential to the true log-density; expectations with SE and a verdict.

    Parameters
    ----------
    samples
        ``(N, dim)`` (near-)independent draws from :math:`\tilde\pi` (``log_prob_learned``).
    log_prob_true
        The expensive :math:`\log\pi(x)` of one point (unnormalised).
    log_prob_learned
        :math:`\log\tilde\pi(x)` of one point, or its values on ``samples`` (shape ``(N,)``)
        when the sampler already has them.
    observables
        ``f(x) -> (k,)`` or scalar; default the coordinates themselves.
    key, num_expensive
        Evaluate :math:`\log\pi` only on ``num_expensive`` draws chosen uniformly without
        replacement with ``key`` (a subset of independent draws is independent); default all.
    batch_size
        Evaluate :math:`\log\pi` by ``lax.map`` in batches of this size (memory/cost control for an
        expensive target); default one ``vmap``.
    thresholds
        Verdict thresholds (``min_ess``, ``max_khat``).

    Returns
    -------
    ReweightResult
        Issues :class:`flowsamp.NotConvergedWarning` when the verdict fails.
    """
    x = jnp.asarray(samples)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"reweight: samples must have shape (N >= 2, dim), got {x.shape}")
    if not callable(log_prob_true):
        raise TypeError("reweight: log_prob_true must be callable")
    n = x.shape[0]
    idx = np.arange(n)
    if num_expensive is not None:
        if isinstance(num_expensive, bool) or not isinstance(num_expensive, (int, np.integer)) or not 2 <= num_expensive <= n:
            raise ValueError(f"reweight: num_expensive must be an int in [2, {n}], got {num_expensive!r}")
        if key is None:
            raise ValueError("reweight: num_expensive needs a key to choose the subset")
        idx = np.sort(np.asarray(jax.random.choice(key, n, (int(num_expensive),), replace=False)))
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"reweight: batch_size must be a positive int, got {batch_size!r}")
    xs = x[idx]
    if callable(log_prob_learned):
        lq = _evaluate(log_prob_learned, xs, None)
    else:
        lq_all = jnp.asarray(log_prob_learned)
        if lq_all.shape != (n,):
            raise ValueError(f"reweight: log_prob_learned values must have shape ({n},), got {lq_all.shape}")
        lq = lq_all[idx]
    lp = _evaluate(log_prob_true, xs, batch_size)
    log_w = jnp.asarray(lp - lq)
    f = jax.vmap(observables)(xs) if observables is not None else xs
    f = jnp.asarray(f).reshape(len(idx), -1)
    mean, se = expectation(f, log_w)
    verdict = importance_verdict(log_w, thresholds=thresholds)
    problems = list(verdict.problems)
    if problems:
        problems.insert(0, "the learned potential is too far from the true one to trust the reweighting")
    verdict = verdict._replace(converged=not problems, problems=problems)
    warn_if_not_converged(verdict, "reweight")
    e = float(verdict.diagnostics["ess"])
    return ReweightResult(
        mean=np.asarray(mean), se=np.asarray(se), learned_mean=np.asarray(jnp.mean(f, axis=0)),
        log_weights=np.asarray(log_w), ess=e, ess_fraction=e / len(idx), k_hat=float(verdict.diagnostics["k_hat"]),
        num_expensive_evaluations=len(idx), indices=idx, diagnostics=verdict.diagnostics,
        converged=verdict.converged, problems=problems,
    )
