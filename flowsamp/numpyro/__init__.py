"""flowsamp.numpyro: numpyro models as flowsamp targets, flowsamp kernels inside numpyro's MCMC.

Inside this subpackage ``import numpyro`` is absolute and resolves to the numpyro library.
"""

from flowsamp.numpyro.kernel import Kernel, KernelState
from flowsamp.numpyro.target import NumpyroTarget, check_model_sites, target

__all__ = ["Kernel", "KernelState", "NumpyroTarget", "check_model_sites", "target"]
