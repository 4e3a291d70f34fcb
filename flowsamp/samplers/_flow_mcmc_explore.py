r"""Explore before exploiting: the tempered-SMC warm start of the adaptive flow sampler.

A flow trained on the samples of chains that all start in one mode never proposes a mode
8σ away, and :math:`\hat R` between chains that all sit in one mode cannot see the others.
So before the global-local loop, :func:`explore` runs adaptive tempered SMC
(:func:`flowsamp.samplers.tempered_smc`) along the geometric path

.. math:: \pi_\beta(x) \propto p_0(x)^{1-\beta}\, p(x)^{\beta}, \qquad
          p_0 = \mathcal N\big(\bar x_0,\ \mathrm{diag}(s^2)\big),

from an over-dispersed Gaussian :math:`p_0` centred on the mean of the initial positions,
with per-coordinate scale :math:`s_i = 5 \max(1, \mathrm{sd}_i(x_0))`
(:data:`EXPLORE_SCALE`; over-dispersed starting points relative to the posterior as Gelman &
Rubin 1992 ask, in the unit scale that unconstrained parameterisations such as Stan's
:math:`U(-2, 2)` initialisation assume). At small β every mode's basin is wide and the
resampling weights move mass between modes exactly, which local MCMC cannot do.

The particles (shuffled by ``tempered_smc``) are split into a *training* and a
*validation* part. The training part fits the affine preconditioner
(:func:`flowsamp.flows.fit_affine`) and trains the flow by forward KL
(:func:`flowsamp.train.fit`), early-stopped on the validation NLL
(:func:`flowsamp.train.early_stopping`); the chains start from validation particles, points
the flow never trained on (notebook 05: chains started on a flow's training points leave them
too readily, a bias that decays only as the chains mix).

Why one base is not enough: on the geometric path a unit-variance mode at distance :math:`r`
from the base centre carries, relative to the mode at the centre, the mass
:math:`\exp\{-\tfrac12 f(\beta) r^2\}`, :math:`f(\beta) = \beta(1-\beta)s^{-2}/(\beta + (1-\beta)s^{-2})
\le s^{-2}`, largest just when the modes separate (β ~ 0.05-0.3). With :math:`s = 5` a mode
:math:`r \approx 28` away is down by ~10 nats there, so none of a few thousand particles is
left in it and resampling cannot bring it back (in the 4-D four-mode 20σ mixture started in
one mode, two of the four modes were lost this way, :math:`\ln\hat Z` = -1.0 for 0). So the base is grown in
rounds (``max_rounds``, :data:`EXPLORE_GROWTH`): the rule :math:`s = 5\max(1, \sigma)` that set
the first base from the spread of the initial positions is applied to the particles found
(:math:`\sigma_{\max}`, their largest sd in any direction, :func:`population_spread`), and
while it asks for a base at least twice as wide the round is rerun from that base, centred on
the particles' mean (the same 4-D mixture: round 2 from s = 48 finds all four modes, :math:`\ln\hat Z` =
0.006). A far mode is found only when the modes found so far span a length comparable to its
distance; modes beyond that (a lone far mode from a start in one mode) stay invisible to the
growth rule.

So when the rounds stop because no wider base is asked for, one *check round* runs from a base
:data:`EXPLORE_CHECK` = 4 times wider, centred on the particles' mean, with a quarter of the
particles and half the RWMH steps when the round is large, else the round's own size and compiled
program (:func:`check_size`): it only has to see mass, not weigh it.
When its particles' spread asks for a wider base by the same rule (:data:`EXPLORE_GROWTH`), a full
round is run from that base (and the rounds go on as before); otherwise the exploration is done and
``notes`` says how far it searched: a mode much farther out than the check base (or with a basin
too narrow to hold any particle on the tempered path from there) cannot be excluded by any finite
exploration, and on a unimodal target that sentence is true too, so it is a note of the verdict
(``diagnostics["notes"]``), not a problem: ``converged`` stays a statement about the modes visited.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowsamp.base import Flow, acceptance_probability
from flowsamp.flows.preconditioning import MAX_FULL_DIM, Affine, fit_affine, preconditioned
from flowsamp.samplers._smc_base import diagonal_gaussian_base
from flowsamp.samplers.tempered_smc import TemperedSMCOutput, run_tempered
from flowsamp.train.early_stopping import early_stopping
from flowsamp.train.fit import fit
from flowsamp.train.losses import forward_kl
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = [
    "CHECK_MIN_PARTICLES", "CHECK_REUSE_WORK", "EXPLORE_CHECK", "EXPLORE_GROWTH", "EXPLORE_ROUNDS", "EXPLORE_SCALE",
    "Exploration",
    "check_size", "default_base_scale", "default_num_particles",
    "default_step_size", "explore", "imh_acceptance_estimate", "population_spread",
]

EXPLORE_SCALE = 5.0
"""Base scale of the warm start in units of max(1, spread of what is known of the target: the
initial positions, then the particles of the previous round)."""

EXPLORE_GROWTH = 2.0
"""A new round from a wider base is run when the rule :math:`s = 5\max(1, \sigma_{\max})` applied
to the particles found asks for a base at least this many times wider in some coordinate
(the suppression of a far mode on the tempered path, :math:`\propto r^2/s^2`, then falls at
least 4-fold)."""

EXPLORE_ROUNDS = 3
"""Most tempered-SMC rounds of :func:`explore` (the first, and up to two from wider bases)."""

EXPLORE_CHECK = 4.0
r"""Base scale of the check round relative to the last round's (:func:`explore`). A mode at
distance :math:`r` from the base centre is suppressed on the tempered path by at most
:math:`r^2/(2s^2)` nats: from the first round's :math:`s = 5` a lone mode 25σ away is down by
12.5 nats (no particle of a few thousand reaches it); from :math:`4s = 20`, by 0.8."""

CHECK_MIN_PARTICLES = 512
"""Fewest particles of the check round."""

CHECK_REUSE_WORK = 2 ** 23
"""Largest round work :math:`N m d` (particles x RWMH steps x dimension) at which the check round
has the round's size and reuses its compiled program (:func:`check_size`)."""

_CHECK_STREAM = 0x7FFF  # fold_in data of the check round's keys (rounds use 1, 2, ...)


MIN_PARTICLES = 2048
"""Fewest exploration particles (enough to see and weigh a few modes)."""

MAX_PARTICLES = 16384
"""Most exploration particles chosen by :func:`default_num_particles` (cost grows linearly)."""

KL_TARGET = 0.25
"""Target Kullback-Leibler error (nats) of the full-covariance affine fit, see
:func:`default_num_particles`."""


@jax.jit
def _split5(key: PRNGKey) -> tuple:
    """``split(key, 5)`` as a tuple (unpacking an array of keys is a program of its own)."""
    k = jax.random.split(key, 5)
    return k[0], k[1], k[2], k[3], k[4]


@functools.partial(jax.jit, static_argnums=3)
def _base_draws(key: PRNGKey, loc: Array, scale: Array, n: int) -> Array:
    """``n`` draws of :math:`\mathcal N(\text{loc}, \mathrm{diag}(\text{scale}^2))` (one
    program per shape, built once for every run: the base is data, not a constant)."""
    return loc + scale * jax.random.normal(key, (n, loc.shape[-1]), loc.dtype)


def default_num_particles(dim: int) -> int:
    r"""Exploration particles :math:`N` such that the full-covariance affine fit is good enough.

    A Gaussian fitted by maximum likelihood to :math:`n` exact draws of a Gaussian is off by
    :math:`\mathbb E\,\mathrm{KL} \approx d(d+1)/(4n)` nats (the :math:`d(d+1)/2` covariance
    parameters each cost :math:`1/(2n)`), and an independence sampler's acceptance falls fast
    with KL (in 100-D, 2048 particles gave KL ~1.5 nats and an IMH efficiency of ~1 %). So

    .. math:: N = \min\Big(N_{\max},\ \max\big(N_{\min},\ \lceil d(d+1)/(2\,\mathrm{KL}^*)\rceil\big)\Big),

    with :math:`\mathrm{KL}^* = 0.25` (:data:`KL_TARGET`; the fit then sees the 3/4 of
    :math:`N` that train, :math:`\mathrm{KL} \approx \mathrm{KL}^*/1.5`),
    :math:`N_{\min} = 2048`, :math:`N_{\max} = 16384` (:data:`MIN_PARTICLES`,
    :data:`MAX_PARTICLES`). Above :data:`~flowsamp.flows.preconditioning.MAX_FULL_DIM` the fit
    is diagonal (:math:`d` parameters), for which :math:`N_{\min}` suffices.
    """
    if dim > MAX_FULL_DIM:
        return MIN_PARTICLES
    return int(min(MAX_PARTICLES, max(MIN_PARTICLES, math.ceil(dim * (dim + 1) / (2.0 * KL_TARGET)))))


def default_step_size(affine: Affine | None, dim: int, local: str = "mala", fallback: float = 0.1) -> float:
    r"""Initial local step size from the fitted affine map's smallest scale.

    The local kernel's stable step is set by the narrowest direction,
    :math:`\sigma_{\min}` = the smallest singular value of the affine scale :math:`L`
    (:math:`\Sigma = L L^\top`). For MALA (:math:`x' = x + \tau\nabla\log p + \sqrt{2\tau}\,\xi`)
    the optimal proposal scale is :math:`\sqrt{2\tau} \approx 1.65\,\sigma\, d^{-1/6}`
    (Roberts & Rosenthal 1998); we start a little below it, :math:`\tau = \tfrac12
    \sigma_{\min}^2 d^{-1/3}`, and for HMC at :math:`\epsilon = \sigma_{\min} d^{-1/4}`
    (Beskos et al. 2013); Robbins-Monro adapts from there. ``fallback`` without an affine map.
    """
    if affine is None:
        return float(fallback)
    scale = np.asarray(affine.scale, np.float64)
    smin = float(np.linalg.svd(scale, compute_uv=False).min()) if scale.ndim == 2 else float(scale.min())
    if not (np.isfinite(smin) and smin > 0):
        return float(fallback)
    if local == "hmc":
        return smin * dim ** -0.25
    return 0.5 * smin ** 2 * dim ** (-1.0 / 3.0)


def imh_acceptance_estimate(key: PRNGKey, log_prob: LogProbFn, q: Flow, params: Any, x: Array,
                            num_proposals: int = 1024) -> float:
    r"""Estimated independence-MH acceptance of ``q`` at stationarity, from draws ``x`` of ``p``.

    .. math:: \hat\alpha = \frac{1}{nm}\sum_{i,j} \min\big(1, w(y_j)/w(x_i)\big),
              \qquad w = p/q,\ y_j \sim q,

    the mean of the IMH acceptance probability over pairs (non-finite weights count as
    rejections). Used to measure the exploration's flow before any training loop.
    """
    y, log_q_y = q.sample_and_log_prob(params, key, int(num_proposals))
    lw_y = jax.vmap(log_prob)(y) - log_q_y
    lw_x = jax.vmap(log_prob)(x) - q.log_prob(params, x)
    return float(jnp.mean(acceptance_probability(lw_y[None, :] - lw_x[:, None])))


class Exploration(NamedTuple):
    """What :func:`explore` found.

    ``train`` / ``validation``: the particle split (rows); ``seeds`` (C, d) chain starts drawn
    from ``validation``; ``affine``: the fitted :class:`~flowsamp.flows.Affine` (or ``None``);
    ``flow``: the flow the sampler must use (``preconditioned(flow, affine)`` or ``flow``);
    ``params``: its parameters after the forward-KL warm start; ``base_loc`` / ``base_scale``:
    the over-dispersed base; ``smc``: the :class:`TemperedSMCOutput` (``None`` when particles
    were given; the last round's); ``fit_steps``: optimisation steps kept by early stopping;
    ``wall_s``; ``rounds``: one dict per tempered-SMC round (``base_scale_max``,
    ``base_scale_min``, ``spread`` = :func:`population_spread` of its particles, ``num_steps``,
    ``log_Z``, ``wall_s``, ``num_particles``, ``check``: whether it was the check round);
    ``problems``: sentences for the verdict (the base still asked to grow after ``max_rounds``
    rounds, or the check round found far mass with no round left); ``notes``: sentences that do not
    make a result unconverged (how far the exploration searched).
    """

    train: Array
    validation: Array
    seeds: Array
    affine: Affine | None
    flow: Flow
    params: Any
    base_loc: np.ndarray
    base_scale: np.ndarray
    smc: TemperedSMCOutput | None
    fit_steps: int
    wall_s: float
    rounds: tuple = ()
    problems: tuple = ()
    notes: tuple = ()


def default_base_scale(initial_positions: Array) -> np.ndarray:
    r""":math:`s_i = 5\,\max(1, \mathrm{sd}_i(x_0))` per coordinate (see :data:`EXPLORE_SCALE`)."""
    x0 = np.asarray(initial_positions, dtype=np.float64)
    sd = x0.std(axis=0) if x0.shape[0] > 1 else np.zeros(x0.shape[1])
    return EXPLORE_SCALE * np.maximum(1.0, sd)


def population_spread(particles: Array) -> float:
    r"""Largest standard deviation of ``particles`` (N, d) in any direction,
    :math:`\sigma_{\max} = \lambda_{\max}(\hat\Sigma)^{1/2}` (the largest per-coordinate sd above
    :data:`~flowsamp.flows.preconditioning.MAX_FULL_DIM` dimensions)."""
    x = np.asarray(particles, np.float64)
    x = x - x.mean(0)
    if x.shape[1] > MAX_FULL_DIM:
        return float(np.sqrt(np.max(np.mean(x * x, 0))))
    cov = x.T @ x / max(1, x.shape[0] - 1)
    return float(np.sqrt(max(0.0, float(np.linalg.eigvalsh(cov)[-1]))))


def _tempered_round(key_smc: PRNGKey, key_base: PRNGKey, log_prob: LogProbFn, loc: np.ndarray, scale: np.ndarray,
                    num_particles: int, num_mcmc_steps: int, dtype) -> TemperedSMCOutput:
    r"""One adaptive tempered-SMC run from :math:`\mathcal N(\text{loc}, \mathrm{diag}(\text{scale}^2))`
    to ``log_prob``. The base is a :func:`~flowsamp.samplers._smc_base.diagonal_gaussian_base`,
    whose loc and scale are data: every round of one size runs the same compiled program."""
    base = diagonal_gaussian_base(loc, scale, dtype)
    z0 = _base_draws(key_base, *base.params, num_particles)
    return run_tempered(key_smc, log_prob, base, z0, num_mcmc_steps=num_mcmc_steps)


def _round_record(smc: TemperedSMCOutput, scale: np.ndarray, spread: float, check: bool = False) -> dict:
    return {"base_scale_max": float(np.max(scale)), "base_scale_min": float(np.min(scale)), "spread": spread,
            "num_steps": int(smc.num_steps), "log_Z": float(smc.log_Z), "wall_s": float(smc.wall_s),
            "num_particles": int(smc.particles.shape[0]), "check": check}


def check_size(num_particles: int, num_mcmc_steps: int, dim: int) -> tuple[int, int]:
    r"""Particles and RWMH steps of the check round.

    The check round only has to *see* mass far away (a mode holding a fraction :math:`w` of the
    check population is missed with probability about :math:`(1-w)^{N_c}`, below :math:`10^{-5}`
    for :math:`w = 0.05`, :math:`N_c = 512`), not to weigh it: when it does, a full round from
    the wider base weighs it. So it may be smaller, but a round of another size is another
    compiled program. Measured on a 2-core CPU (float32): compiling a round costs 7-12 s, and a
    tempering step costs about :math:`3.5\times10^{-8}\,N m d` seconds (0.08 s at
    :math:`N m d = 2.2\times 10^6`, 32-D; 5 s at :math:`1.6\times10^8`, 100-D), over 15-30
    steps. So while the round's work :math:`N m d` is at most :data:`CHECK_REUSE_WORK`
    (:math:`2^{23}`, where running it whole costs about what a compilation does), the check round
    has the round's size and runs its program; above, it has a quarter of the particles (at least
    :data:`CHECK_MIN_PARTICLES`) and half the steps (at least 10)."""
    if num_particles * num_mcmc_steps * dim <= CHECK_REUSE_WORK:
        return num_particles, num_mcmc_steps
    return min(num_particles, max(CHECK_MIN_PARTICLES, num_particles // 4)), max(10, num_mcmc_steps // 2)


def _split(key: PRNGKey, particles: Array, num_chains: int) -> tuple[Array, Array, Array]:
    particles = np.asarray(particles)  # host arrays: slicing them compiles nothing
    n = particles.shape[0]
    n_val = min(max(num_chains, n // 4), n // 2)
    if n - n_val < 2 or n_val < 2:
        raise ValueError(f"need at least 4 exploration particles, got {n}")
    val, train = particles[:n_val], particles[n_val:]
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())  # host-side: no program
    idx = rng.choice(n_val, num_chains, replace=num_chains > n_val)
    return train, val, val[idx]


def explore(
    key: PRNGKey,
    log_prob: LogProbFn,
    flow: Flow,
    initial_positions: Array,
    params: Any = None,
    *,
    num_particles: int | None = None,
    base_scale: float | Array | None = None,
    particles: Array | None = None,
    precondition: bool | Affine = True,
    num_fit_steps: int = 1000,
    learning_rate: float = 1e-3,
    batch_size: int = 512,
    num_mcmc_steps: int | None = None,
    warm_start: Any = None,
    max_rounds: int = EXPLORE_ROUNDS,
    check: bool = True,
    on_round: Callable[[int], None] | None = None,
) -> Exploration:
    r"""Tempered-SMC warm start: particles, affine preconditioner, forward-KL flow, chain seeds.

    Parameters
    ----------
    key
        PRNG key.
    log_prob
        Unnormalised :math:`\log p(x)` of one point.
    flow
        The (nonlinear) flow; it is wrapped by the fitted affine map when ``precondition``.
    initial_positions
        ``(C, d)``: the base is centred on their mean; C seeds are returned.
    params
        Initial flow parameters (default ``flow.init(key)``).
    num_particles
        SMC particles N (a quarter, at least C, validate and seed; the rest train); default
        :func:`default_num_particles` of the dimension.
    base_scale
        Base standard deviation(s) :math:`s` (scalar or ``(d,)``); default
        :func:`default_base_scale`.
    particles
        Your own ``(N, d)`` approximate posterior draws (e.g. from your own SMC run); the SMC
        run is then skipped.
    precondition
        ``True`` fits :math:`x = \mu + L f(z)` to the training particles; an
        :class:`~flowsamp.flows.Affine` is used as given; ``False`` keeps ``flow`` as it is.
    num_fit_steps, learning_rate, batch_size
        At most ``num_fit_steps`` Adam steps of forward KL on minibatches of ``batch_size``,
        early-stopped (patience 3 evaluations of 50 steps) on the validation NLL.
    num_mcmc_steps
        RWMH steps per SMC step; default :math:`\min(\max(20, d), 100)`: random-walk
        Metropolis needs :math:`O(d)` steps to decorrelate (Roberts & Rosenthal 2001), and with
        20 steps in 100-D the particles of an ill-conditioned Gaussian came out with 0.41-0.82
        of its standard deviations (100 steps: 0.92-1.01).

    warm_start
        Optional ``warm_start(flow, params, train, val, key) -> (params, steps)`` replacing the
        :func:`flowsamp.train.fit` warm start (the sampler passes one that reuses its own
        compiled training program, so that the flow's gradient is compiled once per run).
    on_round
        Optional ``on_round(r)``, called after tempered-SMC round ``r`` (``r = 0, 1, ...``, the
        check round included) has run: the caller's hook to start work that should not compete
        with the first round's compilation.
    max_rounds
        Most tempered-SMC rounds (default :data:`EXPLORE_ROUNDS`). With the default
        ``base_scale``, after each round the base rule is applied to the particles found,
        :math:`s_i' = \max\big(s_i,\ 5\max(1, \sigma_{\max})\big)` with :math:`\sigma_{\max}`
        their largest sd in any direction (:func:`population_spread`), and when some
        :math:`s_i'/s_i \ge` :data:`EXPLORE_GROWTH` the round is rerun from
        :math:`\mathcal N(\bar x_{\text{particles}}, \mathrm{diag}(s'^2))`. An explicit
        ``base_scale`` runs one round.
    check
        With the default ``base_scale``, run the check round (module docs) when the rounds stop
        growing.

    Returns
    -------
    Exploration
    """
    t0 = time.perf_counter()
    x0 = jnp.asarray(initial_positions)
    num_chains, dim = x0.shape
    k_smc, k_base, k_split, k_init, k_fit = _split5(key)
    loc = np.asarray(x0, np.float64).mean(0)
    scale = default_base_scale(x0) if base_scale is None else np.broadcast_to(
        np.asarray(base_scale, np.float64), (dim,)).copy()
    if not np.all(scale > 0):
        raise ValueError(f"explore_scale must be positive, got {base_scale!r}")
    smc, rounds, problems, notes = None, [], [], []
    if particles is None:
        if num_particles is None:
            num_particles = default_num_particles(dim)
        if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 4:
            raise ValueError(f"explore_particles must be an int >= 4, got {num_particles!r}")
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
            raise ValueError(f"explore max_rounds must be an int >= 1, got {max_rounds!r}")
        m = min(max(20, dim), 100) if num_mcmc_steps is None else int(num_mcmc_steps)
        grow = base_scale is None
        r, checked = 0, not (grow and check)
        while True:
            kr_smc, kr_base = (k_smc, k_base) if r == 0 else (jax.random.fold_in(k_smc, r), jax.random.fold_in(k_base, r))
            smc = _tempered_round(kr_smc, kr_base, log_prob, loc, scale, num_particles, m, x0.dtype)
            if on_round is not None:
                on_round(len(rounds))
            spread = population_spread(smc.particles)
            new_scale = np.maximum(scale, EXPLORE_SCALE * max(1.0, spread))
            rounds.append(_round_record(smc, scale, spread))
            wider = float(np.max(new_scale / scale)) >= EXPLORE_GROWTH
            if grow and wider and r + 1 < max_rounds:
                loc, scale, r = np.asarray(smc.particles, np.float64).mean(0), new_scale, r + 1
                continue
            if grow and wider:
                problems.append(
                    f"exploration base still too narrow after {max_rounds} rounds (particles' spread {spread:.3g} "
                    f"asks for base scale {float(new_scale.max()):.3g} > {float(scale.max()):.3g}): modes farther out "
                    "cannot be excluded")
                break
            if checked:
                break
            # the check round: does a base EXPLORE_CHECK times wider see mass this population does not?
            checked = True
            n_c, m_c = check_size(num_particles, m, dim)
            centre = np.asarray(smc.particles, np.float64).mean(0)
            c_smc = _tempered_round(jax.random.fold_in(k_smc, _CHECK_STREAM), jax.random.fold_in(k_base, _CHECK_STREAM),
                                    log_prob, centre, EXPLORE_CHECK * scale, n_c, m_c, x0.dtype)
            if on_round is not None:
                on_round(len(rounds))
            c_spread = population_spread(c_smc.particles)
            c_scale = np.maximum(scale, EXPLORE_SCALE * max(1.0, c_spread))
            rounds.append(_round_record(c_smc, EXPLORE_CHECK * scale, c_spread, check=True))
            if float(np.max(c_scale / scale)) < EXPLORE_GROWTH:
                reach = float(EXPLORE_CHECK * scale.max())
                notes.append(
                    f"exploration searched to base scale {reach:.3g} around the particles' mean (a check round "
                    f"{EXPLORE_CHECK:g}x wider than the last found no new spread): modes much farther out, or whose "
                    "basin is too small to be seen from there, cannot be excluded")
                break
            if r + 1 >= max_rounds:
                problems.append(
                    f"the exploration's check round from base scale {float(EXPLORE_CHECK * scale.max()):.3g} found "
                    f"mass far from its {max_rounds} rounds' particles (spread {c_spread:.3g} > {spread:.3g}), but no "
                    "round was left to weigh it: modes there may be missing")
                break
            loc, scale, r = np.asarray(c_smc.particles, np.float64).mean(0), c_scale, r + 1
        parts = smc.particles
    else:
        parts = jnp.asarray(particles)
        if parts.ndim != 2 or parts.shape[1] != dim:
            raise ValueError(f"explore particles must have shape (N, {dim}), got {tuple(parts.shape)}")
        if not bool(jnp.all(jnp.isfinite(parts))):
            raise ValueError("explore particles contain non-finite values")
        parts = parts[jax.random.permutation(k_split, parts.shape[0])]
    train, val, seeds = _split(k_split, parts, num_chains)
    if precondition is True:
        affine = fit_affine(np.asarray(train))
    elif precondition is False or precondition is None:
        affine = None
    elif isinstance(precondition, Affine):
        affine = precondition
    else:
        raise TypeError(f"precondition must be a bool or an Affine, got {type(precondition).__name__}")
    used = flow if affine is None else preconditioned(flow, affine)
    if params is None:
        params = jax.jit(flow.init)(k_init)  # one program, not one per initialiser
    fit_steps = 0
    if num_fit_steps > 0 and warm_start is not None:
        params, fit_steps = warm_start(used, params, train, val, k_fit)
    elif num_fit_steps > 0:
        stop = early_stopping(used, val, patience=3)
        loss = forward_kl(used, train, batch_size=min(int(batch_size), train.shape[0]))
        params_fit, _ = fit(k_fit, used, params, loss, optax.adam(learning_rate), int(num_fit_steps),
                            chunk_size=50, progress=False, callback=stop)
        if stop.best_params is not None:
            params, fit_steps = stop.best_params, stop.best_step
    return Exploration(train, val, seeds, affine, used, params, loc, scale, smc, fit_steps,
                       time.perf_counter() - t0, tuple(rounds), tuple(problems), tuple(notes))
