"""MCMC convergence diagnostics: thin wrappers over ``numpyro.diagnostics``.

All take samples with chains on the leading axis, ``(chains, draws, ...)``.
"""

from __future__ import annotations

import numpy as np
from numpyro import diagnostics as _nd

from flowsamp.types import Array


def _as_chains(samples: Array, name: str) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim < 2:
        raise ValueError(f"{name}: samples must have shape (chains, draws, ...), got {x.shape}")
    if x.shape[1] < 4:
        raise ValueError(f"{name}: need at least 4 draws per chain, got {x.shape[1]}")
    return x


def mcmc_ess(samples: Array) -> np.ndarray:
    """Bulk effective sample size over all chains, per coordinate (numpyro's estimator).

    Returns an array of shape ``samples.shape[2:]``; ``min`` of it is the usual
    "minimum ESS over dimensions".
    """
    return np.asarray(_nd.effective_sample_size(_as_chains(samples, "mcmc_ess")))


def rhat(samples: Array, split: bool = True) -> np.ndarray:
    r"""Potential scale reduction :math:`\hat R` per coordinate (split-:math:`\hat R` by default).

    Values above about 1.01 say the chains have not mixed. Needs at least two chains unless
    ``split`` is true.
    """
    x = _as_chains(samples, "rhat")
    fn = _nd.split_gelman_rubin if split else _nd.gelman_rubin
    if not split and x.shape[0] < 2:
        raise ValueError("rhat: the non-split R-hat needs at least 2 chains")
    return np.asarray(fn(x))


def integrated_autocorr_time(samples: Array) -> np.ndarray:
    r"""Integrated autocorrelation time :math:`\tau = C\,N / \mathrm{ESS}` per coordinate.

    ``C`` chains of ``N`` draws; :math:`\tau = 1` for independent draws.
    """
    x = _as_chains(samples, "integrated_autocorr_time")
    return x.shape[0] * x.shape[1] / mcmc_ess(x)


def autocorrelation(samples: Array) -> np.ndarray:
    """Normalised autocorrelation function along the draw axis of each chain (numpyro's FFT)."""
    x = _as_chains(samples, "autocorrelation")
    return np.asarray(_nd.autocorrelation(x, axis=1))
