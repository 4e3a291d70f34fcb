"""Options of :func:`flowsamp.samplers.adaptive_flow_mcmc` as a validated frozen dataclass."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import optax

__all__ = ["AdaptiveFlowConfig", "make_config"]


@dataclasses.dataclass(frozen=True, eq=False)
class AdaptiveFlowConfig:
    """Schedule and algorithm options of the adaptive global-local flow sampler.

    Per loop: ``num_local_steps`` local steps (``local = "mala"`` or ``"hmc"`` with
    ``num_integration_steps`` leapfrog steps; initial ``step_size``, adapted in training
    after every step by :func:`flowsamp.kernels.adaptation.robbins_monro` at ``rate =
    adapt_rate`` on the fraction of chains that accepted, target ``TARGET_ACCEPTANCE[local]``;
    ``adapt_rate = 0`` freezes it), then (training only) ``num_epochs`` full-batch
    optimizer steps (:func:`flowsamp.train.fit_steps`) of forward KL on the buffer, then
    ``num_global_steps`` flow independent-MH steps.
    The buffer holds ``buffer_points_per_chain`` evenly spaced local samples per chain from
    each of the last ``buffer_loops`` loops. Training runs at least ``min_training_loops``
    and at most ``max_training_loops`` loops; with ``early_stop`` it stops once the last
    ``patience`` loops raised the best global acceptance by less than ``plateau_tol``
    while it is at least ``min_global_acceptance`` (a flow that is still useless keeps training).
    Production runs ``num_production_loops`` loops with everything frozen and keeps every
    ``thinning``-th step. ``optimizer`` defaults to ``optax.adam(learning_rate)``.
    ``symmetries``: volume-preserving involutions of the support (see the module docs).
    """

    num_local_steps: int = 50
    num_global_steps: int = 50
    max_training_loops: int = 20
    min_training_loops: int = 3
    num_production_loops: int = 10
    num_epochs: int = 10
    learning_rate: float = 1e-3
    optimizer: Any = None
    buffer_loops: int = 3
    buffer_points_per_chain: int = 32
    local: str = "mala"
    step_size: float = 0.1
    num_integration_steps: int = 8
    adapt_rate: float = 0.05
    thinning: int = 1
    early_stop: bool = True
    plateau_tol: float = 0.02
    patience: int = 2
    min_global_acceptance: float = 0.1
    symmetries: tuple[Callable, ...] = ()


_POSITIVE_INTS = (
    "num_local_steps", "num_global_steps", "max_training_loops", "num_epochs",
    "buffer_loops", "buffer_points_per_chain", "num_integration_steps", "thinning", "patience",
)
_NONNEG_INTS = ("min_training_loops", "num_production_loops")


def make_config(**options: Any) -> AdaptiveFlowConfig:
    """Validate ``options`` and return an :class:`AdaptiveFlowConfig`.

    Unknown names raise ``TypeError``; bad values raise ``ValueError`` naming the option.
    """
    names = {f.name for f in dataclasses.fields(AdaptiveFlowConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; valid options: {sorted(names)}")
    for name in _POSITIVE_INTS + _NONNEG_INTS:
        if name in options:
            v = options[name]
            lo = 1 if name in _POSITIVE_INTS else 0
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    for name in ("learning_rate", "step_size"):
        if name in options and not float(options[name]) > 0:
            raise ValueError(f"{name} must be positive, got {options[name]!r}")
    for name in ("adapt_rate", "plateau_tol", "min_global_acceptance"):
        if name in options and not float(options[name]) >= 0:
            raise ValueError(f"{name} must be >= 0, got {options[name]!r}")
    if options.get("local", "mala") not in ("mala", "hmc"):
        raise ValueError(f"local must be 'mala' or 'hmc', got {options['local']!r}")
    syms = options.get("symmetries", ())
    syms = tuple(syms) if syms is not None else ()
    for s in syms:
        if not callable(s):
            raise TypeError(f"symmetries must be callables x -> g(x), got {type(s).__name__}")
    options["symmetries"] = syms
    if options.get("optimizer") is None:
        options["optimizer"] = optax.adam(float(options.get("learning_rate", 1e-3)))
    elif not isinstance(options["optimizer"], optax.GradientTransformation):
        raise TypeError("optimizer must be an optax.GradientTransformation")
    cfg = AdaptiveFlowConfig(**options)
    if cfg.thinning > cfg.num_local_steps + cfg.num_global_steps:
        raise ValueError("thinning exceeds the number of steps per loop")
    if cfg.min_training_loops > cfg.max_training_loops:
        raise ValueError("min_training_loops exceeds max_training_loops")
    return cfg
