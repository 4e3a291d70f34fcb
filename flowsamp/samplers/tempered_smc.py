r"""Adaptive tempered sequential Monte Carlo: prior to posterior, with ln Z.

The particles move along the geometric path from the prior to the posterior,

.. math::
    \pi_\beta(x) \propto p_0(x)\, L(x)^{\beta}, \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_T = 1,

a configuration of :func:`flowsamp.samplers.smc` (prior base, one island, resampling at
every step, RWMH moves with the population covariance): each step choosing
:math:`\beta_{t+1}` by bisection so that the ESS of the incremental weights
:math:`w_i = L(x_i)^{\beta_{t+1} - \beta_t}` is ``target_ess`` :math:`\cdot N` (Jasra et al. 2011), then resampling (systematic) and moving every particle with
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

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.estimators.verdict import Thresholds
from flowsamp.samplers.smc import smc
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


class _Prior(NamedTuple):
    log_prob: LogProbFn
    log_Z: float = 0.0


_JOINT: dict = {}


def _joint(log_likelihood: LogProbFn, log_prior: LogProbFn) -> LogProbFn:
    """``log_prior + log_likelihood``, the same function object for the same pair (so that the
    engine's compiled programs are reused across calls)."""
    spec = (log_likelihood, log_prior, bool(jax.config.jax_enable_x64))
    if any(k[2] != spec[2] for k in _JOINT):  # see smc._programs: nothing survives an x64 switch
        _JOINT.clear()
    try:
        return _JOINT[spec]
    except TypeError:
        return lambda x: log_prior(x) + log_likelihood(x)
    except KeyError:
        pass

    def joint(x):
        return log_prior(x) + log_likelihood(x)

    if len(_JOINT) >= 16:
        _JOINT.pop(next(iter(_JOINT)))
    _JOINT[spec] = joint
    return joint


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
    progress: bool = False,
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
    progress
        Show a tqdm progress bar of β (process 0 only) with the ESS/N and acceptance of
        every step (:func:`flowsamp.samplers.smc`'s).

    Returns
    -------
    TemperedSMCOutput
        Posterior particles, :math:`\ln \hat Z` and the per-step record.
    """
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
    cb = None
    if callback is not None:
        def cb(t, st):
            callback(t, {"beta": float(st["beta"][0]), "ess": float(st["ess"][0]),
                         "acceptance": float(st["acceptance"][0]), "scale": float(st["step_size"][0]),
                         "log_Z": float(st["log_Z"][0])})

    return run_tempered(key, _joint(log_likelihood, log_prior), _Prior(log_prior), x, target_ess=target_ess,
                        num_mcmc_steps=num_mcmc_steps, initial_scale=initial_scale, max_steps=max_steps,
                        callback=cb, thresholds=thresholds, warn=warn, progress=progress)


def run_tempered(key: PRNGKey, log_prob: LogProbFn, base, x: Array, *, target_ess: float = 0.5,
                 num_mcmc_steps: int = 20, initial_scale: float | None = None, max_steps: int = 500,
                 callback: Callable | None = None, thresholds: Thresholds | None = None, warn: bool = True,
                 progress: bool = False) -> TemperedSMCOutput:
    r"""The :func:`tempered_smc` configuration of :func:`flowsamp.samplers.smc` from ``base``
    (anything :func:`~flowsamp.samplers.smc` takes, e.g. a
    :class:`~flowsamp.samplers._smc_base.ParametricBase`) to ``log_prob``, from the ``(N, d)``
    base draws ``x``: one island, resampling at every step, ``num_mcmc_steps`` RWMH moves with
    the population covariance (its diagonal below 10 particles per dimension,
    ``flowsamp.samplers._smc_moves.default_mass``). ``callback(t, stats)`` gets the engine's per-island stats."""
    out = smc(key, log_prob, base, int(x.shape[0]), initial_particles=x,
              target_ess=target_ess, resample_threshold=1.0, kernel="rwmh",
              num_mcmc_steps=num_mcmc_steps, max_mcmc_steps=num_mcmc_steps, step_size=initial_scale, num_islands=1,
              max_steps=max_steps,
              callback=callback, thresholds=thresholds, warn=warn, progress=progress, _what="tempered_smc")
    t = int(out.num_steps[0])
    diag = dict(out.diagnostics)
    diag["ess"], diag["acceptance"] = out.ess[0, :t], out.acceptance[0, :t]
    return TemperedSMCOutput(
        out.particles, out.log_Z, out.schedule[0, :t], out.ess[0, :t], out.acceptance[0, :t],
        out.step_size[0, :t], t, out.wall_s, diag, out.converged, out.problems,
    )
