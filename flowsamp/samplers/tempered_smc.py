r"""Adaptive tempered sequential Monte Carlo: prior to posterior, with ln Z.

The particles move along the geometric path from the prior to the posterior,

.. math::
    \pi_\beta(x) \propto p_0(x)\, L(x)^{\beta}, \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_T = 1,

each step choosing :math:`\beta_{t+1}` by bisection so that the ESS of the incremental
weights :math:`w_i = L(x_i)^{\beta_{t+1} - \beta_t}` is ``target_ess`` :math:`\cdot N`
(Jasra et al. 2011), then resampling (systematic) and moving every particle with
``num_mcmc_steps`` random-walk Metropolis steps that leave :math:`\pi_{\beta_{t+1}}`
invariant. The proposal is :math:`N(x, s^2 \hat\Sigma)` with :math:`\hat\Sigma` the
particles' covariance, and the scale ``s`` adapted between steps towards acceptance 0.234.
The evidence estimate is the product of the mean incremental weights,

.. math:: \ln \hat Z = \sum_t \ln \frac1N \sum_i L(x_i^{(t)})^{\beta_{t+1}-\beta_t},

unbiased for :math:`Z` (Del Moral, Doucet, Jasra 2006). Tempering is what lets particles
find narrow, well separated modes: at small β every mode's basin is wide, and the
resampling weights then transfer mass between modes exactly, which a local MCMC chain
cannot do.
"""

from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from flowsamp.base import as_key, check_finite_positions, metropolis_accept
from flowsamp.estimators.verdict import Thresholds, Verdict, warn_if_not_converged
from flowsamp.estimators.weights import ess as kish_ess
from flowsamp.kernels.adaptation import TARGET_ACCEPTANCE, robbins_monro
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["TemperedSMCOutput", "tempered_smc"]


class TemperedSMCOutput(NamedTuple):
    """Result of :func:`tempered_smc`.

    ``particles`` (N, d): equally weighted draws from the posterior :math:`\\pi_1` (after the
    last resampling and moves, in random order); ``log_Z``: :math:`\\ln \\hat Z` relative to the prior's
    normalisation; ``betas``: the inverse temperatures :math:`\\beta_1..\\beta_T`; ``ess``:
    ESS/N of each step's incremental weights; ``acceptance``: mean RWMH acceptance per step;
    ``scale``: the proposal scale s per step; ``num_steps`` T; ``wall_s`` compile included;
    ``diagnostics`` (``ess`` per step, ``min_ess``, ``final_ess`` = Kish ESS of the last
    incremental weights in particles, ``acceptance`` per step, ``min_acceptance``,
    ``num_steps``, ``final_beta``), ``converged`` and ``problems``: :math:`\beta` short of 1
    after ``max_steps``, a move step whose acceptance fell below
    ``thresholds.min_acceptance`` (the particles barely moved: resampled copies stay copies),
    or a final ESS below ``thresholds.min_ess``.
    """

    particles: Array
    log_Z: float
    betas: np.ndarray
    ess: np.ndarray
    acceptance: np.ndarray
    scale: np.ndarray
    num_steps: int
    wall_s: float
    diagnostics: dict
    converged: bool
    problems: list


def _systematic_indices(key: PRNGKey, log_w: Array) -> Array:
    n = log_w.shape[0]
    w = jnp.exp(log_w - logsumexp(log_w))
    cdf = jnp.cumsum(w)
    u = (jax.random.uniform(key, (), dtype=w.dtype) + jnp.arange(n, dtype=w.dtype)) / n
    return jnp.minimum(jnp.searchsorted(cdf, u * cdf[-1]), n - 1)


def _next_beta(beta: Array, log_lik: Array, target_ess: float) -> Array:
    """Largest β' in (β, 1] with ESS(exp((β'-β) log L)) >= target_ess N, by bisection."""
    n = log_lik.shape[0]
    ll = jnp.where(jnp.isfinite(log_lik), log_lik, -jnp.inf)

    def ess_frac(b):
        return kish_ess((b - beta) * ll) / n

    def body(_, lo_hi):
        lo, hi = lo_hi
        mid = 0.5 * (lo + hi)
        ok = ess_frac(mid) >= target_ess
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    one = jnp.ones_like(beta)
    lo, _ = jax.lax.fori_loop(0, 60, body, (beta, one))
    # never stall: at least a tiny step even when one particle dominates
    return jnp.where(ess_frac(one) >= target_ess, one, jnp.maximum(lo, beta + 1e-6 * (1.0 - beta)))


def tempered_smc(
    key: PRNGKey,
    log_likelihood: LogProbFn,
    log_prior: LogProbFn,
    initial_particles: Array,
    *,
    target_ess: float = 0.5,
    num_mcmc_steps: int = 20,
    initial_scale: float | None = None,
    max_steps: int = 500,
    callback: Callable[[int, dict], None] | None = None,
    thresholds: Thresholds | None = None,
    warn: bool = True,
) -> TemperedSMCOutput:
    r"""Run adaptive tempered SMC from prior draws to the posterior :math:`p_0 L / Z`.

    Parameters
    ----------
    key
        PRNG key.
    log_likelihood, log_prior
        :math:`\ln L(x)` and :math:`\ln p_0(x)` of one point ``(d,)`` (vmapped here);
        ``log_prior`` need only be known up to a constant (it shifts ``log_Z`` by it).
    initial_particles
        ``(N, d)`` exact draws from the prior :math:`p_0` (e.g.
        ``fs.numpyro.prior_target(model).init_positions(key, N)``).
    target_ess
        ESS/N kept at every tempering step, in (0, 1).
    num_mcmc_steps
        Random-walk Metropolis steps per particle after each resampling.
    initial_scale
        Starting proposal scale s (default :math:`2.38/\sqrt d`).
    max_steps
        Budget of tempering steps; if β has not reached 1 by then the result is returned
        not converged (``problems`` says so) with a :class:`flowsamp.NotConvergedWarning`.
    callback
        ``callback(step, stats)`` on the host after each step (``beta``, ``ess``,
        ``acceptance``, ``scale``, ``log_Z``).
    thresholds
        :class:`flowsamp.estimators.Thresholds` of the verdict (``min_acceptance``, ``min_ess``).
    warn
        Issue a :class:`flowsamp.NotConvergedWarning` when the verdict fails.

    Returns
    -------
    TemperedSMCOutput
        Posterior particles, :math:`\ln \hat Z` and the per-step record.
    """
    t0 = time.perf_counter()
    x = jnp.asarray(initial_particles)
    if x.ndim != 2:
        raise ValueError(f"initial_particles must have shape (N, d), got {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"initial_particles must be floating point, got {x.dtype}")
    n, d = x.shape
    if n < 2:
        raise ValueError(f"tempered_smc needs at least 2 particles, got {n}")
    if not 0.0 < float(target_ess) < 1.0:
        raise ValueError(f"target_ess must lie in (0, 1), got {target_ess}")
    if not (isinstance(num_mcmc_steps, int) and num_mcmc_steps >= 1):
        raise ValueError(f"num_mcmc_steps must be a positive int, got {num_mcmc_steps!r}")
    check_finite_positions(x, "initial particle")
    ll_v, lp_v = jax.vmap(log_likelihood), jax.vmap(log_prior)
    dtype = x.dtype
    scale = jnp.asarray(2.38 / math.sqrt(d) if initial_scale is None else initial_scale, dtype)

    @jax.jit
    def init(x):
        return ll_v(x), lp_v(x)

    @jax.jit
    def step(key, x, ll, lp, beta, scale):
        k_res, k_mcmc = jax.random.split(key)
        new_beta = _next_beta(beta, ll, target_ess)
        lw = (new_beta - beta) * jnp.where(jnp.isfinite(ll), ll, -jnp.inf)
        log_inc = logsumexp(lw) - jnp.log(n)
        ess = kish_ess(lw) / n
        idx = _systematic_indices(k_res, lw)
        x, ll, lp = x[idx], ll[idx], lp[idx]
        cov = jnp.cov(x, rowvar=False).reshape(d, d) + 1e-10 * jnp.eye(d, dtype=dtype)
        chol = jnp.linalg.cholesky(cov)

        def mh(carry, k):
            x, ll, lp, s = carry
            k_prop, k_acc = jax.random.split(k)
            y = x + s * jax.random.normal(k_prop, x.shape, dtype) @ chol.T
            ll_y, lp_y = ll_v(y), lp_v(y)
            log_ratio = (lp_y + new_beta * ll_y) - (lp + new_beta * ll)
            acc, rate, _ = metropolis_accept(k_acc, log_ratio)
            x = jnp.where(acc[:, None], y, x)
            ll, lp = jnp.where(acc, ll_y, ll), jnp.where(acc, lp_y, lp)
            mean_rate = jnp.mean(rate)
            scale_adapt = robbins_monro(TARGET_ACCEPTANCE["rwmh"], 1.0)
            s = jnp.exp(scale_adapt.update(scale_adapt.init(s), mean_rate).log_step_size)
            return (x, ll, lp, s), mean_rate

        (x, ll, lp, scale), rates = jax.lax.scan(mh, (x, ll, lp, scale), jax.random.split(k_mcmc, num_mcmc_steps))
        return x, ll, lp, new_beta, scale, log_inc, ess, jnp.mean(rates)

    ll, lp = init(x)
    if not bool(jnp.all(jnp.isfinite(lp))):
        raise ValueError("log_prior is not finite at some initial particle")
    key = as_key(key)
    beta = jnp.zeros((), dtype)
    log_Z = 0.0
    betas, esss, accs, scales = [], [], [], []
    for t in range(max_steps):
        key, k = jax.random.split(key)
        x, ll, lp, beta, scale, log_inc, ess, acc = step(k, x, ll, lp, beta, scale)
        log_Z += float(log_inc)
        betas.append(float(beta)), esss.append(float(ess)), accs.append(float(acc)), scales.append(float(scale))
        if callback is not None:
            callback(t, {"beta": betas[-1], "ess": esss[-1], "acceptance": accs[-1], "scale": scales[-1], "log_Z": log_Z})
        if betas[-1] >= 1.0:
            break
    # systematic resampling leaves copies of one ancestor next to each other: shuffle, so that
    # any subset (e.g. the first C particles as MCMC starting points) is a fair draw
    x = x[jax.random.permutation(key, n)]
    verdict = _verdict(np.asarray(betas), np.asarray(esss), np.asarray(accs), n, max_steps, thresholds)
    if warn:
        warn_if_not_converged(verdict, "tempered_smc")
    return TemperedSMCOutput(
        x, log_Z, np.asarray(betas), np.asarray(esss), np.asarray(accs), np.asarray(scales), len(betas),
        time.perf_counter() - t0, *verdict,
    )


def _verdict(betas: np.ndarray, ess: np.ndarray, acc: np.ndarray, n: int, max_steps: int,
             thresholds: Thresholds | None) -> Verdict:
    th = thresholds if thresholds is not None else Thresholds()
    problems = []
    if betas[-1] < 1.0:
        problems.append(
            f"beta reached only {betas[-1]:.3g} after max_steps={max_steps}: the particles are not "
            "posterior draws and log_Z is that of the last tempered distribution"
        )
    low = acc < th.min_acceptance
    if np.any(low):
        t = int(np.argmax(low))
        problems.append(
            f"move acceptance {acc[t]:.3f} < {th.min_acceptance} at step {t} (beta {betas[t]:.3g}): "
            "the particles barely move, resampled copies stay copies"
        )
    final_ess = float(ess[-1] * n)
    if final_ess < th.min_ess:
        problems.append(f"final-step ESS {final_ess:.0f} < {th.min_ess:.0f} particles")
    diag = {
        "ess": ess,
        "min_ess": float(ess.min()),
        "final_ess": final_ess,
        "acceptance": acc,
        "min_acceptance": float(acc.min()),
        "num_steps": int(len(betas)),
        "final_beta": float(betas[-1]),
    }
    return Verdict(diag, not problems, problems)
