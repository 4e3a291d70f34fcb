r"""Conditional flow matching (linear / conditional-OT interpolant) for continuous flows.

Regresses the flow's velocity on the velocity of a straight path between a base draw and a
data point; no ODE is solved during training (simulation-free).

References: Lipman et al., Flow matching for generative modeling, arXiv:2210.02747;
Liu et al., Rectified flow, arXiv:2209.03003; Albergo & Vanden-Eijnden, Stochastic
interpolants, arXiv:2209.15571; Tong et al., Conditional flow matching, arXiv:2302.00482.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from flowsamp.flows.cnf import ContinuousFlow
from flowsamp.train._rows import draw_rows, row_log_weights
from flowsamp.train.losses import LossFn, _check_batch, _check_samples
from flowsamp.types import Array, PRNGKey

__all__ = ["flow_matching"]


def flow_matching(
    flow: ContinuousFlow,
    data: Array,
    batch_size: int = 256,
    *,
    sigma_min: float = 0.0,
    weights: Array | None = None,
) -> LossFn:
    r"""Conditional flow-matching loss for :func:`flowsamp.train.fit`.

    With :math:`x_0 \sim p_0` (the flow's base, parameters held fixed), :math:`x_1` a data point,
    :math:`t \sim U(0, 1)` and the conditional-OT path
    :math:`x_t = (1 - (1 - \sigma_{\min}) t)\,x_0 + t\,x_1`,

    .. math::
        L(\theta) = \mathbb{E}\,\big\lVert v_\theta(t, x_t) - \big(x_1 - (1 - \sigma_{\min}) x_0\big)
        \big\rVert^2 / d .

    For a flow on a torus (one with ``box_length`` :math:`L`, :func:`flowsamp.flows.torus_cnf`)
    the path is the geodesic :math:`x_t = x_0 + t\,\delta`, :math:`\delta = x_1 - x_0 - L\,
    \mathrm{round}((x_1 - x_0)/L)` (minimum image), regressed on :math:`\delta`
    (Riemannian flow matching, Chen & Lipman, arXiv:2302.03660; ``sigma_min`` must be 0).

    Its minimiser is the marginal velocity whose ODE carries :math:`p_0` at :math:`t = 0` to the
    data distribution at :math:`t = 1` (smoothed by :math:`\sigma_{\min}`); the trained
    :func:`flowsamp.flows.cnf` then has an exact log-density for IS / IMH correction.

    Parameters
    ----------
    flow
        A :class:`~flowsamp.flows.cnf.ContinuousFlow` (``fs.flows.cnf``).
    data
        Samples ``(n, dim)`` of the target (chain samples, SMC particles, ...).
    batch_size
        Pairs per loss evaluation (data rows drawn uniformly with replacement, or in proportion
        to ``weights``).
    sigma_min
        Width of the conditional paths at :math:`t = 1`; 0 gives the linear interpolant
        (rectified flow).
    weights
        Optional non-negative weights ``(n,)`` of the data rows (e.g. SMC particle weights).

    Returns
    -------
    loss_fn
        ``loss_fn(params, key, step=0) -> (L, {"fm": L, "ess": nan})`` (no ESS: that needs ODE
        solves; measure it afterwards with ``fs.importance_sampling``).
    """
    if not isinstance(flow, ContinuousFlow):
        raise TypeError(f"flow_matching: `flow` must be a ContinuousFlow (fs.flows.cnf), got {type(flow).__name__}")
    data = _check_samples(data, flow.dim, "flow_matching", "data")
    batch_size = _check_batch(batch_size, "flow_matching")
    if not 0.0 <= float(sigma_min) < 1.0:
        raise ValueError(f"flow_matching: `sigma_min` must be in [0, 1), got {sigma_min!r}")
    sigma_min = float(sigma_min)
    box_length = getattr(flow, "box_length", None)
    if box_length is not None and sigma_min != 0.0:
        raise ValueError("flow_matching: a torus flow (box_length) takes sigma_min = 0")
    n = data.shape[0]
    log_w = row_log_weights(weights, n, "flow_matching")
    velocity = jax.vmap(flow.velocity, in_axes=(None, 0, 0))

    def loss_fn(params: Any, key: PRNGKey, step: Array | int = 0) -> tuple[Array, dict]:
        del step
        k_data, k_base, k_t = jax.random.split(key, 3)
        x1 = draw_rows(k_data, data, log_w, batch_size)
        base_params = jax.lax.stop_gradient(params["base"])
        x0, _ = flow.base.sample_and_log_prob(base_params, k_base, batch_size)
        x0 = x0.astype(x1.dtype)
        t = jax.random.uniform(k_t, (batch_size,), dtype=x1.dtype)
        if box_length is None:
            xt = (1.0 - (1.0 - sigma_min) * t)[:, None] * x0 + t[:, None] * x1
            target = x1 - (1.0 - sigma_min) * x0
        else:  # geodesic on the torus
            delta = x1 - x0
            target = delta - box_length * jnp.round(delta / box_length)
            xt = x0 + t[:, None] * target
        loss = jnp.mean((velocity(params, t, xt) - target) ** 2)
        return loss, {"fm": jax.lax.stop_gradient(loss), "ess": jnp.full((), jnp.nan, loss.dtype)}

    return loss_fn
