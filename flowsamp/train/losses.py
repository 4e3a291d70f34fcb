"""Training losses for normalizing flows q_theta.

A loss is a pure function ``loss_fn(params, key, step=0) -> (loss, aux)``: ``loss`` is a
scalar to minimise, ``aux`` a dict of scalar diagnostics. Every built-in loss takes the
optimisation step counter ``step`` as an optional third argument so that schedules (the
inverse temperature of :func:`annealed_reverse_kl`) are pure functions of it;
:func:`flowsamp.train.fit` passes it. A user loss written as ``loss_fn(params, key)``
works in ``fit`` too (``fit`` inspects the signature once).

Diagnostics in ``aux`` (on the batch drawn from q_theta):

* ``"ess"``: the normalised Kish effective sample size of the importance weights
  :math:`w_i = p(x_i)/q_\\theta(x_i)`, :math:`\\mathrm{ESS}/N = (\\sum w)^2 / (N \\sum w^2)`
  in :math:`(0, 1]`;
* ``"log_w_mean"``: :math:`\\frac1N\\sum_i \\log w_i`, an estimate of the ELBO
  :math:`\\mathbb{E}_q[\\log p - \\log q_\\theta] \\le \\log Z`.

References: Noé et al., Boltzmann generators, Science 365 (2019), arXiv:1812.01729;
Albergo, Kanwar, Shanahan, PRD 100 034515 (2019), arXiv:1904.12072.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from flowsamp.base import Flow
from flowsamp.estimators.weights import ess
from flowsamp.types import Array, LogProbFn, PRNGKey

LossFn = Callable[..., tuple[Array, dict[str, Array]]]
#: ``beta_schedule(step) -> beta``: an optax-style schedule of the inverse temperature.
Schedule = Callable[[Array], Array]

__all__ = ["reverse_kl", "forward_kl", "combined", "annealed_reverse_kl", "ess_fraction"]


def ess_fraction(log_w: Array) -> Array:
    r"""Normalised Kish effective sample size of log-weights.

    .. math:: \mathrm{ESS}/N = \frac{(\sum_i w_i)^2}{N \sum_i w_i^2}
              = \exp\big(2\,\mathrm{lse}(\log w) - \mathrm{lse}(2\log w) - \log N\big).

    Non-finite log-weights count as zero weight (a NaN sample carries no information);
    returns 0 when no weight is finite.
    """
    log_w = jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf)
    frac = ess(log_w) / log_w.shape[0]
    return jnp.where(jnp.isfinite(frac), frac, 0.0)


def _check_flow(flow: Any, name: str) -> None:
    if not isinstance(flow, Flow):
        raise TypeError(f"{name}: `flow` must be a flowsamp.base.Flow, got {type(flow).__name__}")


def _check_batch(batch_size: Any, name: str, what: str = "batch_size") -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{name}: `{what}` must be a positive int, got {batch_size!r}")
    return batch_size


def _check_samples(data: Any, dim: int, name: str, what: str) -> Array:
    """``data`` as an array of shape ``(n, dim)`` and floating dtype, or a named error."""
    data = jnp.asarray(data)
    if data.ndim != 2 or data.shape[1] != dim:
        raise ValueError(f"{name}: `{what}` must have shape (n, {dim}), got {tuple(data.shape)}")
    if not jnp.issubdtype(data.dtype, jnp.floating):
        raise TypeError(f"{name}: `{what}` must be floating point, got {data.dtype}")
    return data


def _diagnostics(log_w: Array) -> dict[str, Array]:
    log_w = jax.lax.stop_gradient(log_w)
    return {"ess": ess_fraction(log_w), "log_w_mean": jnp.mean(log_w)}


def _sample_and_log_q(flow: Flow, params: Any, key: PRNGKey, n: int, path_gradient: bool):
    r"""Draw x = T_theta(z) with reparameterised gradients and return (x, log q_theta(x)).

    With ``path_gradient`` log q is re-evaluated at x with stopped parameters, which drops
    the score term :math:`\nabla_\theta \log q_\theta(x)|_x` (zero mean, but noisy).
    """
    x, log_q = flow.sample_and_log_prob(params, key, n)
    if path_gradient:
        log_q = flow.log_prob(jax.lax.stop_gradient(params), x)
    return x, log_q


def reverse_kl(
    flow: Flow, log_prob: LogProbFn, batch_size: int = 256, *, path_gradient: bool = False
) -> LossFn:
    r"""Reverse Kullback-Leibler loss ("training by energy"), reparameterised gradients.

    .. math::
        L(\theta) = \frac1B \sum_{i=1}^B \big[\log q_\theta(x_i) - \log p(x_i)\big],
        \qquad x_i = T_\theta(z_i),\; z_i \sim q_0,

    an unbiased estimate of :math:`\mathrm{KL}(q_\theta\,\|\,p/Z) - \log Z`; its minimum
    :math:`-\log Z` is reached when :math:`q_\theta = p/Z`. ``-L`` is the ELBO.

    Parameters
    ----------
    flow
        The flow q_theta (``sample_and_log_prob`` must be differentiable in ``params``).
    log_prob
        Unnormalised target log-density ``log_prob(x)`` on one point of shape ``(dim,)``.
    batch_size
        Number B of flow samples per loss evaluation.
    path_gradient
        Use the path-gradient ("sticking the landing") estimator: log q_theta is evaluated
        at the sampled points with stopped parameters, so only the path derivative through
        :math:`x = T_\theta(z)` remains. Same expected gradient, and its variance vanishes as
        :math:`q_\theta \to p/Z`: it reaches higher ESS late in training, at the cost of one
        extra inverse pass (Roeder et al. arXiv:1703.09194; Vaitl et al. arXiv:2207.08219).

    Returns
    -------
    loss_fn
        ``loss_fn(params, key, step=0) -> (L, {"ess", "log_w_mean"})``. A non-finite
        ``log_prob`` on any sample makes ``L`` non-finite; ``fit`` then skips the step.
    """
    _check_flow(flow, "reverse_kl")
    batch_size = _check_batch(batch_size, "reverse_kl")
    path_gradient = bool(path_gradient)
    log_prob_v = jax.vmap(log_prob)

    def loss_fn(params: Any, key: PRNGKey, step: Array | int = 0) -> tuple[Array, dict]:
        del step
        x, log_q = _sample_and_log_q(flow, params, key, batch_size, path_gradient)
        log_w = log_prob_v(x) - log_q
        return -jnp.mean(log_w), _diagnostics(log_w)

    return loss_fn


def annealed_reverse_kl(
    flow: Flow,
    log_prob: LogProbFn,
    batch_size: int = 256,
    beta_schedule: Schedule | float = 1.0,
    *,
    path_gradient: bool = False,
) -> LossFn:
    r"""Reverse KL to the tempered target :math:`p_\beta \propto p^{\beta}`, β rising to 1.

    .. math::
        L(\theta; t) = \frac1B \sum_{i=1}^B \big[\log q_\theta(x_i) - \beta_t \log p(x_i)\big],
        \qquad \beta_t = \texttt{beta\_schedule}(t).

    At small β the tempered target is broad and connects the modes, so q_theta spreads
    over all of them before β reaches 1: the standard remedy for the mode collapse of
    plain reverse KL. Use a schedule that reaches 1 well before the end of training,
    e.g. ``optax.linear_schedule(0.05, 1.0, transition_steps=num_steps // 2)``.

    Parameters
    ----------
    flow, log_prob, batch_size, path_gradient
        As in :func:`reverse_kl`.
    beta_schedule
        ``beta_schedule(step) -> beta`` (any optax schedule) or a constant float.

    Returns
    -------
    loss_fn
        ``loss_fn(params, key, step=0) -> (L, aux)``, ``aux`` holding ``"beta"``, the
        diagnostics at β (``"ess_beta"``) and, at the real target β = 1, ``"ess"`` and
        ``"log_w_mean"``.
    """
    _check_flow(flow, "annealed_reverse_kl")
    batch_size = _check_batch(batch_size, "annealed_reverse_kl")
    path_gradient = bool(path_gradient)
    if not callable(beta_schedule):
        beta0 = float(beta_schedule)
        if not beta0 > 0.0:
            raise ValueError(f"annealed_reverse_kl: constant beta must be > 0, got {beta0}")
        beta_schedule = lambda step: beta0  # noqa: E731
    log_prob_v = jax.vmap(log_prob)

    def loss_fn(params: Any, key: PRNGKey, step: Array | int = 0) -> tuple[Array, dict]:
        x, log_q = _sample_and_log_q(flow, params, key, batch_size, path_gradient)
        log_p = log_prob_v(x)
        beta = jnp.asarray(beta_schedule(step), dtype=log_q.dtype)
        log_w_beta = beta * log_p - log_q
        aux = _diagnostics(log_p - log_q)
        aux["beta"] = beta
        aux["ess_beta"] = ess_fraction(jax.lax.stop_gradient(log_w_beta))
        return -jnp.mean(log_w_beta), aux

    return loss_fn


def forward_kl(
    flow: Flow,
    data: Array,
    batch_size: int | None = None,
    *,
    log_prob: LogProbFn | None = None,
    ess_batch_size: int = 256,
    weights: Array | None = None,
) -> LossFn:
    r"""Forward KL (maximum likelihood) on samples ``data`` from the target.

    .. math::
        L(\theta) = -\frac1B \sum_{j=1}^{B} \log q_\theta(y_j),\qquad y_j \in \texttt{data},

    or, with ``weights`` :math:`m_j \ge 0`, the weighted mean
    :math:`-\sum_j m_j \log q_\theta(y_j) / \sum_j m_j` (rows of weight 0 are ignored,
    whatever they hold: a 0/1 mask selects the filled slots of a buffer).

    equal up to a θ-independent constant to :math:`\mathrm{KL}(p\,\|\,q_\theta)` when the
    data are distributed as p. Mass-covering: it does not collapse onto one mode.

    Parameters
    ----------
    flow
        The flow q_theta.
    data
        Samples of shape ``(n, dim)``.
    batch_size
        Minibatch size B drawn uniformly with replacement from ``data`` with the loss key;
        ``None`` uses the full data set every step (deterministic full-batch loss).
    log_prob
        Optional unnormalised target log-density. When given, each evaluation also draws
        ``ess_batch_size`` points from q_theta (no gradient) to report ``"ess"`` and
        ``"log_w_mean"``; otherwise those diagnostics are NaN.
    weights
        Optional non-negative weights of shape ``(n,)``, one per row of ``data``.

    Returns
    -------
    loss_fn
        ``loss_fn(params, key, step=0) -> (L, aux)``.
    """
    _check_flow(flow, "forward_kl")
    data = _check_samples(data, flow.dim, "forward_kl", "data")
    n = data.shape[0]
    if batch_size is not None:
        batch_size = _check_batch(batch_size, "forward_kl")
    ess_batch_size = _check_batch(ess_batch_size, "forward_kl", "ess_batch_size")
    log_prob_v = None if log_prob is None else jax.vmap(log_prob)
    if weights is not None:
        weights = jnp.asarray(weights)
        if weights.shape != (n,):
            raise ValueError(f"forward_kl: `weights` must have shape ({n},), got {tuple(weights.shape)}")

    def loss_fn(params: Any, key: PRNGKey, step: Array | int = 0) -> tuple[Array, dict]:
        del step
        key_data, key_q = jax.random.split(key)
        if batch_size is None:
            batch, w = data, weights
        else:
            idx = jax.random.randint(key_data, (batch_size,), 0, n)
            batch, w = data[idx], None if weights is None else weights[idx]
        if w is not None:  # rows of weight 0 are evaluated at 0, so they cannot poison the gradient
            batch = jnp.where((w > 0)[:, None], batch, jnp.zeros((), batch.dtype))
        log_q = flow.log_prob(params, batch)
        if w is None:
            loss = -jnp.mean(log_q)
        else:
            w = w.astype(log_q.dtype)
            loss = -jnp.sum(jnp.where(w > 0, w * log_q, 0.0)) / jnp.maximum(jnp.sum(w), jnp.finfo(log_q.dtype).tiny)
        if log_prob_v is None:
            nan = jnp.full((), jnp.nan, dtype=log_q.dtype)
            aux = {"ess": nan, "log_w_mean": nan}
        else:
            x, log_q_x = flow.sample_and_log_prob(
                jax.lax.stop_gradient(params), key_q, ess_batch_size
            )
            aux = _diagnostics(log_prob_v(x) - log_q_x)
        aux["nll"] = jax.lax.stop_gradient(loss)
        return loss, aux

    return loss_fn


def combined(
    flow: Flow,
    log_prob: LogProbFn,
    data: Array,
    *,
    batch_size: int = 256,
    data_batch_size: int | None = None,
    kl_weight: float = 0.5,
) -> LossFn:
    r"""Boltzmann-generator loss: a weighted mix of reverse KL (energy) and forward KL (data).

    .. math::
        L(\theta) = \lambda\, L_{\mathrm{KL}}(\theta) + (1 - \lambda)\, L_{\mathrm{ML}}(\theta),

    with :math:`L_{\mathrm{KL}}` of :func:`reverse_kl` (``batch_size`` flow samples),
    :math:`L_{\mathrm{ML}}` of :func:`forward_kl` on ``data`` (``data_batch_size``
    minibatch, ``None`` = full batch) and λ = ``kl_weight`` in [0, 1].

    Returns
    -------
    loss_fn
        ``loss_fn(params, key, step=0) -> (L, aux)``; ``aux`` carries the reverse-KL
        diagnostics ``"ess"``, ``"log_w_mean"`` plus ``"nll"`` (the forward-KL term).
    """
    kl_weight = float(kl_weight)
    if not 0.0 <= kl_weight <= 1.0:
        raise ValueError(f"combined: `kl_weight` must lie in [0, 1], got {kl_weight}")
    rev = reverse_kl(flow, log_prob, batch_size)
    fwd = forward_kl(flow, data, data_batch_size)

    def loss_fn(params: Any, key: PRNGKey, step: Array | int = 0) -> tuple[Array, dict]:
        key_r, key_f = jax.random.split(key)
        loss_r, aux = rev(params, key_r, step)
        loss_f, aux_f = fwd(params, key_f, step)
        aux = dict(aux, nll=aux_f["nll"])
        return kl_weight * loss_r + (1.0 - kl_weight) * loss_f, aux

    return loss_fn
