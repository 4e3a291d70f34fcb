"""flowsamp.kernels: Markov transition kernels, blackjax style.

Each kernel module ``foo`` has ``init(position, log_prob_fn)``, ``build_kernel()`` and a
constructor ``foo(log_prob_fn, **params) -> SamplingAlgorithm(init, step)``.
``KERNELS`` lists the constructors' names; the conformance test covers every entry.
"""

from flowsamp.kernels import integrators
from flowsamp.kernels.hmc import HMCInfo, HMCState, hmc
from flowsamp.kernels.mala import MALAInfo, MALAState, mala
from flowsamp.kernels.rwmh import RWMHInfo, RWMHState, rwmh
from flowsamp.kernels.flow_imh import FlowIMHInfo, FlowIMHState, flow_imh  # noqa: E402
from flowsamp.kernels.isir import ISIRInfo, ISIRState, isir  # noqa: E402

#: Names of the kernel constructors in this package (extend when adding a kernel module).
KERNELS = ["rwmh", "mala", "hmc"]

__all__ = [
    "KERNELS",
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
__all__ += ["FlowIMHInfo", "FlowIMHState", "flow_imh", "ISIRInfo", "ISIRState", "isir"]
