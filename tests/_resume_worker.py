"""Subprocess worker of the kill-and-resume tests (``tests/test_resume.py``).

``python tests/_resume_worker.py MODE CHECKPOINT OUT.npz [--resume]``

* without ``--resume``: run sampler MODE with checkpoints to CHECKPOINT; with the
  environment variable ``FLOWSAMP_RESUME_DELAY_S`` set, every checkpoint save is followed by
  a sleep of that many seconds, so the test can SIGKILL the process mid-run, right after
  the first checkpoint file appears;
* with ``--resume``: resume MODE from CHECKPOINT, then run MODE again without any
  checkpoint (the uninterrupted reference, same key) and write both results' leaves and the
  checkpoint's meta at resume time to OUT.npz.

Adding a sampler is one more entry in :data:`MODES`: a function
``(checkpoint_path | None, resume: bool) -> pytree of arrays`` (the final state to compare
bit for bit) that runs a small, fast instance of the sampler with ``checkpoint_every``
small enough to write several checkpoints.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import flowsamp as fs
from flowsamp import io as fio


def _ck(path, resume, every):
    """Checkpoint options: none for the reference run (checkpoint_every needs a path)."""
    return dict(checkpoint_path=path, checkpoint_every=every, resume=resume) if path else {}


def _sample(path, resume):
    """fs.sample, MALA on a 3-D Gaussian, thinning and target_ess blocks."""
    kernel = fs.kernels.mala(lambda x: -0.5 * jnp.sum((x / jnp.arange(1.0, 4.0)) ** 2), 0.4)
    x0 = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)
    tr = fs.sample(jax.random.key(3), kernel, x0, 200, thin=2, target_ess=400, max_steps=800, warn=False,
                   **_ck(path, resume, 40))
    return {"positions": tr.positions, "info": tr.info, "final_state": tr.final_state,
            "acceptance_rate": tr.acceptance_rate, "mean": tr.mean, "variance": tr.variance,
            "num_steps": np.asarray(tr.num_steps)}


def _wang_landau(path, resume):
    """Wang-Landau 1/t on the 4x4 Ising model."""
    res = fs.samplers.wang_landau(jax.random.key(5), fs.targets.ising(4, 0.4), num_walkers=4, check_every=20,
                                  max_sweeps=400, **_ck(path, resume, 40))
    return {"state": res.state, "log_g": res.log_g, "errors": res.errors, "log_f": res.log_f,
            "times": res.times, "histogram": res.histogram}


def _multicanonical(path, resume):
    """Multicanonical weight iterations and production on the 4x4 Ising model."""
    res = fs.samplers.multicanonical(jax.random.key(6), fs.targets.ising(4, 0.4), num_walkers=4, num_iterations=3,
                                     sweeps_per_iteration=60, num_production_sweeps=120, chunk=20,
                                     **_ck(path, resume, 40))
    return {"log_g": res.log_g, "histogram": res.walker_histograms, "weights": res.weights_log_g,
            "flatness": res.flatness}


def _adaptive_flow(path, resume, every=1):
    """adaptive_flow_mcmc on a 2-D Gaussian, 3 training + 3 production loops, after an exploration
    on given particles (affine fit and warm start; the SMC run is skipped to save compilations)."""
    flow = fs.flows.rq_spline(2, num_layers=1, hidden=(8,), num_bins=4)
    x0 = jnp.linspace(-1.0, 1.0, 32).reshape(16, 2)
    particles = np.random.default_rng(0).normal(size=(256, 2)).astype(np.float32)
    out = fs.samplers.adaptive_flow_mcmc(
        jax.random.key(7), lambda x: -0.5 * jnp.sum(x ** 2), flow, x0, num_local_steps=8, num_global_steps=8,
        max_training_loops=3, early_stop=False, num_production_loops=3, target_ess=None, explore_particles=particles,
        explore_fit_steps=20, num_epochs=2, batch_size=64, **_ck(path, resume, every))
    return {"positions": out.positions, "log_prob": out.log_prob, "state": out.state, "params": out.params,
            "history": {k: v for k, v in out.history.items() if k != "wall_s"}}


def _parallel_tempering(path, resume):
    """parallel_tempering on a 2-D Gaussian, 5 rungs: killed in warm-up (saves after rounds and every 10 scans)."""
    x0 = np.random.default_rng(0).normal(size=(4, 2)) * 2.0
    res = fs.samplers.parallel_tempering(jax.random.key(8), lambda x: -jnp.sum((x - 1.0) ** 2), x0, num_steps=40,
                                         num_warmup=30, num_temperatures=5, warn=False, **_ck(path, resume, 10))
    return {k: v for k, v in res._asdict().items() if k not in ("wall_s", "diagnostics", "problems")}


def _fab(path, resume):
    """fab on a 2-D Gaussian, tiny buffer, 6 iterations in chunks of 2 (a checkpoint after each)."""
    flow = fs.flows.realnvp(2, num_layers=2, hidden=(8,))
    res = fs.samplers.fab(jax.random.key(9), lambda x: -0.5 * jnp.sum((x - 1.0) ** 2), flow, num_iterations=6,
                          batch_size=32, buffer_min_batches=4, buffer_max_batches=8, updates_per_iteration=2,
                          chunk_size=2, num_eval_samples=256, num_intermediate=2, num_leapfrog=2, warn=False,
                          **_ck(path, resume, 2))
    return {"params": res.params, "state": res.state, "history": res.history, "log_Z": np.asarray(res.log_Z),
            "log_Z_se": np.asarray(res.log_Z_se)}


def _craft(path, resume):
    """craft on a 2-D Gaussian from a wide Gaussian base, 3 steps, 6 training runs (a checkpoint every 2)."""
    base = fs.targets.gaussian(jnp.zeros(2), 9.0 * jnp.eye(2))
    res = fs.samplers.craft(jax.random.key(10), lambda x: -0.5 * jnp.sum(((x - 2.0) / 0.5) ** 2), base,
                            fs.flows.realnvp(2, num_layers=1, hidden=(8,)), 64, num_temps=3, num_iterations=6,
                            num_eval_runs=3, num_mcmc_steps=2, warn=False, **_ck(path, resume, 2))
    return {k: v for k, v in res._asdict().items() if k not in ("wall_s", "diagnostics", "problems")}


MODES = {"sample": _sample, "wang_landau": _wang_landau, "multicanonical": _multicanonical,
         "adaptive_flow_mcmc": _adaptive_flow,  # killed after the first training loop
         "adaptive_flow_mcmc_production": lambda path, resume: _adaptive_flow(path, resume, every=4),
         "parallel_tempering": _parallel_tempering, "fab": _fab, "craft": _craft}


def _leaves(tree) -> dict[str, np.ndarray]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(p): np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(
        getattr(x, "dtype", np.float32), jax.dtypes.prng_key) else x) for p, x in flat}


def main(argv: list[str]) -> int:
    mode, path, out = argv[:3]
    resume = "--resume" in argv[3:]
    fn = MODES[mode]
    warnings.simplefilter("ignore")
    delay = float(os.environ.get("FLOWSAMP_RESUME_DELAY_S", "0"))
    if delay and not resume:
        save = fio.save

        def slow_save(*args, **kwargs):
            save(*args, **kwargs)
            time.sleep(delay)

        fio.save = slow_save
    if not resume:
        fn(path, False)
        return 0
    meta = fio.read_meta(path) if os.path.exists(path) else {}
    resumed = _leaves(fn(path, True))
    plain = _leaves(fn(None, False))
    np.savez(out, **{f"resumed{k}": v for k, v in resumed.items()}, **{f"plain{k}": v for k, v in plain.items()},
             meta=np.asarray(repr(meta)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
