"""Mode (basin) weights from labelled samples, with standard errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowsamp.estimators.evidence import expectation
from flowsamp.types import Array


def mode_weights(
    labels: Array, num_modes: int, log_w: Array | None = None
) -> tuple[Array, Array]:
    r"""Estimate the probability mass :math:`\pi_m = P(\text{mode}(x) = m)` of each mode.

    Three regimes, chosen by the arguments:

    * ``log_w`` given (importance sampling, ``labels`` shape ``(N,)``): self-normalised
      estimate :math:`\hat\pi_m = \sum_i \bar w_i 1[\ell_i = m]` with its delta-method SE.
    * ``labels`` of shape ``(chains, draws)`` with at least two chains (MCMC): the
      per-chain frequencies :math:`\hat\pi_{c,m}` are averaged and the SE is the
      between-chain standard error :math:`\operatorname{sd}_c(\hat\pi_{c,m})/\sqrt{C}`,
      which accounts for autocorrelation inside chains (chains must be independent).
    * ``labels`` of shape ``(N,)``: independent draws, binomial SE
      :math:`\sqrt{\hat\pi_m (1 - \hat\pi_m)/N}`.

    Labels outside ``[0, num_modes)`` (e.g. ``-1`` for "no mode") count for no mode.

    Returns
    -------
    ``(weights, se)``, each of shape ``(num_modes,)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> w, se = mode_weights(jnp.array([[0, 0, 1, 1], [0, 1, 1, 1]]), 2)  # 2 chains, 4 draws
    >>> w.tolist()
    [0.375, 0.625]
    """
    if not isinstance(num_modes, int) or num_modes < 1:
        raise ValueError(f"num_modes must be a positive int, got {num_modes!r}")
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    one_hot = jax.nn.one_hot(labels, num_modes, dtype=jnp.result_type(float))
    if log_w is not None:
        if labels.ndim != 1:
            raise ValueError(f"with log_w, labels must be 1-D, got shape {labels.shape}")
        return expectation(one_hot, log_w)
    if labels.ndim == 2 and labels.shape[0] >= 2:
        per_chain = one_hot.mean(axis=1)  # (chains, num_modes)
        c = per_chain.shape[0]
        return per_chain.mean(axis=0), per_chain.std(axis=0, ddof=1) / jnp.sqrt(c)
    flat = one_hot.reshape(-1, num_modes)
    n = flat.shape[0]
    p = flat.mean(axis=0)
    return p, jnp.sqrt(p * (1.0 - p) / n)
