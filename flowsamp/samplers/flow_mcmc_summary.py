"""Summaries of an adaptive flow MCMC run.

:func:`summarize` turns an :class:`~flowsamp.samplers.adaptive_flow_mcmc.AdaptiveFlowOutput`
into the numbers a user reads: mode weights with standard errors next to the exact ones,
minimum ESS, maximum R-hat, acceptance rates, wall time. (The embedded default job that
``flowsamp run`` runs lives in :mod:`flowsamp.cli`.)
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from flowsamp.estimators.diagnostics import mcmc_ess, rhat
from flowsamp.estimators.modes import mode_weights

__all__ = ["summarize"]


def summarize(out: Any, target: Any) -> dict:
    """Return a dict of the run's results.

    ``mode_weights`` / ``mode_weights_se``: per-chain label frequencies of the production
    samples (``target.mode_of``) averaged over chains, SE = between-chain standard error
    (independent chains, so autocorrelation inside chains is accounted for);
    ``exact_mode_weights`` (``target.mode_weights`` or None); ``max_abs_error`` and
    ``max_z`` (largest ``|w - w_exact| / SE``); ``min_ess`` (numpyro bulk ESS, minimum
    over coordinates); ``max_rhat`` (split R-hat); acceptance rates; ``wall_s``.
    """
    pos = np.asarray(out.positions)
    res: dict = {
        "num_chains": int(pos.shape[0]),
        "num_samples": int(pos.shape[0] * pos.shape[1]),
        "min_ess": float(np.min(mcmc_ess(pos))),
        "max_rhat": float(np.max(rhat(pos))),
        "local_acceptance": float(out.local_acceptance),
        "global_acceptance": float(out.global_acceptance),
        "training_loops": int(out.num_training_loops),
        "wall_s": float(out.wall_s),
    }
    exact = getattr(target, "mode_weights", None)
    if exact is not None and hasattr(target, "mode_of"):
        exact = np.asarray(exact, dtype=np.float64)
        w, se = mode_weights(target.mode_of(jnp.asarray(pos)), len(exact))
        w, se = np.asarray(w, np.float64), np.asarray(se, np.float64)
        err = np.abs(w - exact)
        res.update(
            mode_weights=w.tolist(),
            mode_weights_se=se.tolist(),
            exact_mode_weights=exact.tolist(),
            max_abs_error=float(err.max()),
            max_z=float(np.max(err / np.maximum(se, 1e-12))),
        )
    return res
