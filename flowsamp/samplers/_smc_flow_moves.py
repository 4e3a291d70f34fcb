r"""Flow-preconditioned SMC moves (pocoMC's): MCMC in the latent space of a flow fitted to the particles.

At every tempering step of :func:`flowsamp.samplers.smc` with ``precondition_flow=``, after
reweighting and resampling, each island

1. standardises its particles, :math:`z = (x - \bar x)/s` (weighted mean and sd);
2. splits them into two halves (contiguous: resampled copies of one ancestor stay together)
   and fits the flow :math:`z = F_\theta(u)`, :math:`u \sim \mathcal N(0, I)`, to each half's
   weighted :math:`z` by forward KL (``fs.train.forward_kl`` with the weights, up to
   ``num_fit_steps`` full-batch steps of ``fs.train.fit_steps`` with Adam from the flow's
   identity initialisation, on the first 3/4 of the half, early-stopped on the likelihood of its
   last 1/4: :func:`fit_to_particles`;
   nothing is carried from step to step, so the state and the checkpoints are those of plain SMC);
3. moves each half by the flow fitted to the *other* half: :math:`u = F_\theta^{-1}(z)`, then the
   usual adaptive sweep (:func:`flowsamp.samplers._smc_moves.adaptive_move`: MALA/HMC/RWMH, step
   size adapted from the population, stopped by decorrelation) on the latent density

   .. math:: \log\pi_u(u) = \log\pi_{\beta'}\big(\bar x + s\,F_\theta(u)\big)
             + \log\big|\det \partial F_\theta/\partial u\big| \; (+\text{const}),

   the pull-back of :math:`\pi_{\beta'}` through the fixed map :math:`x = \bar x + s F_\theta(u)`,
   so the moved :math:`x` are again :math:`\pi_{\beta'}`-distributed;
4. maps back, :math:`x = \bar x + s F_\theta(u)`.

The map depends only on particles before the move, as the population step size and mass already
do (Buchholz, Chopin & Jacob 2021). **Why cross-fitting:** a flow fitted to a particle and then
used to move that same particle is not independent of it. A flow of a few thousand parameters
fitted to a few hundred particles puts bumps of :math:`q` on them, and the moves then carry
particles off those bumps: started from exact draws of a 4-D Gaussian (4096 particles, x64), one
sweep with the map fitted to all particles shrank every sd by 3.5-6 % (5 SE), while moving each
half by the other half's map keeps the sds within noise
(``tests/samplers/test_smc_flow_moves.py``).
When the flow has learned :math:`\pi_{\beta'}`, :math:`\pi_u` is close to a standard normal and a
funnel's or a banana's change of scale, which no single step size fits in :math:`x`, is gone
(Karamanis et al. 2022, pocoMC, arXiv:2207.05652; Hoffman et al. 2019, NeuTra). A point the flow
maps to a non-finite :math:`x` has :math:`\log\pi_u = -\infty` and its proposal is rejected by
the kernel.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from flowsamp.base import Flow
from flowsamp.estimators.weights import normalized_weights
from flowsamp.samplers._smc_moves import MoveConfig, SweepInfo, adaptive_move, scale_free_variance
from flowsamp.train.fit import fit_steps
from flowsamp.train.losses import forward_kl
from flowsamp.types import Array, PRNGKey

__all__ = ["FlowPreconditioner", "flow_preconditioned_move"]


class FlowPreconditioner(NamedTuple):
    """Static settings of the latent moves: the ``flow`` (its ``init`` must be the identity map),
    ``num_fit_steps`` full-batch Adam steps at ``learning_rate`` per tempering step."""

    flow: Flow
    num_fit_steps: int = 200
    learning_rate: float = 1e-2


#: Adam steps between two held-out evaluations of the fit
VALIDATE_EVERY = 10


def fit_to_particles(key: PRNGKey, z: Array, w_fit: Array, w_val: Array, pre: FlowPreconditioner) -> tuple[Any, Array]:
    """Flow parameters fitted by weighted forward KL to the rows of ``z`` (n, d) weighted by
    ``w_fit``, early-stopped on the rows weighted by ``w_val``: of the parameters after every
    :data:`VALIDATE_EVERY` steps (and the identity initialisation) those of the lowest held-out
    NLL are returned, with that NLL. A few hundred particles overfit a flow of a few thousand
    parameters within ~100 full-batch steps, and an overfitted map moves particles badly (its
    latent density is bumpy); the identity (moves in standardised :math:`x`) is the fallback."""
    k_init, k_fit = jax.random.split(key)
    flow = pre.flow
    params = flow.init(k_init)
    opt = optax.adam(pre.learning_rate)
    loss = forward_kl(flow, z, None, weights=w_fit * w_fit.shape[0])

    def held_out_nll(p: Any) -> Array:
        log_q = flow.log_prob(p, z)
        return -jnp.sum(jnp.where(w_val > 0, w_val * log_q, 0.0)) / jnp.maximum(jnp.sum(w_val), jnp.finfo(z.dtype).tiny)

    def chunk(carry, c):
        p, s, best_p, best_v = carry
        p, s, _ = fit_steps(loss, opt, p, s, k_fit, VALIDATE_EVERY, start=c * VALIDATE_EVERY)
        v = held_out_nll(p)
        better = jnp.isfinite(v) & (v < best_v)
        best_p = jax.tree.map(lambda a, b: jnp.where(better, a, b), p, best_p)
        return (p, s, best_p, jnp.where(better, v, best_v)), v

    v0 = held_out_nll(params)
    v0 = jnp.where(jnp.isfinite(v0), v0, jnp.inf)
    num_chunks = max(1, pre.num_fit_steps // VALIDATE_EVERY)
    (_, _, best, best_v), _ = jax.lax.scan(chunk, (params, opt.init(params), params, v0), jnp.arange(num_chunks))
    return best, best_v


def _latent_sweep(key, x, log_w, log_density, log_step_size, cfg, max_blocks, max_correlation, flow, params,
                  mean, sd):
    """One half's adaptive sweep in the latent space of ``params``; ``(x, log_eps, SweepInfo)``."""

    def to_x(u: Array) -> tuple[Array, Array]:
        zz, log_det = flow.forward(params, u[None])
        return mean + sd * zz[0], log_det[0]

    def log_latent(u: Array) -> Array:
        y, log_det = to_x(u)
        out = log_density(y) + log_det
        return jnp.where(jnp.all(jnp.isfinite(y)), out, -jnp.inf)

    u, _ = flow.inverse(params, (x - mean) / sd)
    ok = jnp.all(jnp.isfinite(u), axis=1)
    # a particle the flow cannot invert keeps its position (its latent moves are discarded)
    u = jnp.where(ok[:, None], u, 0.0)
    log_w = log_w - jax.scipy.special.logsumexp(log_w)
    # the flow (fitted to the other half) is this half's preconditioner: no second split in latent space
    u, log_step_size, info = adaptive_move(key, u, log_w, log_latent, log_step_size, cfg, max_blocks,
                                           max_correlation, cross_fit=False)
    y = jax.vmap(lambda v: to_x(v)[0])(u)
    keep = ok & jnp.all(jnp.isfinite(y), axis=1)
    return jnp.where(keep[:, None], y, x), log_step_size, info


def flow_preconditioned_move(
    key: PRNGKey,
    x: Array,
    log_w: Array,
    log_density: Callable[[Array], Array],
    log_step_size: Array,
    cfg: MoveConfig,
    max_blocks: int,
    max_correlation: float,
    pre: FlowPreconditioner,
) -> tuple[Array, Array, SweepInfo]:
    r""":func:`~flowsamp.samplers._smc_moves.adaptive_move` in the latent space of a flow, each half
    of ``x`` (n, d) (normalised log-weights ``log_w``) moved by the flow fitted to the other half;
    returns the moved ``x``, the adapted log step size (the mean of the halves') and the sweep's
    :class:`~flowsamp.samplers._smc_moves.SweepInfo` (correlations and acceptances of the latent
    coordinates; the halves' moves and correlations by their maximum)."""
    n = x.shape[0]
    h = n // 2
    if h < 1:
        raise ValueError("flow-preconditioned moves need at least 2 particles per island")
    k_fit, k_a, k_b = jax.random.split(key, 3)
    w = normalized_weights(log_w)
    mean = jnp.sum(w[:, None] * x, axis=0)
    sd = jnp.sqrt(scale_free_variance(x, jnp.sum(w[:, None] * (x - mean) ** 2, axis=0)))
    z = (x - mean) / sd
    # each half's flow is fitted to the first 3/4 of that half and early-stopped on its last 1/4,
    # so the particles a flow moves (the other half) enter neither its fit nor its stopping
    # (validating on them made the chosen parameters depend on them); one vmapped fit for both
    i = jnp.arange(n)
    cut_a, cut_b = (3 * h) // 4, h + (3 * (n - h)) // 4
    masks = jnp.stack([i < cut_a, (i >= cut_a) & (i < h), (i >= h) & (i < cut_b), i >= cut_b])
    part = jnp.where(masks, w, 0.0)
    part = part / jnp.maximum(jnp.sum(part, axis=1, keepdims=True), jnp.finfo(w.dtype).tiny)
    params, _ = jax.vmap(lambda k, wf, wv: fit_to_particles(k, z, wf, wv, pre))(
        jax.random.split(k_fit), part[0::2], part[1::2])
    p_first, p_second = (jax.tree.map(lambda a, i=i: a[i], params) for i in (0, 1))
    args = (log_density, log_step_size, cfg, max_blocks, max_correlation, pre.flow)
    xa, eps_a, ia = _latent_sweep(k_a, x[:h], log_w[:h], *args, p_second, mean, sd)
    xb, eps_b, ib = _latent_sweep(k_b, x[h:], log_w[h:], *args, p_first, mean, sd)
    info = SweepInfo(jnp.maximum(ia.num_moves, ib.num_moves), jnp.maximum(ia.correlation, ib.correlation),
                     ia.decorrelated & ib.decorrelated,
                     jnp.concatenate([ia.particle_acceptance, ib.particle_acceptance]),
                     0.5 * (ia.acceptance + ib.acceptance))
    return jnp.concatenate([xa, xb]), 0.5 * (eps_a + eps_b), info
