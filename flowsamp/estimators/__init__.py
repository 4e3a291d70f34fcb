"""Estimators: importance weights, ESS, ln Z, expectations, mode weights, MCMC diagnostics."""

from flowsamp.estimators.diagnostics import autocorrelation, integrated_autocorr_time, mcmc_ess, rhat
from flowsamp.estimators.evidence import expectation, log_evidence
from flowsamp.estimators.modes import mode_weights
from flowsamp.estimators.pareto import pareto_k
from flowsamp.estimators.weights import ess, normalized_weights

__all__ = [
    "autocorrelation",
    "ess",
    "expectation",
    "integrated_autocorr_time",
    "log_evidence",
    "mcmc_ess",
    "mode_weights",
    "normalized_weights",
    "pareto_k",
    "rhat",
]
from flowsamp.estimators.canonical import (  # noqa: E402
    CanonicalAverages,
    canonical_averages,
    canonical_distribution,
    equal_height_beta,
)

__all__ += ["CanonicalAverages", "canonical_averages", "canonical_distribution", "equal_height_beta"]
