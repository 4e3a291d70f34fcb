r"""The α-divergence loss of flow annealed importance sampling bootstrap (FAB).

FAB (Midgley, Stimper, Simm, Schölkopf, Hernández-Lobato, ICLR 2023, arXiv:2208.01893) minimises

.. math:: D_\alpha(p\,\|\,q_\theta) \propto \int p(x)^\alpha\, q_\theta(x)^{1-\alpha}\,dx,

(α = 2: the variance of the importance weights :math:`p/q_\theta`, i.e. what limits the
ESS of importance sampling with :math:`q_\theta`) with samples from AIS targeting the
minimum-variance proposal :math:`p^\alpha q^{1-\alpha}`. With a replay buffer the surrogate on
a batch :math:`x_j` drawn with probability :math:`\propto w_j` is

.. math::

    L(\theta) = -\frac1B \sum_j \min\big(c,\; e^{(1-\alpha)[\log q_\theta(x_j) - \log q_{\rm old}(x_j)]}\big)
                \,\log q_\theta(x_j),

the weight factor evaluated without gradient (it corrects for the flow having moved since
the AIS run that made :math:`x_j`), clipped at ``w_adjust_clip`` :math:`c` for stability.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from flowsamp.base import Flow
from flowsamp.types import Array, PRNGKey

__all__ = ["fab_buffer_loss"]


def fab_buffer_loss(flow: Flow, x: Array, log_q_old: Array, *, alpha: float = 2.0, w_adjust_clip: float = 10.0):
    """FAB's buffer loss on the batch ``x`` (module docs).

    Returns
    -------
    loss_fn
        ``loss_fn(params, key, step=0) -> (L, aux)``, ``aux`` holding ``"log_w_adjust"``
        :math:`(1-\\alpha)(\\log q_\\theta - \\log q_{\\rm old})` and ``"log_q"`` :math:`\\log q_\\theta(x_j)`
        per sample (for :func:`flowsamp.train.replay_buffer.PrioritisedBuffer.adjust`) and ``"ess"`` (NaN:
        the loss draws nothing from the flow).
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"fab_buffer_loss: `flow` must be a flowsamp.base.Flow, got {type(flow).__name__}")
    if not float(w_adjust_clip) > 0:
        raise ValueError(f"fab_buffer_loss: `w_adjust_clip` must be > 0, got {w_adjust_clip!r}")

    def loss_fn(params: Any, key: PRNGKey, step: Array | int = 0) -> tuple[Array, dict]:
        del key, step
        log_q = flow.log_prob(params, x)
        log_w_adjust = (1.0 - alpha) * (jax.lax.stop_gradient(log_q) - log_q_old)
        w = jnp.minimum(jnp.exp(log_w_adjust), w_adjust_clip)
        aux = {"log_w_adjust": log_w_adjust, "log_q": jax.lax.stop_gradient(log_q),
               "ess": jnp.full((), jnp.nan, log_q.dtype)}
        return -jnp.mean(w * log_q), aux

    return loss_fn
