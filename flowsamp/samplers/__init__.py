"""flowsamp.samplers: algorithms that compose kernels, flows and training."""

from flowsamp.samplers.chains import Trace, sample
from flowsamp.samplers.importance import ISResult, importance_sampling
from flowsamp.samplers.adaptive_flow_mcmc import AdaptiveFlowOutput, AdaptiveFlowState, adaptive_flow_mcmc
from flowsamp.samplers.wang_landau import WangLandauResult, WangLandauState, wang_landau
from flowsamp.samplers.multicanonical import MulticanonicalResult, multicanonical
from flowsamp.samplers.tempered_smc import TemperedSMCOutput, tempered_smc
from flowsamp.samplers.van import VANResult, van
from flowsamp.samplers.neural_wang_landau import NeuralWangLandauResult, neural_wang_landau
from flowsamp.samplers.replica_exchange_wang_landau import replica_exchange_wang_landau
from flowsamp.samplers.smc import SMCOutput, smc
from flowsamp.samplers.ais import ais
from flowsamp.samplers.craft import CRAFTOutput, craft
from flowsamp.samplers.parallel_tempering import ParallelTemperingResult, parallel_tempering
from flowsamp.samplers.fab import FABResult, FABState, fab
from flowsamp.samplers.surrogate_mcmc import Surrogate, SurrogateMCMCResult, mlp_surrogate, surrogate_mcmc

__all__ = [
    "AdaptiveFlowOutput",
    "AdaptiveFlowState",
    "CRAFTOutput",
    "FABResult",
    "FABState",
    "ISResult",
    "MulticanonicalResult",
    "NeuralWangLandauResult",
    "ParallelTemperingResult",
    "SMCOutput",
    "Surrogate",
    "SurrogateMCMCResult",
    "TemperedSMCOutput",
    "VANResult",
    "Trace",
    "WangLandauResult",
    "WangLandauState",
    "adaptive_flow_mcmc",
    "ais",
    "craft",
    "fab",
    "importance_sampling",
    "mlp_surrogate",
    "multicanonical",
    "neural_wang_landau",
    "replica_exchange_wang_landau",
    "parallel_tempering",
    "sample",
    "smc",
    "surrogate_mcmc",
    "tempered_smc",
    "van",
    "wang_landau",
]
