"""flowsamp.numpyro: numpyro models as flowsamp targets, flowsamp kernels inside numpyro's MCMC.

Inside this subpackage ``import numpyro`` is absolute and resolves to the numpyro library.
``flowsamp.numpyro.models`` holds example models with their data (eight schools, The Joker's
radial-velocity toy and its (v0, K)-marginalised form).
"""

from flowsamp.kernels.global_local import GlobalLocalInfo, GlobalLocalState, global_local  # alias of fs.kernels'
from flowsamp.numpyro import models
from flowsamp.numpyro.kernel import Kernel, KernelState
from flowsamp.numpyro.target import NumpyroTarget, check_model_sites, prior_target, target
from flowsamp.numpyro.convergence import verdict

__all__ = [
    "GlobalLocalInfo",
    "GlobalLocalState",
    "Kernel",
    "KernelState",
    "NumpyroTarget",
    "check_model_sites",
    "global_local",
    "models",
    "prior_target",
    "target",
    "verdict",
]
