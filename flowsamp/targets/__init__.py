"""flowsamp.targets: what to sample (log-densities with exact references where known).

Every target is a frozen dataclass (hashed by identity: usable as a static ``jit`` argument)
with ``dim``, ``log_prob(x)`` on one point ``(dim,)``, ``log_Z`` (exact or ``None``),
``sample(key, n)`` (exact or ``NotImplementedError``), ``mode_of(x)``, ``mode_weights`` and
``num_modes``. Continuous families: ``gaussian``, ``gaussian_mixture`` (``four_mode_mixture``,
``tutorial_mixture``), ``funnel``, ``rosenbrock``, ``muller_brown``, ``many_well``,
``dual_moon``, ``phi4_1d``, ``phi4_2d``, ``radial_velocity``, and the seeded benchmark
family ``mixture_benchmark``.
"""

from flowsamp.targets.base import Target
from flowsamp.targets.dual_moon import DualMoon, dual_moon
from flowsamp.targets.funnel import Funnel, funnel
from flowsamp.targets.gaussian import Gaussian, gaussian
from flowsamp.targets.inference_gym import InferenceGymTarget, inference_gym
from flowsamp.targets.gaussian_mixture import (
    GaussianMixture,
    four_mode_mixture,
    gaussian_mixture,
    tutorial_mixture,
)
from flowsamp.targets.gmm40 import gmm40
from flowsamp.targets.ising import Ising, ising
from flowsamp.targets.many_well import ManyWell, many_well
from flowsamp.targets.mixture_benchmark import MixtureBenchmark, mixture_benchmark
from flowsamp.targets.muller_brown import MullerBrown, muller_brown, muller_brown_potential
from flowsamp.targets.particles import ParticleSystem, hard_rods, hard_spheres, ideal_gas, lennard_jones
from flowsamp.targets.phi4_1d import Phi4Chain, phi4_1d
from flowsamp.targets.radial_velocity import RadialVelocity, radial_velocity
from flowsamp.targets.rosenbrock import Rosenbrock, rosenbrock
from flowsamp.targets.soft_spheres import SoftSphereMixture, pair_correlation, soft_sphere_mixture
from flowsamp.targets.potts import Potts, potts
from flowsamp.targets.phi4_2d import (
    Phi4Lattice,
    free_field_log_Z,
    magnetization,
    phi4_2d,
    susceptibility,
    two_point_function,
)

__all__ = [
    "Target",
    "ParticleSystem",
    "hard_rods",
    "hard_spheres",
    "ideal_gas",
    "lennard_jones",
    "SoftSphereMixture",
    "pair_correlation",
    "soft_sphere_mixture",
    "Gaussian",
    "gaussian",
    "InferenceGymTarget",
    "inference_gym",
    "GaussianMixture",
    "gaussian_mixture",
    "four_mode_mixture",
    "tutorial_mixture",
    "gmm40",
    "ManyWell",
    "many_well",
    "MullerBrown",
    "muller_brown",
    "muller_brown_potential",
    "Phi4Chain",
    "phi4_1d",
    "Phi4Lattice",
    "phi4_2d",
    "free_field_log_Z",
    "magnetization",
    "two_point_function",
    "susceptibility",
    "Funnel",
    "funnel",
    "Rosenbrock",
    "rosenbrock",
    "DualMoon",
    "dual_moon",
    "RadialVelocity",
    "radial_velocity",
    "Ising",
    "ising",
    "Potts",
    "potts",
    "MixtureBenchmark",
    "mixture_benchmark",
]
