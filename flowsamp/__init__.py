"""flowsamp: machine-learning-assisted Monte Carlo in JAX.

Learned models (normalizing flows, autoregressive networks) trained with optax make sampling
fast; exact Monte Carlo (importance sampling, Metropolis-Hastings, SMC, Wang-Landau) removes
their bias.
"""

from flowsamp import estimators, flows, kernels, samplers, targets, train
from flowsamp.base import SamplingAlgorithm

__version__ = "0.1.0"

__all__ = [
    "SamplingAlgorithm",
    "estimators",
    "flows",
    "kernels",
    "samplers",
    "targets",
    "train",
]
