r"""MCMC move step of the SMC engine: a population of particles moved by an ``fs.kernels`` kernel.

Every particle makes ``num_steps`` transitions that leave the current tempered density
:math:`\pi_\beta` invariant. The kernels are the library's own (``fs.kernels.mala.transition``,
``fs.kernels.hmc.transition``; random-walk proposals go through ``flowsamp.base.metropolis_test``),
vmapped over the particles with their random numbers drawn in bulk. The preconditioner comes
from the population (its diagonal variance or its covariance), and the step size is adapted
after each transition from the population's mean acceptance by
``fs.kernels.adaptation.robbins_monro`` towards ``TARGET_ACCEPTANCE[kernel]`` (the SMC
practice of Buchholz, Chopin & Jacob 2021, arXiv:1808.07730, adapting the move kernel from
the current particles).
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from flowsamp.base import metropolis_test
from flowsamp.estimators.weights import normalized_weights
from flowsamp.kernels.adaptation import TARGET_ACCEPTANCE, robbins_monro
from flowsamp.kernels.hmc import init as hmc_init, sample_momentum, transition as hmc_transition
from flowsamp.kernels.mala import init as mala_init, transition as mala_transition
from flowsamp.parallel import CHAINS, REPLICATED, shard_chains
from flowsamp.types import Array, PRNGKey

KERNELS = ("mala", "hmc", "rwmh")
#: a move sweep whose worst coordinate correlation fell by less than 5 % over a block has plateaued
PLATEAU = 0.95
MASSES = ("identity", "diag", "dense")
#: fewest particles per dimension, in the half of an island whose covariance preconditions the
#: other half, for a dense population covariance (:func:`default_mass`)
DENSE_MIN_PARTICLES_PER_DIM = 10


class MoveConfig(NamedTuple):
    """Static move settings: ``kernel`` in :data:`KERNELS`, ``num_steps`` transitions per SMC
    step, ``num_integration_steps`` (HMC), ``mass`` in :data:`MASSES` (preconditioner from the
    population), ``adapt_rate`` :math:`\\gamma` of the Robbins-Monro update."""

    kernel: str = "mala"
    num_steps: int = 20
    num_integration_steps: int = 10
    mass: str = "diag"
    adapt_rate: float = 1.0


def default_mass(kernel: str, num_fit: int, dim: int) -> str:
    r"""The default preconditioner of ``kernel`` when ``num_fit`` particles estimate it in ``dim``
    dimensions: ``"dense"`` for RWMH (whose efficiency depends on the proposal's shape, Roberts &
    Rosenthal 2001) once ``num_fit >= DENSE_MIN_PARTICLES_PER_DIM * dim``, else ``"diag"``.

    The sample covariance of :math:`h` draws in :math:`d` dimensions has eigenvalues spread over
    :math:`(1 \pm \sqrt{d/h})^2` of the truth (Marchenko-Pastur): condition number 3.7 at
    :math:`h = 10 d`, 34 at :math:`h = 2 d`, singular below :math:`h = d`. With such a preconditioner
    the random walk explores some directions far too slowly, and the verdict does not always see
    it. Measured with random-walk moves, 8 islands, base :math:`N(0, 25 I)`, 3 seeds each
    (``benchmarks/smc_generated_targets.py`` targets): on the rotated 50-D Gaussian of condition 30,
    1024 particles (:math:`h = 1.3 d`) gave ln Z +5.5 to +6.1 nat (one run claiming convergence at
    z = +14) with the dense covariance, and -0.2 to +0.7, all flagged, with the diagonal; 8192
    particles (:math:`h = 10.2 d`) gave +0.07 to +0.16 (z <= 1.9), all converged, with the dense
    one. On the rotated 20-D Gaussian of condition 1000, 1024 particles (:math:`h = 3.2 d`): dense
    -0.66 to -1.12 with two of three runs claiming convergence (z = -4.0, -8.8); diagonal -1.1 to
    -2.0, all flagged."""
    return "dense" if kernel == "rwmh" and num_fit >= DENSE_MIN_PARTICLES_PER_DIM * dim else "diag"


def resolve_mass(mass: str | None, kernel: str, num_fit: int, dim: int) -> str:
    """``mass``, or :func:`default_mass` when it is ``None``; an explicit ``"dense"`` estimated from
    fewer than ``DENSE_MIN_PARTICLES_PER_DIM * dim`` particles warns (``UserWarning``)."""
    if mass is None:
        return default_mass(kernel, num_fit, dim)
    if mass == "dense" and num_fit < DENSE_MIN_PARTICLES_PER_DIM * dim:
        warnings.warn(f"mass='dense' estimated from {num_fit} particles in {dim} dimensions: the population "
                      f"covariance is a poor preconditioner below {DENSE_MIN_PARTICLES_PER_DIM} particles per "
                      "dimension (use more particles per island, fewer islands, or mass='diag')", UserWarning,
                      stacklevel=3)
    return mass


def initial_step_size(kernel: str, dim: int) -> float:
    r"""Scale-free starting step for a population-preconditioned kernel (adapted afterwards):
    MALA :math:`\epsilon_0 = d^{-1/3}/2` (optimal scaling :math:`\propto d^{-1/3}`, Roberts &
    Rosenthal 1998), HMC :math:`d^{-1/4}` (Beskos et al. 2013), RWMH :math:`2.38/\sqrt d`
    (Roberts, Gelman & Gilks 1997)."""
    return {"mala": 0.5 * dim ** (-1 / 3), "hmc": dim ** (-0.25), "rwmh": 2.38 / dim**0.5}[kernel]


def scale_free_variance(x: Array, var: Array) -> Array:
    """``var`` (d,) of the population ``x`` (N, d), with 1 where it is not finite or at rounding
    level, :math:`\sigma_j^2 \le (64\,\epsilon \max_i |x_{ij}|)^2` (see
    :func:`population_inverse_mass`)."""
    return jnp.where(has_spread(x, var), var, 1.0)


def has_spread(x: Array, var: Array) -> Array:
    """``(d,)``: whether coordinate ``j`` of ``x`` (N, d) with variance ``var[j]`` has a spread above
    rounding level, :math:`\sigma_j^2 > (64\,\epsilon \max_i |x_{ij}|)^2`, and a finite one."""
    floor = (64 * jnp.finfo(x.dtype).eps * jnp.max(jnp.abs(x), axis=0)) ** 2
    return jnp.isfinite(var) & (var > floor)


def population_inverse_mass(x: Array, mass: str) -> Array | None:
    """The particles' diagonal variance ``(d,)``, covariance ``(d, d)`` or ``None`` (identity).

    A coordinate whose spread is at rounding level, :math:`\sigma_j \le 64\,\epsilon
    \max_i |x_{ij}|` (the population resampled onto copies of one particle), carries no scale:
    its variance is taken as 1. The threshold is relative so that the choice does not depend on
    the order of a sum: exact copies give a variance of exactly 0 or of a few ulps depending
    on it (across device layouts, 183 of 200 16-copy populations flipped with a ``var > 0``
    test)."""
    d = x.shape[1]
    if mass == "identity":
        return None
    if mass == "diag":
        return scale_free_variance(x, jnp.var(x, axis=0))
    cov = jnp.cov(x, rowvar=False).reshape(d, d)
    jitter = 1e-6 * jnp.mean(jnp.diag(cov)) + jnp.finfo(x.dtype).tiny
    return cov + jitter * jnp.eye(d, dtype=x.dtype)


def cross_fit_split(n: int, mesh: Mesh | None = None) -> int:
    """Size ``h`` of the first part of a population of ``n`` split for cross-fitting: ``n // 2``,
    rounded down to a multiple of the mesh's device count so that both parts shard evenly; 0 (no
    split) below 4 particles."""
    k = 1 if mesh is None else int(mesh.devices.size)
    h = (n // (2 * k)) * k
    return h if n >= 4 and 0 < h < n else 0


def move(
    key: PRNGKey,
    x: Array,
    log_density: Callable[[Array], Array],
    log_step_size: Array,
    cfg: MoveConfig,
    mesh: Mesh | None = None,
    cross_fit: bool = True,
) -> tuple[Array, Array, Array, Array]:
    r"""Move every particle ``x`` (N, d) by ``cfg.num_steps`` transitions invariant for ``log_density``.

    Returns ``(x, log_step_size, acceptance, particle_acceptance)``: the moved particles, the
    adapted :math:`\log\epsilon`, the population mean acceptance of each transition
    ``(num_steps,)`` and each particle's mean acceptance probability over the sweep ``(N,)`` (a
    particle whose own acceptance is near 0 while the population's is not sits where the shared
    step size does not fit the target's local scale: the neck of a funnel).

    **Cross-fitted preconditioner.** The population is split in two contiguous parts
    (:func:`cross_fit_split`) and each is moved with the preconditioner estimated from the other
    (its diagonal variance or covariance, :func:`population_inverse_mass`), so that no particle's
    kernel depends on the particle itself: given the other part, each part's kernel is exactly
    :math:`\pi`-invariant. With one preconditioner from all the particles, each particle's own
    position enters its proposal, and a dense covariance from few particles per dimension makes
    the population collapse onto the directions it already spans: on a rotated 20-D Gaussian of
    condition number 1000 (8 islands of 128 particles, from a base wider than the target) random
    walk moves with the population covariance gave ln Z 4.2 nat high (z +8 to +20, two of three
    runs claiming convergence), MALA with it 1.1 nat high; cross-fitted, +0.1 to +0.5 and -0.3 to
    +0.2. (The flow-preconditioned moves of ``flowsamp.samplers._smc_flow_moves`` cross-fit the
    same way, and move their latent particles with ``cross_fit=False``: there the flow, fitted to
    the other half, is the preconditioner.) The step size stays one, adapted from the whole
    population's mean acceptance.

    With a ``mesh`` (``flowsamp.parallel.chain_mesh``) the per-particle work (densities,
    gradients, transitions) is split over its devices on the particle axis; the random numbers,
    the preconditioners and the mean acceptance that adapts the step stay population-wide, so
    the moves are those of the single-device run (the split point is a multiple of the device
    count; the single-device run splits at the same point when ``N / 2`` is one too).
    """
    n, d = x.shape
    dtype = x.dtype
    h = cross_fit_split(n, mesh) if cross_fit else 0
    if h:
        # part 0 = x[:h] moved with the mass of x[h:], part 1 = x[h:] with that of x[:h]
        parts = ((slice(0, h), population_inverse_mass(x[h:], cfg.mass)),
                 (slice(h, n), population_inverse_mass(x[:h], cfg.mass)))
    else:
        parts = ((slice(0, n), population_inverse_mass(x, cfg.mass)),)
    adapt = robbins_monro(TARGET_ACCEPTANCE[cfg.kernel], cfg.adapt_rate)
    k_noise, k_u = jax.random.split(key)
    noise = jax.random.normal(k_noise, (cfg.num_steps, n, d), dtype)
    log_u = jnp.log(jax.random.uniform(k_u, (cfg.num_steps, n), dtype))

    def by_part(parts, fn, *args):
        """``fn(part's preconditioner, *its slice of args)`` over the parts, concatenated."""
        outs = [fn(pre, *jax.tree.map(lambda a, sl=sl: a[sl], args)) for sl, pre in parts]
        return jax.tree.map(lambda *o: jnp.concatenate(o), *outs)

    if cfg.kernel == "rwmh":
        chol_parts = tuple((sl, None if inv is None else (jnp.sqrt(inv) if inv.ndim == 1 else jnp.linalg.cholesky(inv)))
                           for sl, inv in parts)
        lp_v = shard_chains(jax.vmap(log_density), mesh)
        lp0 = lp_v(x)

        def scaled(chol, xi):
            return xi if chol is None else (xi * chol if chol.ndim == 1 else xi @ chol.T)

        def step(carry, r):
            (x, lp, log_eps), (xi, lu) = carry, r
            y = x + jnp.exp(log_eps) * by_part(chol_parts, scaled, xi)
            lp_y = lp_v(y)
            acc, rate, _ = metropolis_test(lu, lp_y - lp)
            x, lp = jnp.where(acc[:, None], y, x), jnp.where(acc, lp_y, lp)
            log_eps = adapt.update(adapt.init(jnp.exp(log_eps)), jnp.mean(rate)).log_step_size
            return (x, lp, log_eps), (jnp.mean(rate), rate)

        (x, _, log_step_size), (acc, rates) = jax.lax.scan(step, (x, lp0, log_step_size), (noise, log_u))
        return x, log_step_size, acc, jnp.mean(rates, axis=0)

    if cfg.kernel == "mala":
        states = shard_chains(jax.vmap(lambda p: mala_init(p, log_density)), mesh)(x)

        def one(state, eps, xi, lu, inv_mass):
            return mala_transition(state, log_density, eps, xi, lu, inv_mass)
    else:
        states = shard_chains(jax.vmap(lambda p: hmc_init(p, log_density)), mesh)(x)

        def one(state, eps, xi, lu, inv_mass):
            return hmc_transition(state, log_density, eps, cfg.num_integration_steps,
                                  sample_momentum(xi, inv_mass), lu, inv_mass)

    batched = shard_chains(jax.vmap(one, in_axes=(0, None, 0, 0, None)), mesh,
                           (CHAINS, REPLICATED, CHAINS, CHAINS, REPLICATED))

    def step(carry, r):
        (states, log_eps), (xi, lu) = carry, r
        eps = jnp.exp(log_eps)
        states, info = by_part(parts, lambda inv, s, a, b: batched(s, eps, a, b, inv), states, xi, lu)
        rate = jnp.mean(info.acceptance_rate)
        log_eps = adapt.update(adapt.init(eps), rate).log_step_size
        return (states, log_eps), (rate, info.acceptance_rate)

    (states, log_step_size), (acc, rates) = jax.lax.scan(step, (states, log_step_size), (noise, log_u))
    return states.position, log_step_size, acc, jnp.mean(rates, axis=0)


def weighted_correlation(log_w: Array, a: Array, b: Array) -> Array:
    """Per-coordinate Pearson correlation of ``a`` and ``b`` (N, d) under normalised weights
    ``exp(log_w)``; a coordinate with no spread counts as decorrelated (0)."""
    w = normalized_weights(log_w)[:, None]
    da, db = a - jnp.sum(w * a, 0), b - jnp.sum(w * b, 0)
    va, vb = jnp.sum(w * da * da, 0), jnp.sum(w * db * db, 0)
    ok = (va > 0) & (vb > 0)
    r = jnp.sum(w * da * db, 0) / jnp.sqrt(jnp.where(ok, va * vb, 1.0))
    return jnp.where(ok & jnp.isfinite(r), r, 0.0)


class SweepInfo(NamedTuple):
    """What an adaptive move sweep did: ``num_moves`` transitions, ``correlation`` (d,) of the
    coordinates before and after, ``decorrelated`` (stopped by the criterion, not the cap),
    ``particle_acceptance`` (N,) and the mean ``acceptance`` of its transitions."""

    num_moves: Array
    correlation: Array
    decorrelated: Array
    particle_acceptance: Array
    acceptance: Array


def adaptive_move(
    key: PRNGKey,
    x: Array,
    log_w: Array,
    log_density: Callable[[Array], Array],
    log_step_size: Array,
    cfg: MoveConfig,
    max_blocks: int,
    max_correlation: float,
    cross_fit: bool = True,
) -> tuple[Array, Array, SweepInfo]:
    r"""Blocks of ``cfg.num_steps`` transitions (:func:`move`) until the particles decorrelate.

    After block :math:`b` the weighted correlation :math:`\rho_j^{(b)}` of every coordinate
    between the particles before the sweep and now is computed; the sweep stops when
    :math:`\max_j\rho_j^{(b)} <` ``max_correlation`` (pocoMC's criterion, Karamanis et al. 2022,
    arXiv:2207.05652: move until the population has forgotten its start, here on the worst
    coordinate), or when it stopped falling (:math:`\max_j\rho^{(b)} > 0.95\max_j\rho^{(b-1)}`: what is left
    is the between-mode part that local moves cannot and need not remove once tempering has set
    the mode weights, or a decay so slow that the cap could not reach the threshold), or after
    ``max_blocks`` blocks. The number of transitions thus adapts to each temperature (Buchholz,
    Chopin & Jacob 2021, arXiv:1808.07730).
    Every block is a :math:`\pi`-invariant kernel chosen from the past of the sweep only, so the
    particles stay :math:`\pi`-distributed whatever the stopping time. ``cross_fit`` as in :func:`move`.
    """
    n = x.shape[0]
    x0 = x

    def body(carry):
        b, x, log_eps, rho_prev, _, pacc, acc = carry
        x, log_eps, a, pa = move(jax.random.fold_in(key, b), x, log_density, log_eps, cfg, cross_fit=cross_fit)
        rho = jnp.max(weighted_correlation(log_w, x0, x))
        stop = (rho < max_correlation) | ((b > 0) & (rho > PLATEAU * rho_prev))
        return b + 1, x, log_eps, rho, stop, pacc + pa, acc + jnp.mean(a)

    def cond(carry):
        return (carry[0] < max_blocks) & ~carry[4]

    zero = jnp.zeros((), x.dtype)
    init = (jnp.int32(0), x, log_step_size, jnp.asarray(jnp.inf, x.dtype), jnp.asarray(False), jnp.zeros((n,), x.dtype),
            zero)
    b, x, log_step_size, rho, stop, pacc, acc = jax.lax.while_loop(cond, body, init)
    corr = weighted_correlation(log_w, x0, x)
    bf = b.astype(x.dtype)
    info = SweepInfo(b * cfg.num_steps, corr, stop, pacc / bf, acc / bf)
    return x, log_step_size, info
