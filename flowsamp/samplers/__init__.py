"""flowsamp.samplers: algorithms that compose kernels, flows and training."""

from flowsamp.samplers.chains import Trace, sample
from flowsamp.samplers.importance import ISResult, importance_sampling
from flowsamp.samplers.adaptive_flow_mcmc import AdaptiveFlowOutput, AdaptiveFlowState, adaptive_flow_mcmc  # noqa: E402

__all__ = ["ISResult", "Trace", "importance_sampling", "sample"]
__all__ += ["AdaptiveFlowOutput", "AdaptiveFlowState", "adaptive_flow_mcmc"]
from flowsamp.samplers.wang_landau import WangLandauResult, WangLandauState, wang_landau  # noqa: E402

__all__ += ["WangLandauResult", "WangLandauState", "wang_landau"]
from flowsamp.samplers.multicanonical import MulticanonicalResult, multicanonical  # noqa: E402

__all__ += ["MulticanonicalResult", "multicanonical"]
from flowsamp.samplers.tempered_smc import TemperedSMCOutput, tempered_smc  # noqa: E402

__all__ += ["TemperedSMCOutput", "tempered_smc"]
