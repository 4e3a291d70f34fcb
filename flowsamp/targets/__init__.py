"""flowsamp.targets: what to sample (log-densities with exact references where known)."""

from flowsamp.targets.base import Target
from flowsamp.targets.gaussian import Gaussian, gaussian
from flowsamp.targets.gaussian_mixture import (
    GaussianMixture,
    four_mode_mixture,
    gaussian_mixture,
    tutorial_mixture,
)
from flowsamp.targets.many_well import ManyWell, many_well
from flowsamp.targets.muller_brown import MullerBrown, muller_brown, muller_brown_potential

__all__ = [
    "Target",
    "Gaussian",
    "gaussian",
    "GaussianMixture",
    "gaussian_mixture",
    "four_mode_mixture",
    "tutorial_mixture",
    "ManyWell",
    "many_well",
    "MullerBrown",
    "muller_brown",
    "muller_brown_potential",
]
from flowsamp.targets.ising import Ising, ising  # noqa: E402
from flowsamp.targets.potts import Potts, potts  # noqa: E402

__all__ += ["Ising", "ising", "Potts", "potts"]
