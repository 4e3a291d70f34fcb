"""FAB's 40-mode 2-D Gaussian mixture (Midgley et al. 2023), with fab-jax's construction."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.targets.gaussian_mixture import GaussianMixture, gaussian_mixture


def gmm40(seed: int = 0, num_modes: int = 40, loc_scaling: float = 40.0, var_scaling: float = 1.0,
          dim: int = 2) -> GaussianMixture:
    r"""Equal-weight mixture of ``num_modes`` Gaussians :math:`N(\mu_k, \text{var\_scaling}\,I)` with
    :math:`\mu_k \sim U[-1, 1]^d \cdot \text{loc\_scaling}` drawn from ``jax.random.PRNGKey(seed)``
    (fab-jax's ``GMM(dim=2, n_mixes=40, loc_scaling=40)``; seed 0 is the benchmark).

    Returns
    -------
    GaussianMixture
        normalised (``log_Z = 0``), exact ``sample``, ``mode_of`` (most responsible component),
        ``mode_weights`` all ``1/num_modes``.

    References
    ----------
    Midgley et al., Flow annealed importance sampling bootstrap, arXiv:2208.01893.
    """
    if num_modes < 1 or loc_scaling <= 0 or var_scaling <= 0:
        raise ValueError("gmm40: need num_modes >= 1, loc_scaling > 0, var_scaling > 0")
    key = jax.random.PRNGKey(int(seed))
    means = np.asarray(jax.random.uniform(key, (int(num_modes), int(dim)), jnp.float32, -1.0, 1.0),
                       dtype=np.float64) * float(loc_scaling)
    return gaussian_mixture(means, covs=float(var_scaling))
