"""Options of :func:`flowsamp.samplers.adaptive_flow_mcmc` as a validated frozen dataclass."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import optax

from flowsamp.estimators.verdict import Thresholds
from flowsamp.flows.preconditioning import Affine

__all__ = ["AdaptiveFlowConfig", "make_config"]


@dataclasses.dataclass(frozen=True, eq=False)
class AdaptiveFlowConfig:
    r"""Schedule and algorithm options of the adaptive global-local flow sampler.

    Per loop: ``num_local_steps`` local steps (``local = "mala"`` or ``"hmc"`` with
    ``num_integration_steps`` leapfrog steps; initial ``step_size`` (default ``None``: from
    the smallest scale of the fitted affine map,
    :func:`~flowsamp.samplers._flow_mcmc_explore.default_step_size`, or 0.1 without one), adapted in training
    after every step by :func:`flowsamp.kernels.adaptation.robbins_monro` at ``rate =
    adapt_rate`` on the fraction of chains that accepted, target ``TARGET_ACCEPTANCE[local]``;
    ``adapt_rate = 0`` freezes it), then (training only) ``num_epochs``
    optimizer steps (:func:`flowsamp.train.fit_steps`) of forward KL on minibatches of
    ``batch_size`` rows of the buffer (drawn with replacement; ``None``: the whole buffer), then
    ``num_global_steps`` flow independent-MH steps.
    The buffer holds ``buffer_points_per_chain`` evenly spaced local samples per chain from
    each of the last ``buffer_loops`` loops. Training runs at least ``min_training_loops``
    and at most ``max_training_loops`` loops; with ``early_stop`` it stops once the last
    ``patience`` loops raised the best global acceptance by less than ``plateau_tol``
    while it is at least ``min_global_acceptance`` (a flow that is still useless keeps training).
    Production runs ``num_production_loops`` loops with everything frozen and keeps every
    ``thinning``-th step. ``optimizer`` defaults to ``optax.flatten(optax.adam(learning_rate))``:
    Adam, elementwise, on the parameters raveled into one vector (the same updates as on the
    tree, in one op per step instead of several per leaf: the training program compiles in a
    few seconds less).
    ``symmetries``: volume-preserving involutions of the support (see the module docs).

    Stopping when the result is there (:mod:`flowsamp.samplers._flow_mcmc_stopping`):
    with ``early_stop``, training stops only when the global acceptance has plateaued *and*
    the chains mix over the last ``patience`` loops' draws: between-chain rank
    :math:`\hat R` of :math:`\log p` (and of the indicators of ``mode_of(x)`` when
    ``mode_of`` is given, ``num_modes`` modes if known) at most 1.05 (``TRAINING_RHAT``), and no
    one-sided drift of :math:`\log p`. Production runs at least ``num_production_loops``
    loops, then until the smallest bulk ESS over coordinates reaches ``target_ess`` and the
    largest rank :math:`\hat R` (coordinates, and mode indicators with ``mode_of``) is at most
    ``thresholds.rhat``
    (``None``: exactly ``num_production_loops`` loops) or ``max_steps`` production steps per
    chain (local + global) are spent; a spent budget is reported in ``problems``.

    Exploring before exploiting (:mod:`flowsamp.samplers._flow_mcmc_explore`): with
    ``explore`` (default), tempered SMC from the over-dispersed Gaussian
    :math:`\mathcal N(\bar x_0, s^2)`, ``s = explore_scale`` (default
    :math:`5\max(1, \mathrm{sd}(x_0))` per coordinate), with ``explore_particles``
    particles (default ``None``: :func:`~flowsamp.samplers._flow_mcmc_explore.default_num_particles`,
    from 2048 up to 16384 as :math:`d(d+1)/(2 \cdot 0.25)` so that the full-covariance affine
    fit is within ~0.2 nat of KL; or your own ``(N, d)`` array of approximate posterior draws, SMC skipped),
    fits the affine preconditioner (``precondition=True``; an
    :class:`~flowsamp.flows.Affine` is used as given; ``False``: none; default ``None``: fitted
    unless you pass ``params``, since given parameters already place the flow in the target's
    own coordinates, e.g. an informed base or a shift set to the chains' mean, and an affine map
    fitted on top would move it away from the target) and trains the flow
    by forward KL for at most ``explore_fit_steps`` steps (the loop's own training program,
    ``num_epochs`` steps per call on the buffer filled with particles), early-stopped on held-out
    particles, from which the chains then start. ``thresholds``: the
    :class:`~flowsamp.estimators.Thresholds` of the verdict (default ``Thresholds()``).
    """

    num_local_steps: int = 50
    num_global_steps: int = 50
    max_training_loops: int = 20
    min_training_loops: int = 3
    num_production_loops: int = 10
    num_epochs: int = 10
    batch_size: int | None = 1024
    learning_rate: float = 1e-3
    optimizer: Any = None
    buffer_loops: int = 3
    buffer_points_per_chain: int = 32
    local: str = "mala"
    step_size: float | None = None
    num_integration_steps: int = 8
    adapt_rate: float = 0.05
    thinning: int = 1
    early_stop: bool = True
    plateau_tol: float = 0.02
    patience: int = 2
    min_global_acceptance: float = 0.1
    symmetries: tuple[Callable, ...] = ()
    target_ess: float | None = 1000.0
    max_steps: int = 10_000
    mode_of: Callable | None = None
    num_modes: int | None = None
    explore: bool = True
    explore_scale: Any = None
    explore_particles: Any = None
    explore_fit_steps: int = 500
    precondition: Any = None
    thresholds: Any = None


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
    bs = options.get("batch_size")
    if bs is not None and (isinstance(bs, bool) or not isinstance(bs, int) or bs < 1):
        raise ValueError(f"batch_size must be an int >= 1 or None, got {bs!r}")
    for name in ("learning_rate", "step_size"):
        if options.get(name) is not None and not float(options[name]) > 0:
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
        options["optimizer"] = optax.flatten(optax.adam(float(options.get("learning_rate", 1e-3))))
    elif not isinstance(options["optimizer"], optax.GradientTransformation):
        raise TypeError("optimizer must be an optax.GradientTransformation")
    cfg = AdaptiveFlowConfig(**options)
    if cfg.thinning > cfg.num_local_steps + cfg.num_global_steps:
        raise ValueError("thinning exceeds the number of steps per loop")
    if cfg.target_ess is not None and not float(cfg.target_ess) > 0:
        raise ValueError(f"target_ess must be positive or None, got {cfg.target_ess!r}")
    if isinstance(cfg.max_steps, bool) or not isinstance(cfg.max_steps, int) or cfg.max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1, got {cfg.max_steps!r}")
    if cfg.mode_of is not None and not callable(cfg.mode_of):
        raise TypeError(f"mode_of must be a callable x -> int labels, got {type(cfg.mode_of).__name__}")
    if cfg.num_modes is not None and (isinstance(cfg.num_modes, bool) or not isinstance(cfg.num_modes, int) or cfg.num_modes < 1):
        raise ValueError(f"num_modes must be an int >= 1 or None, got {cfg.num_modes!r}")
    if not isinstance(cfg.explore, bool):
        raise TypeError(f"explore must be a bool, got {cfg.explore!r}")
    if isinstance(cfg.explore_fit_steps, bool) or not isinstance(cfg.explore_fit_steps, int) or cfg.explore_fit_steps < 0:
        raise ValueError(f"explore_fit_steps must be an int >= 0, got {cfg.explore_fit_steps!r}")
    ep = cfg.explore_particles
    if isinstance(ep, bool) or (isinstance(ep, int) and ep < 4):
        raise ValueError(f"explore_particles must be an int >= 4 or an (N, dim) array, got {ep!r}")
    if cfg.precondition is not None and not isinstance(cfg.precondition, (bool, Affine)):
        raise TypeError(f"precondition must be None, a bool or an Affine, got {type(cfg.precondition).__name__}")
    if cfg.thresholds is not None and not isinstance(cfg.thresholds, Thresholds):
        raise TypeError(f"thresholds must be a flowsamp.estimators.Thresholds, got {type(cfg.thresholds).__name__}")
    if cfg.min_training_loops > cfg.max_training_loops:
        raise ValueError("min_training_loops exceeds max_training_loops")
    return cfg
