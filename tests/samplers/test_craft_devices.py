"""fs.samplers.craft with devices=: the particles of every annealing run split over 4 fake CPU devices
(a subprocess with ``--xla_force_host_platform_device_count=4``) give the single-device run under
jax_enable_x64; a run interrupted on 4 devices resumes on one; a particle count that does not divide
over the devices is a ValueError naming both numbers."""

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
    base = fs.targets.gaussian(jnp.zeros(2), 9.0 * jnp.eye(2))
    kw = dict(num_temps=2, num_iterations=2, num_eval_runs=2, num_mcmc_steps=2, warn=False)

    def fields(r):
        return [r.particles, r.log_weights, r.eval_log_Z, r.train_log_Z, r.params, r.opt_state, r.log_step_size,
                r.ess, r.acceptance, r.loss, r.pimh_particles]

    def diff(a, b):
        return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
                   for x, y in zip(jax.tree.leaves(fields(a)), jax.tree.leaves(fields(b))))

    one = fs.samplers.craft(0, log_target, base, flow, 64, **kw)
    many = fs.samplers.craft(0, log_target, base, flow, 64, devices=jax.devices(), **kw)

    class Stop(Exception):
        pass

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
    print(json.dumps({"many": diff(one, many), "resumed": diff(one, resumed), "error": error,
                      "dtype": str(one.particles.dtype), "lz": one.log_Z, "min_ess": float(np.min(one.ess))}))
    """
)


@pytest.fixture(scope="module")
def result():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_craft_over_4_devices_equals_one_device_x64(result):
    """Particles, weights, ln Z of every run, flows, optimiser states, step sizes, ESS, acceptance, loss,
    particle-IMH states: measured max |diff| 7e-15 (only the order of the sums over particles differs; float32
    3e-6). 64 particles: with 16 the population collapsed onto copies of one particle (ESS = 1/N), whose
    variance is 0 or of rounding size by the order of the sum, so the move preconditioner differed."""
    assert result["dtype"] == "float64" and np.isfinite(result["lz"]), result
    assert result["min_ess"] > 2 / 64, result  # no collapse (measured 0.10)
    assert result["many"] < 1e-10, result


def test_craft_interrupted_on_4_devices_resumes_on_one(result):
    """The checkpoint does not record the devices: resumed on one device, the run is the uninterrupted one."""
    assert result["resumed"] < 1e-10, result


def test_craft_particles_not_divisible_over_devices(result):
    assert result["error"] is not None and "66 particles" in result["error"], result
    assert "4 devices" in result["error"], result
