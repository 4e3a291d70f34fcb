"""Run flowMC (PyPI ``flowmc``, optional ``bench`` extra) on a flowsamp target.

Imports the installed package only; nothing of flowMC is copied here. Returns the
production chains and the wall time (compile included) of ``Sampler.sample``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

import jax
import numpy as np


@dataclass(frozen=True)
class FlowMCSchedule:
    """flowMC's RQSpline_MALA bundle knobs (its defaults for everything not listed)."""

    n_local_steps: int = 100
    n_global_steps: int = 100
    n_training_loops: int = 20
    n_production_loops: int = 20
    n_epochs: int = 50
    mala_step_size: float = 1e-1


def run_flowmc(key, log_prob, dim: int, initial_positions, schedule: FlowMCSchedule):
    """Return ``(positions (chains, steps, dim), info dict)`` for flowMC's RQSpline+MALA."""
    from flowMC.resource_strategy_bundle.RQSpline_MALA import RQSpline_MALA_Bundle
    from flowMC.Sampler import Sampler

    n_chains = int(initial_positions.shape[0])

    def logpdf(x, data):
        return log_prob(x)

    k_bundle, k_sampler = jax.random.split(key)
    t0, c0 = time.perf_counter(), time.process_time()
    bundle = RQSpline_MALA_Bundle(
        k_bundle,
        n_chains,
        dim,
        logpdf,
        schedule.n_local_steps,
        schedule.n_global_steps,
        schedule.n_training_loops,
        schedule.n_production_loops,
        schedule.n_epochs,
        mala_step_size=schedule.mala_step_size,
    )
    with tempfile.TemporaryDirectory() as outdir:
        sampler = Sampler(
            n_dim=dim,
            n_chains=n_chains,
            rng_key=k_sampler,
            resource_strategy_bundles=bundle,
            outdir=outdir,
            checkpoint_interval=0,
        )
        sampler.sample(jax.numpy.asarray(initial_positions), {})
        positions = np.asarray(sampler.resources["positions_production"].data)
        local_acc = np.asarray(sampler.resources["local_accs_production"].data)
        global_acc = np.asarray(sampler.resources["global_accs_production"].data)
    wall = time.perf_counter() - t0
    n_loc, n_glob = schedule.n_local_steps, schedule.n_global_steps
    per_loop = n_loc + n_glob
    loc_idx = np.concatenate([np.arange(i * per_loop, i * per_loop + n_loc) for i in range(schedule.n_production_loops)])
    glob_idx = np.setdiff1d(np.arange(positions.shape[1]), loc_idx)
    info = {
        "wall_s": wall,
        "cpu_s": time.process_time() - c0,
        "local_acceptance": float(np.nanmean(local_acc[:, loc_idx])),
        "global_acceptance": float(np.nanmean(global_acc[:, glob_idx])),
    }
    return positions, info
