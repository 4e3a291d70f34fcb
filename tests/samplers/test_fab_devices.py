"""fs.samplers.fab with devices=: every AIS batch split over 4 fake CPU devices (a subprocess with
``--xla_force_host_platform_device_count=4``) gives the single-device run under jax_enable_x64; a run
interrupted on 4 devices resumes on one; a batch size that does not divide over the devices is a
ValueError naming both numbers."""

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
    kw = dict(num_iterations=2, batch_size=16, num_intermediate=1, buffer_min_batches=2, buffer_max_batches=4,
              updates_per_iteration=1, num_eval_samples=64, chunk_size=1, warn=False)

    def fields(r):
        return [r.params, r.state, r.history, r.log_Z, r.log_Z_se]

    def diff(a, b):
        return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
                   for x, y in zip(jax.tree.leaves(fields(a)), jax.tree.leaves(fields(b))))

    one = fs.samplers.fab(0, log_target, flow, **kw)
    many = fs.samplers.fab(0, log_target, flow, devices=jax.devices(), **kw)

    class Stop(Exception):
        pass

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
    print(json.dumps({"many": diff(one, many), "resumed": diff(one, resumed), "error": error,
                      "dtype": str(one.state.log_step_sizes.dtype), "lz": one.log_Z}))
    """
)


@pytest.fixture(scope="module")
def result():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fab_over_4_devices_equals_one_device_x64(result):
    """Flow parameters, optimiser state, buffer, step sizes, history and ln Z: measured max |diff| 7e-15
    (float32 4e-6): only the order of the sums over particles differs."""
    assert result["dtype"] == "float64" and np.isfinite(result["lz"]), result
    assert result["many"] < 1e-10, result


def test_fab_interrupted_on_4_devices_resumes_on_one(result):
    """The checkpoint does not record the devices: resumed on one device, the run is the uninterrupted one."""
    assert result["resumed"] < 1e-10, result


def test_fab_batch_not_divisible_over_devices(result):
    assert result["error"] is not None and "18 particles" in result["error"], result
    assert "4 devices" in result["error"] and "batch_size" in result["error"], result
