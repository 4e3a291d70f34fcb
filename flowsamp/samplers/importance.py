r"""Importance sampling with a flow (or any proposal): log Z ± SE, ESS, k-hat, expectations.

Draws :math:`x_i \sim q` in memory-bounded batches (one jitted ``lax.map`` over batch keys),
forms :math:`\log w_i = \log p(x_i) - \log q(x_i)` and reads every estimate off the
log-weights with :mod:`flowsamp.estimators`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.base import Flow, Proposal, as_key
from flowsamp.estimators import ess as _ess
from flowsamp.estimators import expectation as _expectation
from flowsamp.estimators import log_evidence, pareto_k
from flowsamp.estimators import mode_weights as _mode_weights
from flowsamp.estimators.verdict import Thresholds, importance_verdict, warn_if_not_converged
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["ISResult", "importance_sampling"]

_expectation_jit = jax.jit(_expectation)
_mode_weights_jit = jax.jit(_mode_weights, static_argnums=1)


class ISResult(NamedTuple):
    r"""Result of :func:`importance_sampling`.

    Attributes
    ----------
    log_Z, log_Z_se
        :math:`\ln \hat Z = \ln \frac1N \sum_i w_i` and its delta-method standard error.
    ess
        Kish effective sample size :math:`(\sum w)^2 / \sum w^2` (divide by
        ``num_samples`` for ESS/N, or use :attr:`ess_fraction`).
    pareto_k
        PSIS tail diagnostic :math:`\hat k` (< 0.5 reliable, > 0.7 unreliable).
    elbo, elbo_se
        :math:`\frac1N\sum_i \log w_i \le \ln Z` in expectation, and its standard error.
    log_weights
        :math:`\log w_i = \log p(x_i) - \log q(x_i)`, shape ``(N,)``.
    log_q
        :math:`\log q(x_i)`, shape ``(N,)``.
    samples
        :math:`x_i`, shape ``(N, dim)``, or ``None`` when ``keep_samples=False``.
    observables
        ``observables(x_i)`` stacked, or ``None`` when not requested.
    num_nonfinite
        Number of draws whose log-weight is NaN (given zero weight).
    diagnostics
        :func:`flowsamp.estimators.importance_verdict` diagnostics: ``ess``, ``k_hat``,
        ``num_samples``, ``num_nonfinite`` (NaN or infinite log-weights).
    converged
        Whether ESS :math:`\ge` ``thresholds.min_ess``, :math:`\hat k \le` ``thresholds.max_khat``
        and no log-weight is NaN.
    problems
        The failed checks as plain sentences.
    """

    log_Z: Array
    log_Z_se: Array
    ess: Array
    pareto_k: Array
    elbo: Array
    elbo_se: Array
    log_weights: Array
    log_q: Array
    samples: Array | None
    observables: Any
    num_nonfinite: int
    diagnostics: dict
    converged: bool
    problems: list

    @property
    def num_samples(self) -> int:
        """The number N of draws."""
        return int(self.log_weights.shape[0])

    @property
    def ess_fraction(self) -> Array:
        r""":math:`\mathrm{ESS}/N \in (0, 1]`."""
        return self.ess / self.num_samples

    def expectation(self, f: Callable[[Array], Any] | None = None) -> tuple[Any, Any]:
        r"""Self-normalised estimate of :math:`E_p[f]` and its standard error.

        .. math:: \hat\mu = \sum_i \bar w_i f(x_i),\qquad
                  \operatorname{se}^2 = \sum_i \bar w_i^2 (f(x_i) - \hat\mu)^2 .

        ``f(x) -> array`` on one point (vmapped over samples; needs ``samples``); with
        ``f=None`` the stored ``observables`` are averaged. Returns ``(mean, se)`` with
        the shape of ``f(x)`` (pytrees of values give pytrees of results).
        """
        if f is None:
            if self.observables is None:
                raise ValueError("expectation(): pass f, or run importance_sampling(observables=...)")
            values = self.observables
        else:
            if self.samples is None:
                raise ValueError(
                    "expectation(f): samples were not kept (keep_samples=False); "
                    "pass observables=f to importance_sampling instead"
                )
            values = jax.vmap(f)(self.samples)
        leaves, tree = jax.tree.flatten(values)
        out = [_expectation_jit(jnp.asarray(v), self.log_weights) for v in leaves]
        return (jax.tree.unflatten(tree, [m for m, _ in out]),
                jax.tree.unflatten(tree, [s for _, s in out]))

    def mode_weights(self, mode_of: Callable[[Array], Array] | Array, num_modes: int) -> tuple[Array, Array]:
        r"""Mode weights :math:`\hat\pi_m = \sum_i \bar w_i 1[\mathrm{mode}(x_i) = m]` and SEs.

        ``mode_of`` is a labelling function of the samples (e.g. ``target.mode_of``, applied
        to the ``(N, dim)`` array) or an integer label array of shape ``(N,)``.
        """
        if callable(mode_of):
            if self.samples is None:
                raise ValueError("mode_weights(mode_of): samples were not kept; pass labels instead")
            labels = mode_of(self.samples)
        else:
            labels = mode_of
        return _mode_weights_jit(jnp.asarray(labels), num_modes, self.log_weights)


def _draw(source: Any, params: Any, key: PRNGKey, n: int) -> tuple[Array, Array]:
    if isinstance(source, Flow):
        return source.sample_and_log_prob(params, key, n)
    if isinstance(source, Proposal):
        return jax.vmap(source.sample_and_log_prob)(jax.random.split(key, n))
    return source(key, n)


def _impl(params, key, *, source, log_prob, num_samples, batch_size, keep_samples, observables):
    num_batches = math.ceil(num_samples / batch_size)
    log_prob_v = jax.vmap(log_prob)

    def one_batch(k):
        x, log_q = _draw(source, params, k, batch_size)
        out = {"log_q": log_q, "log_p": log_prob_v(x)}
        if keep_samples:
            out["x"] = x
        if observables is not None:
            out["obs"] = jax.vmap(observables)(x)
        return out

    if num_batches == 1:
        out = one_batch(key)
    else:
        out = jax.lax.map(one_batch, jax.random.split(key, num_batches))
        out = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), out)
    return jax.tree.map(lambda a: a[:num_samples], out)


@jax.jit
def _summaries(log_w: Array) -> dict[str, Array]:
    """All scalar estimates from the log-weights in one compiled program."""
    log_Z, log_Z_se = log_evidence(log_w)
    n = jnp.asarray(log_w.shape[0], log_w.dtype)
    return {
        "log_Z": log_Z,
        "log_Z_se": log_Z_se,
        "ess": _ess(log_w),
        "pareto_k": pareto_k(log_w),
        "elbo": jnp.mean(log_w),
        "elbo_se": jnp.std(log_w) / jnp.sqrt(n),
        "num_nonfinite": jnp.sum(jnp.isnan(log_w)),
    }


_run = jax.jit(
    _impl,
    static_argnames=("source", "log_prob", "num_samples", "batch_size", "keep_samples", "observables"),
)


def importance_sampling(
    key: PRNGKey,
    proposal: Flow | Proposal | Callable[[PRNGKey, int], tuple[Array, Array]],
    params: Any,
    log_prob: LogProbFn,
    num_samples: int,
    *,
    batch_size: int = 8192,
    keep_samples: bool = True,
    observables: Callable[[Array], Any] | None = None,
    thresholds: Thresholds | None = None,
    warn: bool = True,
) -> ISResult:
    r"""Importance sampling of an unnormalised target p with proposal q.

    .. math::
        x_i \sim q,\quad \log w_i = \log p(x_i) - \log q(x_i),\quad
        \hat Z = \frac1N\sum_{i=1}^N w_i,\quad
        \bar w_i = \frac{w_i}{\sum_j w_j},\quad
        \mathrm{ESS} = \frac{(\sum_i w_i)^2}{\sum_i w_i^2}.

    Parameters
    ----------
    key
        PRNG key (any ``impl``).
    proposal
        A :class:`~flowsamp.base.Flow` (with ``params``), a :class:`~flowsamp.base.Proposal`
        (``params=None``), or a callable ``sample_and_log_prob(key, n) -> (x, log_q)``
        returning ``(n, dim)`` and ``(n,)`` (``params=None``).
    params
        Flow parameters, or ``None`` for a proposal / callable.
    log_prob
        Unnormalised target log-density on one point of shape ``(dim,)``.
    num_samples
        Number N of draws.
    batch_size
        Draws per batch: memory holds one batch of intermediate values at a time (plus the
        ``(N,)`` log-weights and, when kept, the ``(N, dim)`` samples). Batches use keys
        split from ``key``, so results depend on ``batch_size`` (not on anything else).
    keep_samples
        Keep the samples (set ``False`` for huge N; use ``observables`` then).
    observables
        Optional ``f(x) -> array (pytree)`` evaluated inside the batched loop and stored;
        ``result.expectation()`` then returns :math:`E_p[f]` and its SE.
    thresholds
        :class:`flowsamp.estimators.Thresholds` of the verdict (``min_ess``, ``max_khat``).
    warn
        Issue a :class:`flowsamp.NotConvergedWarning` when the verdict fails.

    Returns
    -------
    ISResult
        ``log_Z ± log_Z_se``, ``ess``, ``pareto_k``, ``elbo``, ``log_weights``, ``samples``...
        NaN log-weights (a NaN target density) get zero weight and are counted in
        ``num_nonfinite``. With the verdict: ``diagnostics``, ``converged``, ``problems``.

    Raises
    ------
    ValueError
        When every log-weight is non-finite (NaN target densities, ``log_prob = -inf`` or
        ``log_q = +inf`` at every draw): no estimate exists.
    """
    key = as_key(key)
    for name, v in (("num_samples", num_samples), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"importance_sampling: `{name}` must be a positive int, got {v!r}")
    if isinstance(proposal, Flow):
        if params is None:
            raise ValueError("importance_sampling: a Flow proposal needs its `params`")
    elif isinstance(proposal, Proposal) or callable(proposal):
        if params is not None:
            raise ValueError(
                "importance_sampling: `params` must be None for a Proposal or a callable "
                "(freeze a flow with fs.flows.proposal(flow, params) or pass the Flow)"
            )
    else:
        raise TypeError(
            "importance_sampling: `proposal` must be a Flow, a Proposal or a callable "
            f"sample_and_log_prob(key, n); got {type(proposal).__name__}"
        )
    if not callable(log_prob):
        raise TypeError("importance_sampling: `log_prob` must be callable")
    num_samples, batch_size = int(num_samples), int(min(batch_size, num_samples))
    out = _run(
        params, key, source=proposal, log_prob=log_prob, num_samples=num_samples,
        batch_size=batch_size, keep_samples=bool(keep_samples), observables=observables,
    )
    log_q = out["log_q"]
    log_w = out["log_p"] - log_q
    if log_w.ndim != 1 or log_w.shape[0] != num_samples:
        raise ValueError(f"importance_sampling: log-weights of shape {log_w.shape}, expected ({num_samples},)")
    finite = np.isfinite(np.asarray(log_w))
    if not finite.any():
        lp, lq = np.asarray(out["log_p"]), np.asarray(log_q)
        raise ValueError(
            f"importance_sampling: all {num_samples} importance weights are non-finite: "
            f"log_prob is NaN at {int(np.isnan(lp).sum())} draws and -inf at {int(np.isneginf(lp).sum())}, "
            f"log_q is non-finite at {int((~np.isfinite(lq)).sum())}; the proposal does not cover the target "
            "(or the target's log_prob fails on its draws)"
        )
    summary = _summaries(log_w)
    verdict = importance_verdict(log_w, thresholds=thresholds)
    if warn:
        warn_if_not_converged(verdict, "importance_sampling")
    return ISResult(
        log_Z=summary["log_Z"],
        log_Z_se=summary["log_Z_se"],
        ess=summary["ess"],
        pareto_k=summary["pareto_k"],
        elbo=summary["elbo"],
        elbo_se=summary["elbo_se"],
        log_weights=log_w,
        log_q=log_q,
        samples=out.get("x"),
        observables=out.get("obs"),
        num_nonfinite=int(summary["num_nonfinite"]),
        diagnostics=verdict.diagnostics,
        converged=verdict.converged,
        problems=verdict.problems,
    )
