"""fs.samplers.fab and fs.samplers.craft with devices=: every AIS batch (fab) and the particles of every
annealing run (craft) split over 4 fake CPU devices (one subprocess with
``--xla_force_host_platform_device_count=4``) give the single-device run under jax_enable_x64; a run
interrupted on 4 devices resumes on one; a batch or particle count that does not divide over the devices
is a ValueError naming both numbers."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, tempfile, os
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    import flowsamp as fs
    assert len(jax.devices()) == 4

    def log_target(x):
        return -0.5 * jnp.sum(((x - jnp.array([2.0, -1.0])) / 0.5) ** 2)

    flow = fs.flows.realnvp(2, num_layers=1, hidden=(4,))

    def diff(fields, a, b):
        return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
                   for x, y in zip(jax.tree.leaves(fields(a)), jax.tree.leaves(fields(b))))

    class Stop(Exception):
        pass

    out = {}
    kw = dict(num_iterations=2, batch_size=16, num_intermediate=1, buffer_min_batches=2, buffer_max_batches=4,
              updates_per_iteration=1, num_eval_samples=64, chunk_size=1, warn=False)

    def fields(r):  # fab
        return [r.params, r.state, r.history, r.log_Z, r.log_Z_se]

    one = fs.samplers.fab(0, log_target, flow, **kw)
    many = fs.samplers.fab(0, log_target, flow, devices=jax.devices(), **kw)

    def stop(done, state, rec):
        if done == 1:
            raise Stop

    path = os.path.join(tempfile.mkdtemp(), "fab.ckpt")
    try:  # interrupted on 4 devices after iteration 1 (checkpointed), resumed on one
        fs.samplers.fab(0, log_target, flow, devices=jax.devices(), checkpoint_path=path, checkpoint_every=1,
                        callback=stop, **kw)
    except Stop:
        pass
    resumed = fs.samplers.fab(0, log_target, flow, checkpoint_path=path, checkpoint_every=1, resume=True, **kw)
    try:
        fs.samplers.fab(0, log_target, flow, **dict(kw, batch_size=18), devices=jax.devices())
        error = None
    except ValueError as e:
        error = str(e)
    out["fab"] = {"many": diff(fields, one, many), "resumed": diff(fields, one, resumed), "error": error,
                  "dtype": str(one.state.log_step_sizes.dtype), "lz": one.log_Z}

    base = fs.targets.gaussian(jnp.zeros(2), 9.0 * jnp.eye(2))
    kw = dict(num_temps=2, num_iterations=2, num_eval_runs=2, num_mcmc_steps=2, warn=False)

    def fields(r):  # craft
        return [r.particles, r.log_weights, r.eval_log_Z, r.train_log_Z, r.params, r.opt_state, r.log_step_size,
                r.ess, r.acceptance, r.loss, r.pimh_particles]

    one = fs.samplers.craft(0, log_target, base, flow, 64, **kw)
    many = fs.samplers.craft(0, log_target, base, flow, 64, devices=jax.devices(), **kw)

    def stop(it, rec):
        if it == 0:
            raise Stop

    path = os.path.join(tempfile.mkdtemp(), "craft.ckpt")
    try:  # interrupted on 4 devices after training run 0 (checkpointed), resumed on one
        fs.samplers.craft(0, log_target, base, flow, 64, devices=jax.devices(), checkpoint_path=path,
                          checkpoint_every=1, callback=stop, **kw)
    except Stop:
        pass
    resumed = fs.samplers.craft(0, log_target, base, flow, 64, checkpoint_path=path, checkpoint_every=1,
                                resume=True, **kw)
    try:
        fs.samplers.craft(0, log_target, base, flow, 66, devices=jax.devices(), **kw)
        error = None
    except ValueError as e:
        error = str(e)
    out["craft"] = {"many": diff(fields, one, many), "resumed": diff(fields, one, resumed), "error": error,
                    "dtype": str(one.particles.dtype), "lz": one.log_Z, "min_ess": float(np.min(one.ess))}
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def result():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fab(result):
    return result["fab"]


@pytest.fixture(scope="module")
def craft(result):
    return result["craft"]


def test_fab_over_4_devices_equals_one_device_x64(fab):
    """Flow parameters, optimiser state, buffer, step sizes, history and ln Z: measured max |diff| 7e-15
    (float32 4e-6): only the order of the sums over particles differs."""
    assert fab["dtype"] == "float64" and np.isfinite(fab["lz"]), fab
    assert fab["many"] < 1e-10, fab


def test_fab_interrupted_on_4_devices_resumes_on_one(fab):
    """The checkpoint does not record the devices: resumed on one device, the run is the uninterrupted one."""
    assert fab["resumed"] < 1e-10, fab


def test_fab_batch_not_divisible_over_devices(fab):
    assert fab["error"] is not None and "18 particles" in fab["error"], fab
    assert "4 devices" in fab["error"] and "batch_size" in fab["error"], fab


def test_craft_over_4_devices_equals_one_device_x64(craft):
    """Particles, weights, ln Z of every run, flows, optimiser states, step sizes, ESS, acceptance, loss,
    particle-IMH states: measured max |diff| 7e-15 (only the order of the sums over particles differs; float32
    3e-6). 64 particles, so that the population does not collapse onto copies of one particle (ESS = 1/N) and
    the comparison covers the ordinary path (the collapsed case is population_inverse_mass's test in test_smc)."""
    assert craft["dtype"] == "float64" and np.isfinite(craft["lz"]), craft
    assert craft["min_ess"] > 2 / 64, craft  # no collapse (measured 0.10)
    assert craft["many"] < 1e-10, craft


def test_craft_interrupted_on_4_devices_resumes_on_one(craft):
    """The checkpoint does not record the devices: resumed on one device, the run is the uninterrupted one."""
    assert craft["resumed"] < 1e-10, craft


def test_craft_particles_not_divisible_over_devices(craft):
    assert craft["error"] is not None and "66 particles" in craft["error"], craft
    assert "4 devices" in craft["error"], craft
