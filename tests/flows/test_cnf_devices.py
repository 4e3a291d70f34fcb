"""CNF / diffusion / torus CNF with ``devices=``: points sharded over 4 fake CPU devices give the
single-device samples and log q (to rounding: XLA vectorises blocks of different sizes
differently). Runs in a subprocess because the device-count flag must precede JAX's start."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    import flowsamp as fs
    from tests.flows.conftest import perturb

    jax.config.update("jax_enable_x64", True)
    devs = jax.devices()
    assert len(devs) == 4, devs
    out = {}
    makers = {
        "cnf": lambda d: fs.flows.cnf(2, hidden=(8,), devices=d),
        "diffusion": lambda d: fs.flows.diffusion(2, hidden=(8,), devices=d),
        "torus": lambda d: fs.flows.torus_cnf(3, 2, 2.5, hidden=(8,), num_fourier=2, devices=d),
    }
    for name, make in makers.items():
        one, many = make(None), make(devs)
        params = perturb(one.init(jax.random.key(0)), jax.random.key(1), 0.1)
        x1, lq1 = one.sample_and_log_prob(params, jax.random.key(2), 10)   # 10: padded to 12
        xm, lqm = many.sample_and_log_prob(params, jax.random.key(2), 10)
        lp1, lpm = one.log_prob(params, x1), many.log_prob(params, x1)
        out[name] = {"dx": float(jnp.max(jnp.abs(x1 - xm))), "dlq": float(jnp.max(jnp.abs(lq1 - lqm))),
                     "dlp": float(jnp.max(jnp.abs(lp1 - lpm))), "finite": bool(jnp.all(jnp.isfinite(lqm))),
                     "devices": len(xm.sharding.device_set) if hasattr(xm, "sharding") else 1}
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_sharded_points_equal_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=root,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, r in res.items():
        assert r["finite"], (name, r)
        assert max(r["dx"], r["dlq"], r["dlp"]) < 1e-9, (name, r)
