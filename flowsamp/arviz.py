"""Convert flowsamp traces to :class:`arviz.InferenceData`.

For runs through ``numpyro.infer.MCMC(fs.numpyro.Kernel(...))`` use ``arviz.from_numpyro``
directly; :func:`to_arviz` is for plain flowsamp traces (``fs.sample``, flow samplers).
ArviZ is imported lazily (it is an optional dependency).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["to_arviz"]


def _positions(trace: Any) -> Any:
    positions = getattr(trace, "positions", trace)
    if positions is None:
        raise ValueError("the trace holds no positions (was it run with keep='summary'?)")
    return positions


def to_arviz(trace: Any, target: Any = None, *, var_name: str = "x", log_prob: bool = True) -> Any:
    """Return an ``arviz.InferenceData`` with a posterior and sample statistics.

    Parameters
    ----------
    trace
        A :class:`flowsamp.samplers.Trace` (or anything with ``positions`` of shape
        ``(chains, draws, dim)`` and optionally ``info``), or that positions array itself.
    target
        The target that was sampled. When it has ``postprocess`` (e.g.
        :func:`flowsamp.numpyro.target`) the posterior holds the constrained model sites,
        deterministic sites included; otherwise one variable ``var_name`` of shape
        ``(chains, draws, dim)``. Its ``log_prob`` gives the ``lp`` statistic.
    var_name
        Posterior variable name for targets without ``postprocess``.
    log_prob
        Evaluate ``lp`` :math:`= \\log \\pi(x)` at every kept draw (one density evaluation each).

    Returns
    -------
    arviz.InferenceData
        ``posterior`` (chain, draw, ...) and ``sample_stats`` with ``acceptance_rate``
        (:math:`\\min(1, r)` of the step that produced the draw), ``is_accepted`` and ``lp``
        where available.
    """
    import arviz

    positions = jnp.asarray(_positions(trace))
    if positions.ndim != 3:
        raise ValueError(f"positions must have shape (chains, draws, dim), got {positions.shape}")
    postprocess = getattr(target, "postprocess", None)
    if postprocess is not None:
        posterior = jax.device_get(jax.jit(postprocess)(positions))
    else:
        posterior = {var_name: np.asarray(positions)}
    stats = {}
    info = getattr(trace, "info", None)
    for field in ("acceptance_rate", "is_accepted"):
        value = getattr(info, field, None) if info is not None else None
        if value is not None and np.shape(value) == positions.shape[:2]:
            stats[field] = np.asarray(value)
    if log_prob and target is not None and hasattr(target, "log_prob"):
        flat = positions.reshape((-1, positions.shape[-1]))
        lp = jax.jit(jax.vmap(target.log_prob))(flat)
        stats["lp"] = np.asarray(lp).reshape(positions.shape[:2])
    return arviz.from_dict(posterior=posterior, sample_stats=stats or None)
