"""``verdict(mcmc)``: the flowsamp convergence verdict of a finished :class:`numpyro.infer.MCMC`.

(The module is not called ``verdict``, so that the function ``fs.numpyro.verdict`` never shadows
its module.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowsamp.estimators.verdict import Thresholds, Verdict, mcmc_verdict, warn_if_not_converged

__all__ = ["verdict"]


def _extra(mcmc: Any, name: str) -> np.ndarray | None:
    try:
        fields = mcmc.get_extra_fields(group_by_chain=True)
    except (AttributeError, KeyError):  # no run yet / a kernel without extra fields
        return None
    value = fields.get(name) if isinstance(fields, dict) else None
    return None if value is None else np.asarray(value)


def verdict(mcmc: Any, thresholds: Thresholds | None = None, *, warn: bool = True) -> Verdict:
    r"""Convergence verdict of a finished numpyro ``MCMC`` run, with a warning when it fails.

    The draws of every sample site (``mcmc.get_samples(group_by_chain=True)``, constrained
    space, each site's event flattened and concatenated) go to
    :func:`flowsamp.estimators.mcmc_verdict`: rank-normalised split :math:`\hat R`, bulk and
    tail ESS per coordinate (rank-based, so invariant to numpyro's per-coordinate monotone
    transforms). numpyro's ``diverging`` extra field (recorded by ``NUTS`` / ``HMC`` by
    default) gives the divergence count, ``accept_prob`` (when requested with
    ``extra_fields``) the mean acceptance.

    Parameters
    ----------
    mcmc
        A :class:`numpyro.infer.MCMC` after ``run``.
    thresholds
        :class:`flowsamp.estimators.Thresholds` (Stan / ArviZ practice by default).
    warn
        Issue a :class:`flowsamp.NotConvergedWarning` with the problems when not converged.

    Returns
    -------
    :class:`flowsamp.estimators.Verdict`; ``diagnostics["sites"]`` lists ``(site, first
    coordinate, size)`` of the flattened draws.
    """
    try:
        samples = mcmc.get_samples(group_by_chain=True)
    except AttributeError as err:
        raise TypeError(f"verdict: expected a numpyro MCMC after run(), got {type(mcmc).__name__}") from err
    if not isinstance(samples, dict) or not samples:
        raise ValueError("verdict: the MCMC object holds no samples (call mcmc.run first)")
    blocks, sites, start = [], [], 0
    for name in sorted(samples):
        x = np.asarray(samples[name], dtype=float)
        if x.ndim < 2:
            raise ValueError(f"verdict: site {name!r} has shape {x.shape}, expected (chains, draws, ...)")
        x = x.reshape(x.shape[0], x.shape[1], -1)
        blocks.append(x)
        sites.append((name, start, x.shape[-1]))
        start += x.shape[-1]
    draws = np.concatenate(blocks, axis=-1)
    diverging = _extra(mcmc, "diverging")
    accept = _extra(mcmc, "accept_prob")
    v = mcmc_verdict(
        draws,
        num_divergent=None if diverging is None else int(np.sum(diverging)),
        acceptance=None if accept is None else float(np.mean(accept)),
        thresholds=thresholds,
    )
    v = Verdict({**v.diagnostics, "sites": sites}, v.converged, v.problems)
    if warn:
        warn_if_not_converged(v, "numpyro MCMC")
    return v
