"""fs.samplers.smc / ais with devices=: the islands sharded over 4 fake CPU devices (a
subprocess with ``--xla_force_host_platform_device_count=4``) equal the single-device run under
jax_enable_x64, and an island count that does not divide over the devices is a ValueError."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import flowsamp as fs

SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import flowsamp as fs
    assert len(jax.devices()) == 4
    t = fs.targets.gaussian(np.array([1.0, -1.0, 0.5]), np.diag([0.5, 2.0, 1.0]))
    base = fs.targets.gaussian(np.zeros(3), 9.0 * np.eye(3))
    res = {}
    for name, fn in [("smc", fs.samplers.smc), ("ais", fs.samplers.ais)]:
        kw = dict(num_islands=8, warn=False, max_steps=60)
        one = fn(0, t.log_prob, base, 128, **kw)
        many = fn(0, t.log_prob, base, 128, devices=jax.devices(), **kw)
        res[name] = {
            "steps": [one.num_steps.tolist(), many.num_steps.tolist()],
            "lz": [one.island_log_Z.tolist(), many.island_log_Z.tolist()],
            "se": [one.log_Z_se, many.log_Z_se],
            "x": float(np.max(np.abs(np.asarray(one.particles) - np.asarray(many.particles)))),
            "dtype": str(one.particles.dtype),
        }
    try:
        fs.samplers.smc(0, t.log_prob, base, 120, num_islands=6, devices=jax.devices(), warn=False)
        res["error"] = None
    except ValueError as e:
        res["error"] = str(e)
    print(json.dumps(res))
    """
)


def test_islands_over_4_devices_equal_one_device_x64():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ("smc", "ais"):
        r = res[name]
        assert r["dtype"] == "float64", r
        assert r["steps"][0] == r["steps"][1], r
        np.testing.assert_allclose(r["lz"][1], r["lz"][0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(r["se"][1], r["se"][0], rtol=1e-9)
        assert r["x"] < 1e-9, r
    assert res["error"] is not None and "6 islands" in res["error"] and "multiple of 4" in res["error"], res


def test_devices_bad_input():
    """One device divides any island count; an empty or non-device list is refused."""
    t = fs.targets.gaussian(np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="empty"):
        fs.samplers.smc(0, t.log_prob, t, 16, num_islands=2, devices=[], warn=False)
    with pytest.raises(TypeError, match="jax.Device"):
        fs.samplers.smc(0, t.log_prob, t, 16, num_islands=2, devices=["cpu:0"], warn=False)
