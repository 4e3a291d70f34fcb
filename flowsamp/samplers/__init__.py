"""flowsamp.samplers: algorithms that compose kernels, flows and training."""

from flowsamp.samplers.chains import Trace, sample

__all__ = ["Trace", "sample"]
