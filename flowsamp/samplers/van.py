r"""Variational autoregressive networks (VAN) for lattice spins: training and free energies.

The net :math:`q_\theta` is trained on the reverse KL divergence to
:math:`p(s) = e^{-\beta E(s)}/Z`, i.e. on the variational free energy

.. math::

    \beta F_q = \mathbb E_{s\sim q_\theta}[\ln q_\theta(s) + \beta E(s)]
             = \beta F + \mathrm{KL}(q_\theta \,\|\, p) \;\ge\; \beta F = -\ln Z,

whose gradient is the score-function (REINFORCE) estimator with the batch-mean baseline

.. math::

    \nabla_\theta \beta F_q \approx \frac1M \sum_k \big(f_k - \bar f\big)\,
    \nabla_\theta \ln q_\theta(s_k), \qquad f_k = \ln q_\theta(s_k) + \beta_t E(s_k),

with β-annealing :math:`\beta_t = \beta\,(1 - a^t)`.  After training, fresh draws give
:math:`F_q` with its standard error and the importance-sampling-corrected (neural importance
sampling) :math:`\hat F = -\ln \hat Z/\beta`, :math:`\hat Z = \frac1n\sum_k e^{-\beta E(s_k)}/q(s_k)`,
with the delta-method SE of :func:`flowsamp.estimators.log_evidence`.

References: Wu, Wang & Zhang, PRL 122, 080602 (2019), arXiv:1809.10606; Nicoli et al.,
PRE 101, 023304 (2020), arXiv:1903.11048 (neural importance sampling).
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowsamp.autoregressive import AutoregressiveNet, made
from flowsamp.base import as_key
from flowsamp.estimators.evidence import log_evidence
from flowsamp.estimators.verdict import Verdict, importance_verdict, warn_if_not_converged
from flowsamp.estimators.weights import ess
from flowsamp.train.fit import fit
from flowsamp.types import Array, PRNGKey

__all__ = ["VANResult", "FreeEnergies", "van", "van_loss", "free_energies", "default_net"]


class FreeEnergies(NamedTuple):
    """Free-energy estimates from ``n`` draws of q (totals, not per site; divide by N).

    ``variational`` :math:`F_q` and ``variational_se``; ``importance`` :math:`\\hat F` and
    ``importance_se``; ``log_Z``, ``log_Z_se``; ``ess`` (Kish) and ``log_weights`` (n,).
    """

    variational: float
    variational_se: float
    importance: float
    importance_se: float
    log_Z: float
    log_Z_se: float
    ess: float
    log_weights: np.ndarray


class VANResult(NamedTuple):
    """Output of :func:`van`: the trained ``params`` of ``net``, the :class:`FreeEnergies`
    ``free_energy`` at ``beta``, the training ``history`` (``beta_t``, ``free_energy`` per step:
    the batch estimate of F_q at :math:`\\beta_t`), ``elapsed`` seconds, and the verdict of the
    importance weights (``diagnostics``, ``converged``, ``problems``)."""

    params: Any
    net: AutoregressiveNet
    beta: float
    free_energy: FreeEnergies
    history: dict
    elapsed: float
    diagnostics: dict
    converged: bool
    problems: list


def default_net(target: Any) -> AutoregressiveNet:
    """MADE with 4 units per site and 2 hidden layers, Z_q-symmetrised (VAN's ``--z2``)."""
    from flowsamp.autoregressive import symmetrize

    return symmetrize(made(target.L, target.spin_values, width=4, depth=2), "cyclic")


def van_loss(net: AutoregressiveNet, target: Any, batch_size: int, beta: float, anneal_rate: float):
    """Score-function loss ``loss(params, key, step) -> (surrogate, aux)`` for :func:`fs.train.fit`.

    The surrogate's gradient is the REINFORCE estimator of :math:`\\nabla \\beta_t F_q` above;
    ``aux`` holds ``beta_t`` and the batch estimate ``free_energy`` :math:`F_q(\\beta_t)`.
    """

    def loss(params, key, step):
        s, _ = net.sample_and_log_prob(jax.lax.stop_gradient(params), key, batch_size)
        log_q = net.log_prob(params, s)
        beta_t = beta * (1.0 - anneal_rate ** step.astype(log_q.dtype))
        f = jax.lax.stop_gradient(log_q + beta_t * target.energy(s))
        surrogate = jnp.mean((f - jnp.mean(f)) * log_q)
        ess_frac = ess(-f) / batch_size  # Kish ESS/N of the weights p_{beta_t} / q on the batch
        return surrogate, {"beta_t": beta_t, "free_energy": jnp.mean(f) / jnp.maximum(beta_t, 1e-12),
                           "ess": ess_frac}

    return loss


def free_energies(
    key: PRNGKey, net: AutoregressiveNet, params: Any, target: Any, num_samples: int = 10_000,
    batch_size: int = 2_000, beta: float | None = None,
) -> FreeEnergies:
    r"""Variational and importance-sampled free energies at ``beta`` (default ``target.beta``).

    .. math::

        F_q = \frac1\beta\,\overline{\ln q + \beta E}, \quad
        \operatorname{se}(F_q) = \frac{\operatorname{sd}(\ln q + \beta E)}{\beta\sqrt n}, \qquad
        \hat F = -\frac{\ln\hat Z}{\beta}, \quad \operatorname{se}(\hat F) = \frac{\operatorname{se}(\ln\hat Z)}{\beta}.
    """
    beta = float(target.beta if beta is None else beta)
    if not beta > 0:
        raise ValueError(f"free energies need beta > 0, got {beta}")
    draw = jax.jit(lambda p, k: _draw(net, target, p, k, batch_size))
    chunks = []
    for k in jax.random.split(as_key(key), -(-int(num_samples) // batch_size)):
        chunks.append(np.asarray(draw(params, k), np.float64))
    lq, e = np.concatenate(chunks, axis=1)[:, :num_samples]
    f = lq + beta * e
    log_w = -beta * e - lq
    log_Z, log_Z_se = log_evidence(jnp.asarray(log_w))
    return FreeEnergies(
        variational=float(f.mean() / beta),
        variational_se=float(f.std(ddof=1) / math.sqrt(f.size) / beta),
        importance=float(-log_Z / beta),
        importance_se=float(log_Z_se / beta),
        log_Z=float(log_Z),
        log_Z_se=float(log_Z_se),
        ess=float(ess(jnp.asarray(log_w))),
        log_weights=log_w,
    )


def _tail_has_ties(log_w: np.ndarray) -> bool:
    """Whether the PSIS tail (the largest min(0.2 n, 3 sqrt n) weights) has repeated values."""
    n = log_w.size
    m = min(math.ceil(0.2 * n), math.ceil(3.0 * math.sqrt(n)))
    tail = np.sort(log_w)[-m - 1:]
    return np.unique(np.round(tail, 6)).size < tail.size


def _draw(net, target, params, key, n):
    s, lq = net.sample_and_log_prob(params, key, n)
    return jnp.stack([lq, target.energy(s).astype(lq.dtype)])


def van(
    key: PRNGKey,
    target: Any,
    net: AutoregressiveNet | None = None,
    *,
    num_steps: int = 2_000,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    anneal_steps: int | None = None,
    clip_grad: float = 1.0,
    num_samples: int = 10_000,
    params: Any = None,
    progress: bool = False,
) -> VANResult:
    """Train a VAN on a lattice spin target at ``target.beta`` and estimate its free energy.

    Parameters
    ----------
    key : PRNGKey
    target
        ``fs.targets.ising`` / ``potts`` (``energy``, ``beta > 0``, ``L``, ``spin_values``).
    net : AutoregressiveNet, optional
        Default :func:`default_net` (symmetrised MADE).
    num_steps, batch_size, learning_rate : int, int, float
        Adam steps, draws per step, step size (clipped at global norm ``clip_grad``).
    anneal_steps : int, optional
        β-annealing :math:`\\beta_t = \\beta(1 - a^t)` with ``a = 0.01 ** (1 / anneal_steps)``
        (β_t = 0.99 β at ``anneal_steps``); default ``num_steps // 4``; 0 disables it.
    num_samples : int
        Fresh draws for the final free energies.
    params : optional
        Starting parameters (default ``net.init``).
    progress : bool
        Show the training's tqdm progress bar (:func:`flowsamp.train.fit`'s, process 0 only)
        with the loss, the batch's ESS/N, the annealed β_t and the batch free energy
        :math:`F_q(\beta_t)`.

    Returns
    -------
    VANResult
    """
    for name, v in (("num_steps", num_steps), ("batch_size", batch_size), ("num_samples", num_samples)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if batch_size < 2:
        raise ValueError("batch_size must be >= 2 (the baseline needs two draws)")
    beta = float(target.beta)
    if not beta > 0:
        raise ValueError(f"VAN needs target.beta > 0, got {beta}")
    net = default_net(target) if net is None else net
    if net.L != target.L or net.num_states != target.num_states:
        raise ValueError(f"net is for L={net.L}, q={net.num_states}; target has L={target.L}, q={target.num_states}")
    anneal_steps = max(num_steps // 4, 1) if anneal_steps is None else int(anneal_steps)
    rate = 0.0 if anneal_steps <= 0 else 0.01 ** (1.0 / anneal_steps)
    key = as_key(key)
    k_init, k_fit, k_eval = jax.random.split(key, 3)
    params = net.init(k_init) if params is None else params
    optimizer = optax.chain(optax.clip_by_global_norm(clip_grad), optax.adam(learning_rate))
    t0 = time.perf_counter()
    loss = van_loss(net, target, int(batch_size), beta, rate)
    params, hist = fit(k_fit, None, params, loss, optimizer, int(num_steps),
                       chunk_size=min(int(num_steps), 500), progress=progress)
    fe = free_energies(k_eval, net, params, target, int(num_samples))
    elapsed = time.perf_counter() - t0
    verdict = importance_verdict(jnp.asarray(fe.log_weights))
    problems = list(verdict.problems)
    diag = dict(verdict.diagnostics)
    if _tail_has_ties(fe.log_weights):
        # a small lattice gives few distinct weights: the generalized-Pareto fit of the tail
        # is undefined (zero exceedances), so k-hat says nothing; the Kish ESS still does
        problems = [p for p in problems if "k-hat" not in p]
        diag["k_hat_undefined"] = True
    diag.update(kl_bound=float(beta * (fe.variational - fe.importance)),
                num_skipped_steps=int(np.sum(~np.asarray(hist.is_finite))))
    verdict = Verdict(diag, not problems, problems)
    warn_if_not_converged(verdict, "van")
    history = {"beta_t": np.asarray(hist.aux["beta_t"]), "free_energy": np.asarray(hist.aux["free_energy"])}
    return VANResult(params, net, beta, fe, history, elapsed, verdict.diagnostics, verdict.converged,
                     verdict.problems)
