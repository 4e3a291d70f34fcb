"""Chains sharded over devices with shard_map equal the single-device run bit for bit.

The multi-device check runs in a subprocess with 4 fake CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``), because the flag only takes
effect before JAX initialises its backend.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

from flowsamp import parallel

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    import flowsamp as fs

    assert len(jax.devices()) == 4, jax.devices()
    well = fs.targets.many_well(4)
    gauss = fs.targets.gaussian(np.zeros(2), np.array([[1.0, 0.8], [0.8, 1.0]]))
    fields = lambda t: jax.tree.leaves((t.positions, t.info, t.final_state, t.acceptance_rate,
                                        t.num_accepted, t.num_nonfinite, t.mean, t.variance))
    out = {}
    cases = [
        ("rwmh", well, fs.kernels.rwmh(well.log_prob, 0.3)),
        ("mala", well, fs.kernels.mala(well.log_prob, 0.02)),
        ("hmc", well, fs.kernels.hmc(well.log_prob, 0.05, 4)),
        ("mala_matmul", gauss, fs.kernels.mala(gauss.log_prob, 0.3)),
        ("hmc_params", well, lambda p: fs.kernels.hmc(well.log_prob, p["step_size"], 4)),
    ]
    wanted = sys.argv[1].split(",")
    for name, target, kernel in cases:
        if name not in wanted:
            continue
        x0 = target.sample(jax.random.key(0), 8)
        kw = {"params": {"step_size": 0.05}} if name.endswith("_params") else {}
        one = fs.sample(jax.random.key(3), kernel, x0, 50, thin=5, **kw)
        many = fs.sample(jax.random.key(3), kernel, x0, 50, thin=5, devices=jax.devices(), **kw)
        pairs = list(zip(fields(one), fields(many)))
        out[name] = {
            "equal": all(np.array_equal(a, b) for a, b in pairs),
            "same_decisions": bool(np.array_equal(one.info.is_accepted, many.info.is_accepted)
                                   and np.array_equal(one.num_accepted, many.num_accepted)),
            "max_rel_diff": max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
                                              / (np.abs(np.asarray(a, np.float64)) + 1.0)))
                                for a, b in pairs),
            "devices": len(many.positions.sharding.device_set),
            "moved": int(one.num_accepted.sum()),
        }
    kernel = cases[1][2]
    x0 = well.sample(jax.random.key(0), 8)
    if "summary" in wanted:
        summ_one = fs.sample(7, kernel, x0, 40, keep="summary")
        summ_many = fs.sample(7, kernel, x0, 40, keep="summary", devices=jax.devices())
        out["summary_equal"] = all(np.array_equal(a, b) for a, b in
                                   zip(jax.tree.leaves(summ_one), jax.tree.leaves(summ_many)))
    try:
        fs.sample(0, kernel, x0[:6], 10, devices=jax.devices())
        out["indivisible"] = "no error"
    except ValueError as err:
        out["indivisible"] = str(err)
    print("RESULT" + json.dumps(out))
    """
)


def run_on_four_devices(cases):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-c", SCRIPT, ",".join(cases)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def check_bitwise(res):
    assert res["devices"] == 4
    assert res["moved"] > 0
    assert res["equal"], res


def test_four_devices_equal_single_device():
    """One subprocess (4 fake CPU devices): HMC with replicated params bitwise, a matmul
    target up to rounding, and chains that do not divide over the devices raise."""
    out = run_on_four_devices(["hmc_params", "mala_matmul"])
    print(out)
    # Kernels and driver are bitwise identical when the log-density is elementwise.
    check_bitwise(out["hmc_params"])
    # A matmul in the log-density is compiled per batch size (8 chains on one device vs 2 per
    # device) and XLA CPU may round it differently: the accept/reject decisions must be
    # identical and the floats equal up to float32 rounding (1e-5 relative, ~100 ulp).
    res = out["mala_matmul"]
    assert res["devices"] == 4 and res["moved"] > 0
    assert res["same_decisions"]
    assert res["max_rel_diff"] < 1e-5
    assert "do not divide evenly over 4 devices" in out["indivisible"]


@pytest.mark.slow
def test_four_devices_more_kernels_and_summary_mode():
    out = run_on_four_devices(["rwmh", "mala", "hmc", "summary"])
    print(out)
    for name in ("rwmh", "mala", "hmc"):
        check_bitwise(out[name])
    assert out["summary_equal"]


def test_chain_mesh_checks():
    mesh = parallel.chain_mesh(jax.devices())
    assert mesh.axis_names == (parallel.CHAIN_AXIS,)
    assert parallel.chain_mesh(mesh) is mesh
    with pytest.raises(ValueError, match="more than once"):
        parallel.chain_mesh(jax.devices() * 2)
    parallel.check_divisible(3 * mesh.devices.size, mesh)
