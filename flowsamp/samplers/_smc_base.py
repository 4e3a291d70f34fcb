r"""SMC bases whose parameters are data, so that one compiled program serves many bases.

:func:`flowsamp.samplers.smc` compiles its tempering step for the densities it is given, and a
density that closes over arrays (a Gaussian base's mean and scale) bakes them into the program:
a second base, even of the same shape, is a second compilation (~6 s on a 2-core CPU against
~0.1 s to run a whole 2-D tempered round). A :class:`ParametricBase` keeps the log density
:math:`\log q_\theta(x)` as a module-level function of ``(params, x)`` and passes
:math:`\theta` to the compiled step as an argument, so every base of one family and shape runs
the same program (the exploration rounds of :func:`flowsamp.samplers.adaptive_flow_mcmc`
widen their base round by round).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

from flowsamp.types import Array

__all__ = ["ParametricBase", "PlainLogProb", "diagonal_gaussian_base"]

_LOG_2PI = math.log(2.0 * math.pi)


class ParametricBase(NamedTuple):
    r"""An SMC base :math:`q_\theta`: ``log_prob_fn(params, x)`` (a function whose identity keys
    the compiled programs: define it once, at module level), ``params`` (a pytree of arrays,
    passed to the programs as data) and ``log_Z`` (the base's log normaliser, 0 when
    ``log_prob_fn`` is normalised). Initial particles must be given (``initial_particles=``)."""

    log_prob_fn: Callable[[Any, Array], Array]
    params: Any
    log_Z: float = 0.0


def _diagonal_gaussian_log_prob(params: tuple[Array, Array], x: Array) -> Array:
    loc, scale = params
    u = (x - loc) / scale
    return -0.5 * jnp.sum(u * u) - jnp.sum(jnp.log(scale)) - 0.5 * x.shape[-1] * _LOG_2PI


def diagonal_gaussian_base(loc: Array, scale: Array, dtype: Any = None) -> ParametricBase:
    r""":math:`\mathcal N(\text{loc}, \mathrm{diag}(\text{scale}^2))`, normalised, as a
    :class:`ParametricBase` (every loc and scale of one dimension share one program)."""
    loc = jnp.asarray(loc, dtype)
    return ParametricBase(_diagonal_gaussian_log_prob, (loc, jnp.asarray(scale, loc.dtype)), 0.0)


class PlainLogProb:
    """``log_prob(x)`` of an ordinary base as a ``(params, x)`` function that ignores ``params``;
    equal (and hashing equal) for the same ``log_prob``, so the program cache still hits."""

    __slots__ = ("fn", "key")

    def __init__(self, fn: Callable[[Array], Array], key: Any):
        self.fn, self.key = fn, key

    def __call__(self, params: Any, x: Array) -> Array:
        return self.fn(x)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlainLogProb) and other.key == self.key

    def __hash__(self) -> int:
        return hash(("PlainLogProb", self.key))
