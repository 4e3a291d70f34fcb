"""flowsamp.samplers: algorithms that compose kernels, flows and training."""

from flowsamp.samplers.chains import Trace, sample
from flowsamp.samplers.importance import ISResult, importance_sampling

__all__ = ["ISResult", "Trace", "importance_sampling", "sample"]
