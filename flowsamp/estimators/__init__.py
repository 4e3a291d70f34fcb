"""Estimators: importance weights, ESS, ln Z, expectations, mode weights, MCMC diagnostics, verdicts."""

from flowsamp.estimators.canonical import (
    CanonicalAverages,
    canonical_averages,
    canonical_distribution,
    equal_height_beta,
)
from flowsamp.estimators.dos import DOSEstimate, dos_from_samples
from flowsamp.estimators.diagnostics import autocorrelation, integrated_autocorr_time, mcmc_ess, rhat
from flowsamp.estimators.evidence import expectation, log_evidence
from flowsamp.estimators.modes import mode_weights
from flowsamp.estimators.pareto import pareto_k
from flowsamp.estimators.verdict import (
    NotConvergedWarning,
    Thresholds,
    Verdict,
    importance_verdict,
    mcmc_verdict,
    rank_diagnostics,
    warn_if_not_converged,
)
from flowsamp.estimators.summary import summarize
from flowsamp.estimators.weights import ess, normalized_weights

__all__ = [
    "CanonicalAverages",
    "DOSEstimate",
    "NotConvergedWarning",
    "Thresholds",
    "Verdict",
    "autocorrelation",
    "canonical_averages",
    "canonical_distribution",
    "dos_from_samples",
    "equal_height_beta",
    "ess",
    "expectation",
    "importance_verdict",
    "integrated_autocorr_time",
    "log_evidence",
    "mcmc_ess",
    "mcmc_verdict",
    "mode_weights",
    "normalized_weights",
    "pareto_k",
    "rank_diagnostics",
    "rhat",
    "summarize",
    "warn_if_not_converged",
]
