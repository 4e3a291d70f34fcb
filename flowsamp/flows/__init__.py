"""flowsamp.flows: normalizing flows as NamedTuples of pure functions over a params pytree.

Every constructor returns a :class:`flowsamp.base.Flow` whose params are plain dicts/lists
of arrays ``{"base": ..., "layers": [...]}`` (msgpack-serialisable with flax.serialization)
and which is exactly its base distribution at initialisation.
"""

from flowsamp.flows.bases import (
    Base,
    diagonal_gaussian,
    informed_gaussian,
    phi4_1d_precision,
    standard_normal,
)
from flowsamp.flows.cnf import (
    ContinuousFlow,
    InexactLogQError,
    check_log_q,
    cnf,
    divergence,
    hutchinson_divergence,
    ode_flow,
)
from flowsamp.flows.diffusion import SDE, DiffusionFlow, diffusion, ve_sde, vp_sde
from flowsamp.flows.layers import Layer, compose, global_affine
from flowsamp.flows.maf import maf
from flowsamp.flows.preconditioning import Affine, fit_affine, preconditioned
from flowsamp.flows.proposal import proposal
from flowsamp.flows.realnvp import realnvp
from flowsamp.flows.rq_spline import rq_spline
from flowsamp.flows.symmetrize import symmetrize
from flowsamp.flows.torus import torus_cnf, uniform_torus

__all__ = [
    "Affine",
    "Base",
    "ContinuousFlow",
    "DiffusionFlow",
    "InexactLogQError",
    "Layer",
    "SDE",
    "check_log_q",
    "cnf",
    "compose",
    "diagonal_gaussian",
    "diffusion",
    "divergence",
    "fit_affine",
    "global_affine",
    "hutchinson_divergence",
    "informed_gaussian",
    "maf",
    "ode_flow",
    "phi4_1d_precision",
    "preconditioned",
    "proposal",
    "realnvp",
    "rq_spline",
    "standard_normal",
    "symmetrize",
    "torus_cnf",
    "uniform_torus",
    "ve_sde",
    "vp_sde",
]
