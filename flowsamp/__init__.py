"""flowsamp: machine-learning-assisted Monte Carlo in JAX.

Learned models (normalizing flows, autoregressive networks) trained with optax make sampling
fast; exact Monte Carlo (importance sampling, Metropolis-Hastings, SMC, Wang-Landau) removes
their bias.
"""

from flowsamp import autoregressive, estimators, flows, io, kernels, numpyro, samplers, targets, train
from flowsamp import rare
from flowsamp.arviz import to_arviz
from flowsamp.base import Flow, Proposal, SamplingAlgorithm
from flowsamp.estimators.verdict import NotConvergedWarning
from flowsamp.samplers import ISResult, Trace, importance_sampling, sample

__version__ = "0.1.0"

__all__ = [
    "Flow",
    "ISResult",
    "NotConvergedWarning",
    "Proposal",
    "SamplingAlgorithm",
    "Trace",
    "autoregressive",
    "estimators",
    "flows",
    "importance_sampling",
    "io",
    "kernels",
    "numpyro",
    "rare",
    "sample",
    "samplers",
    "targets",
    "to_arviz",
    "train",
]
