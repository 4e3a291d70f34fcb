"""flowsamp.kernels: Markov transition kernels, blackjax style.

Each kernel module ``foo`` has ``init(position, log_prob_fn)``, ``build_kernel()`` and a
constructor ``foo(log_prob_fn, **params) -> SamplingAlgorithm(init, step)``.
Every constructor listed in ``__all__`` (a function whose module has ``init`` and
``build_kernel``) is covered by the conformance test ``tests/test_api_protocols.py``.
"""

from flowsamp.kernels import integrators
from flowsamp.kernels.hmc import HMCInfo, HMCState, hmc
from flowsamp.kernels.mala import MALAInfo, MALAState, mala
from flowsamp.kernels.rwmh import RWMHInfo, RWMHState, rwmh
from flowsamp.kernels.flow_imh import FlowIMHInfo, FlowIMHState, flow_imh  # noqa: E402
from flowsamp.kernels.isir import ISIRInfo, ISIRState, isir  # noqa: E402
from flowsamp.kernels.neutra import NeuTraInfo, NeuTraState, neutra  # noqa: E402

__all__ = [
    "HMCInfo",
    "HMCState",
    "MALAInfo",
    "MALAState",
    "RWMHInfo",
    "RWMHState",
    "hmc",
    "integrators",
    "mala",
    "rwmh",
]
__all__ += ["FlowIMHInfo", "FlowIMHState", "flow_imh", "ISIRInfo", "ISIRState", "isir", "NeuTraInfo", "NeuTraState", "neutra"]
from flowsamp.kernels.adaptation import (  # noqa: E402
    AdaptationResult,
    dual_averaging,
    dual_averaging_adaptation,
    find_step_size,
)

__all__ += ["AdaptationResult", "dual_averaging", "dual_averaging_adaptation", "find_step_size"]
from flowsamp.kernels._spins import SpinInfo, SpinState  # noqa: E402
from flowsamp.kernels.gibbs import SimultaneousGibbsWarning, gibbs  # noqa: E402
from flowsamp.kernels.spin_metropolis import spin_metropolis  # noqa: E402
from flowsamp.kernels.wolff import wolff  # noqa: E402

__all__ += ["SpinInfo", "SpinState", "SimultaneousGibbsWarning", "gibbs", "spin_metropolis", "wolff"]
