r"""Widom test-particle insertion, plain and with an audit pre-filter reweighted exactly.

Widom (1963): for a configuration :math:`x` from the canonical ensemble and a uniform test
point :math:`r` in the box,

.. math:: e^{-\beta\mu^{ex}} = \mathbb E_{x, r}\big[e^{-\beta\Delta U(x, r)}\big].

Pre-filter (seed 000, "approximate then correct"): a cheap model gives an audit probability
:math:`a(r) \in [a_{min}, 1]` from local features (distances to the nearest particles); the
expensive :math:`\Delta U` is computed only when an independent :math:`U \sim \mathcal U(0, 1)`
is below :math:`a`, and

.. math:: \hat p = \frac1n\sum_{i} \mathbb 1[U_i < a_i]\,\frac{e^{-\beta\Delta U_i}}{a_i}

is unbiased for any :math:`a` (its expectation over :math:`U_i` is :math:`e^{-\beta\Delta U_i}`),
with variance :math:`\mathbb E[f^2/a] - p^2`, :math:`f = e^{-\beta\Delta U}`, at cost
:math:`\mathbb E[a]` expensive evaluations per insertion. Given features :math:`\phi`,
minimising variance x cost gives :math:`a \propto \sqrt{\mathbb E[f^2\mid\phi]}` (capped at
1). The ML filter learns :math:`g(\phi) \approx \mathbb E[f^2\mid\phi]` (an MLP with a log
link, Poisson deviance, :func:`flowsamp.train.fit_steps`) on a pilot of fully audited
insertions (the first ``num_pilot`` configurations of every chain, kept in the estimate with
:math:`a = 1`) and uses :math:`a = \mathrm{clip}(\sqrt{g}/\lambda, a_{min}, 1)`, with
:math:`\lambda` minimising the pilot's variance x cost. ``prefilter="exact"`` is the
classical one: :math:`a = 0` only where a bound proves :math:`\beta\Delta U > 40`
(``system.provably_negligible``; exact for hard cores), else :math:`a = 1`.

Standard error: chains are independent replicates; :math:`\hat p` per chain, SE of the mean
over chains, :math:`\mathrm{SE}(\beta\mu^{ex}) = \mathrm{SE}(\hat p)/\hat p` (delta method).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowsamp.base import as_key
from flowsamp.estimators.verdict import Verdict, warn_if_not_converged
from flowsamp.flows.nets import MLP
from flowsamp.kernels.rwmh import build_kernel as rwmh_kernel
from flowsamp.kernels.rwmh import init as rwmh_init
from flowsamp.train.fit import fit_steps
from flowsamp.types import Array, PRNGKey

__all__ = ["WidomResult", "widom", "particle_sweeps"]

_LOG_F_FLOOR = -40.0


class WidomResult(NamedTuple):
    """``beta_mu_ex`` and its ``se``; ``insertion_probability`` :math:`\\hat p` and ``p_se``;
    ``num_expensive`` :math:`\\Delta U` evaluations (pilot included) of ``num_insertions``;
    ``variance_per_evaluation``: per-insertion variance of the summand times the expensive
    evaluations per insertion (lower is better); ``per_chain`` :math:`\\hat p`."""

    beta_mu_ex: float
    se: float
    insertion_probability: float
    p_se: float
    num_expensive: int
    num_insertions: int
    variance_per_evaluation: float
    per_chain: np.ndarray
    diagnostics: dict
    converged: bool
    problems: list


def particle_sweeps(
    key: PRNGKey, system: Any, positions: Array, num_sweeps: int, step: float, thin: int = 1
) -> tuple[Array, Array]:
    r"""Single-particle Metropolis sweeps with :func:`flowsamp.kernels.rwmh` (jittable).

    One sweep moves every particle once, in order, by a Gaussian of scale ``step`` (the rwmh
    kernel with a per-dimension scale that is ``step`` on that particle's coordinates and 0
    elsewhere; the Gaussian proposal is symmetric, so the chain is exact). ``positions``
    ``(C, n)`` chains; returns draws ``(C, num_sweeps // thin, n)`` and the mean acceptance.
    """
    n_part, d = system.num_particles, system.spatial_dim
    kernel = rwmh_kernel()
    masks = jnp.repeat(jnp.eye(n_part, dtype=positions.dtype), d, axis=1) * step  # (N, N*d)

    def sweep(state, key):
        def move(state, args):
            k, scale = args
            state, info = kernel(k, state, system.log_prob, scale)
            return state, info.is_accepted

        return jax.lax.scan(move, state, (jax.random.split(key, n_part), masks))

    def chain(key, x0):
        state = rwmh_init(x0, system.log_prob)

        def block(state, key):
            state, acc = jax.lax.scan(sweep, state, jax.random.split(key, thin))
            return state, (state.position, acc.mean())

        _, (xs, acc) = jax.lax.scan(block, state, jax.random.split(key, max(1, num_sweeps // thin)))
        return xs, acc.mean()

    return jax.vmap(chain)(jax.random.split(key, positions.shape[0]), positions)


def _features(system, configs, points, k):
    f = jax.vmap(jax.vmap(lambda x, r: system.neighbour_distances(x, r, k), (None, 0)))
    return f(configs, points)


def _log_f(system, configs, points):
    e = jax.vmap(jax.vmap(system.insertion_energy, (None, 0)))(configs, points)
    return jnp.maximum(-e, _LOG_F_FLOOR * 10)


def widom(
    key: PRNGKey,
    system: Any,
    configurations: Array,
    num_insertions: int = 256,
    *,
    prefilter: str | None = None,
    a_min: float = 0.01,
    num_pilot: int = 2,
    num_neighbours: int = 8,
    hidden: Sequence[int] = (32, 32),
    num_train_steps: int = 500,
    chunk: int = 8,
) -> WidomResult:
    r"""Estimate :math:`\beta\mu^{ex}` by Widom insertion into ``configurations``.

    Parameters
    ----------
    key
        PRNG key. The test points depend only on it, so runs with the same key and different
        ``prefilter`` insert at the same points (paired comparison).
    system
        A :class:`flowsamp.targets.particles.ParticleSystem`-like object (``insertion_energy``,
        ``neighbour_distances``, ``provably_negligible``, ``box_length``, ``spatial_dim``).
    configurations
        ``(chains, draws, n)`` configurations (``chains >= 2`` for the SE).
    num_insertions
        Test points per configuration.
    prefilter
        ``None`` (plain), ``"exact"`` (provable-overlap skip) or ``"ml"`` (learned audit).
    a_min, num_pilot, num_neighbours, hidden, num_train_steps
        ML filter: floor of :math:`a`; fully audited pilot configurations per chain; features
        (nearest distances); MLP widths; Adam steps of the regression.
    chunk
        Configurations per compiled batch (memory).

    Returns
    -------
    WidomResult
    """
    key = as_key(key)
    x = jnp.asarray(configurations)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ValueError(f"widom: `configurations` must have shape (chains >= 2, draws, n), got {x.shape}")
    if prefilter not in (None, "exact", "ml"):
        raise ValueError(f"widom: unknown prefilter {prefilter!r}; expected None, 'exact' or 'ml'")
    if not 0.0 < a_min <= 1.0:
        raise ValueError(f"widom: a_min must be in (0, 1], got {a_min}")
    C, M, n = x.shape
    if prefilter == "ml" and not 1 <= num_pilot < M:
        raise ValueError(f"widom: num_pilot must be in [1, draws={M}) for the ML pre-filter, got {num_pilot}")
    dtype = x.dtype
    d = system.spatial_dim
    k_pts, k_audit, k_net = jax.random.split(key, 3)
    flat = x.reshape(C * M, n)
    pts = jax.random.uniform(k_pts, (C * M, num_insertions, d), dtype, 0.0, system.box_length)
    u = np.asarray(jax.random.uniform(k_audit, (C * M, num_insertions), dtype))

    def batched(fn, *arrs):
        out = [np.asarray(jax.jit(fn)(*(a[i : i + chunk] for a in arrs))) for i in range(0, C * M, chunk)]
        return np.concatenate(out)

    a = np.ones((C * M, num_insertions))
    pilot = np.zeros((C, M), bool)
    if prefilter == "exact":
        neg = batched(jax.vmap(jax.vmap(system.provably_negligible, (None, 0))), flat, pts)
        a = np.where(neg, 0.0, 1.0)
    elif prefilter == "ml":
        k = min(num_neighbours, system.num_particles)
        feats = batched(lambda c, p: _features(system, c, p, k), flat, pts)  # (CM, K, k)
        pilot[:, :num_pilot] = True
        pf = pilot.reshape(-1)
        tr_x = jnp.asarray(feats[pf].reshape(-1, k))
        tr_f = np.exp(np.maximum(batched(lambda c, p: _log_f(system, c, p), flat[pf], pts[pf]).reshape(-1),
                                 _LOG_F_FLOOR))
        tr_f2 = jnp.asarray(tr_f**2, dtype)
        net = MLP(tuple(hidden), 1, 1, jax.nn.silu)
        scale = float(jnp.mean(tr_x))
        params = net.init(k_net, tr_x[:1] / scale)
        opt = optax.adam(3e-3)
        offset = float(np.log(np.mean(tr_f**2) + 1e-30))

        def log_g(p, f):
            return net.apply(p, f / scale)[..., 0, 0] + offset

        def loss(p, _key):  # Poisson deviance: minimised by exp(log_g) = E[f^2 | features]
            h = log_g(p, tr_x)
            return jnp.mean(jnp.exp(h - offset) - tr_f2 * jnp.exp(-offset) * h), {}

        params, _, rec = jax.jit(lambda p: fit_steps(loss, opt, p, opt.init(p), k_net, num_train_steps))(params)
        # a = clip(sqrt(g) / lam, a_min, 1); lam minimises the pilot's variance x cost
        s_pilot = np.exp(0.5 * np.asarray(jax.jit(log_g)(params, tr_x), np.float64))
        best = (np.inf, 1.0)
        for lam in np.quantile(s_pilot, np.linspace(0.5, 1.0, 41)) * np.array([1.0]):
            ap = np.clip(s_pilot / max(lam, 1e-300), a_min, 1.0)
            score = (np.mean(tr_f**2 / ap) - np.mean(tr_f) ** 2) * np.mean(ap)
            if score < best[0]:
                best = (score, lam)
        lam = best[1]
        s_all = np.exp(0.5 * np.asarray(jax.jit(log_g)(params, jnp.asarray(feats)), np.float64))
        a = np.clip(s_all / lam, a_min, 1.0)
        a[pf] = 1.0
    audited = u < a
    # expensive evaluations only where audited (padded to fixed chunks: one compilation)
    idx = np.nonzero(audited)
    f = np.zeros((C * M, num_insertions))
    if idx[0].size:
        e_fn = jax.jit(jax.vmap(lambda c, r: system.insertion_energy(c, r)))
        size = 4096
        cfg_i, pt_i = idx
        vals = []
        for s in range(0, cfg_i.size, size):
            ci, pi = cfg_i[s : s + size], pt_i[s : s + size]
            pad = size - ci.size
            ci_p, pi_p = np.pad(ci, (0, pad)), np.pad(pi, (0, pad))
            vals.append(np.asarray(e_fn(flat[ci_p], pts[ci_p, pi_p]))[: ci.size])
        f[idx] = np.exp(-np.concatenate(vals).astype(np.float64))
    y = np.where(audited, f / np.where(audited, a, 1.0), 0.0)
    per_chain = y.reshape(C, -1).mean(axis=1)
    p = float(per_chain.mean())
    p_se = float(per_chain.std(ddof=1) / np.sqrt(C))
    num_expensive = int(audited.sum())
    total = C * M * num_insertions
    var_cost = float(y.var() * num_expensive / total)
    problems: list[str] = []
    if p <= 0:
        problems.append("no successful insertion: beta mu_ex is infinite or needs more insertions")
        mu, se = float("inf"), float("nan")
    else:
        mu, se = -float(np.log(p)), p_se / p
        if se > 0.1:
            problems.append(f"relative SE of the insertion probability {se:.2f} > 0.1")
    diag = {"num_chains": C, "num_draws": M, "audit_fraction": num_expensive / total, "mean_a": float(a.mean()),
            "max_weight_share": float(y.max() / y.sum()) if y.sum() > 0 else float("nan")}
    verdict = Verdict(diag, not problems, problems)
    warn_if_not_converged(verdict, "widom")
    return WidomResult(mu, se, p, p_se, num_expensive, total, var_cost, per_chain, diag, verdict.converged, problems)
