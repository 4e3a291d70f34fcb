"""Summaries of an adaptive flow MCMC run, and the embedded default job the CLI runs.

:func:`summarize` turns an :class:`~flowsamp.samplers.adaptive_flow_mcmc.AdaptiveFlowOutput`
into the numbers a user reads: mode weights with standard errors next to the exact ones,
minimum ESS, maximum R-hat, acceptance rates, wall time. :func:`run_default` runs the
default job: the 2-D four-mode mixture (weights 0.1/0.2/0.3/0.4) with every chain started
in one mode.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.estimators.diagnostics import mcmc_ess, rhat
from flowsamp.estimators.modes import mode_weights
from flowsamp.types import PRNGKey

__all__ = ["DEFAULT_SCHEDULE", "run_default", "summarize"]

#: Schedule of the default job (2-D four-mode mixture, 100 chains).
DEFAULT_SCHEDULE = dict(
    num_local_steps=20,
    num_global_steps=50,
    max_training_loops=20,
    min_training_loops=4,
    num_production_loops=100,
    num_epochs=10,
    buffer_points_per_chain=20,
)


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


def _flip(i: int):
    return lambda x: x.at[..., i].multiply(-1.0)


def _flip01(x):
    return x.at[..., :2].multiply(-1.0)


def run_default(key: PRNGKey, num_chains: int = 100, progress: bool = True, **overrides: Any):
    """Run the default job; return ``(out, target, summary)``.

    Target ``fs.targets.four_mode_mixture(2)``; flow ``rq_spline(2, 4 layers, 32x32, 8 bins)``;
    all chains start near (5, 5) (the weight-0.4 mode); the global proposal is the flow
    symmetrised over the sign flips of the two coordinates, so chains find the other modes.
    """
    from flowsamp.flows.rq_spline import rq_spline
    from flowsamp.samplers.adaptive_flow_mcmc import adaptive_flow_mcmc
    from flowsamp.targets.gaussian_mixture import four_mode_mixture

    target = four_mode_mixture(2)
    k0, k1 = jax.random.split(jax.random.key(key) if isinstance(key, int) else key)
    x0 = jnp.full((num_chains, 2), 5.0) + 0.1 * jax.random.normal(k0, (num_chains, 2))
    flow = rq_spline(2, num_layers=4, hidden=(32, 32), num_bins=8)
    opts = {**DEFAULT_SCHEDULE, "symmetries": (_flip(0), _flip(1), _flip01), **overrides}
    out = adaptive_flow_mcmc(k1, target.log_prob, flow, x0, progress=progress, **opts)
    return out, target, summarize(out, target)
