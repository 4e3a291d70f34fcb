r"""Denoising score matching for :func:`flowsamp.flows.diffusion`.

References: Vincent, A connection between score matching and denoising autoencoders, Neural
Comput. 23 (2011); Song et al., arXiv:2011.13456; Ho et al., arXiv:2006.11239.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from flowsamp.flows.diffusion import DiffusionFlow
from flowsamp.train._rows import draw_rows, row_log_weights
from flowsamp.train.losses import LossFn, _check_batch, _check_samples
from flowsamp.types import Array, PRNGKey

__all__ = ["score_matching"]


def score_matching(
    flow: DiffusionFlow,
    data: Array,
    batch_size: int = 256,
    *,
    weights: Array | None = None,
) -> LossFn:
    r"""Denoising score-matching loss (noise prediction, weighting :math:`\lambda_t = \sigma_t^2`).

    With :math:`y_0 = (x - \mathrm{loc})/\mathrm{scale}`, :math:`x` a data row,
    :math:`t \sim U(t_{\min}, 1)`, :math:`\varepsilon \sim N(0, I)`,
    :math:`y_t = \alpha_t y_0 + \sigma_t \varepsilon`,

    .. math::
        L(\theta) = \mathbb{E}\,\lVert \hat\varepsilon_\theta(t, y_t) - \varepsilon\rVert^2/d
                  = \mathbb{E}\,\sigma_t^2\lVert s_\theta(t, y_t) - \nabla\log p_t(y_t|y_0)\rVert^2/d ,

    minimised by the score of the noised data :math:`s_\theta = \nabla\log p_t`.

    Parameters
    ----------
    flow
        A :class:`~flowsamp.flows.diffusion.DiffusionFlow` (``fs.flows.diffusion``).
    data
        Target samples ``(n, dim)``.
    batch_size
        Rows per evaluation (uniform with replacement, or in proportion to ``weights``).
    weights
        Optional non-negative weights ``(n,)`` of the rows (SMC particle weights).

    Returns
    -------
    loss_fn
        ``loss_fn(params, key, step=0) -> (L, {"dsm": L, "ess": nan})``.
    """
    if not isinstance(flow, DiffusionFlow):
        raise TypeError(f"score_matching: `flow` must be a DiffusionFlow (fs.flows.diffusion), got {type(flow).__name__}")
    data = _check_samples(data, flow.dim, "score_matching", "data")
    batch_size = _check_batch(batch_size, "score_matching")
    n = data.shape[0]
    log_w = row_log_weights(weights, n, "score_matching")
    sde, t_min = flow.sde, flow.sde.t_min
    eps_hat = jax.vmap(flow.noise_prediction, in_axes=(None, 0, 0))

    def loss_fn(params: Any, key: PRNGKey, step: Array | int = 0) -> tuple[Array, dict]:
        del step
        k_data, k_t, k_eps = jax.random.split(key, 3)
        x = draw_rows(k_data, data, log_w, batch_size)
        y0 = (x - flow.loc.astype(x.dtype)) / flow.scale.astype(x.dtype)
        t = jax.random.uniform(k_t, (batch_size,), x.dtype, t_min, 1.0)
        eps = jax.random.normal(k_eps, y0.shape, x.dtype)
        yt = sde.alpha(t)[:, None] * y0 + sde.sigma(t)[:, None] * eps
        loss = jnp.mean((eps_hat(params, t, yt) - eps) ** 2)
        return loss, {"dsm": jax.lax.stop_gradient(loss), "ess": jnp.full((), jnp.nan, loss.dtype)}

    return loss_fn
