"""``adaptive_flow_mcmc(..., devices=...)``: chains sharded over 4 fake CPU devices give
the single-device run (samples and flow bitwise; acceptance-rate means up to float32
rounding of a cross-device reduction), and exact production means.

The sharded run executes in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
(the flag only takes effect before JAX initialises its backend), as in ``tests/test_parallel.py``.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

MEAN = [1.0, -2.0]
STD = [0.5, 2.0]

SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    import flowsamp as fs

    assert len(jax.devices()) == 4, jax.devices()
    MEAN, STD = np.array(%r), np.array(%r)

    def log_prob(x):
        return -0.5 * jnp.sum(((x - MEAN.astype(x.dtype)) / STD.astype(x.dtype)) ** 2)

    flow = fs.flows.realnvp(2, num_layers=2, hidden=(8,), affine=True)
    x0 = jnp.zeros((8, 2)) + jnp.array([3.0, 3.0])
    sched = dict(num_local_steps=10, num_global_steps=10, max_training_loops=3, min_training_loops=3,
                 num_production_loops=30, num_epochs=5, buffer_points_per_chain=8, early_stop=False)
    one = fs.samplers.adaptive_flow_mcmc(jax.random.key(0), log_prob, flow, x0, **sched)
    many = fs.samplers.adaptive_flow_mcmc(jax.random.key(0), log_prob, flow, x0, devices=jax.devices()[:4], **sched)

    def fields(o):
        return {"positions": o.positions, "log_prob": o.log_prob, "params": o.params,
                "state.position": o.state.position, "state.buffer": o.state.buffer,
                **{"history." + k: o.history[k] for k in ("phase", "local_acceptance", "global_acceptance",
                                                          "loss", "step_size", "positions")}}

    def rel(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.max(np.abs(a - b) / (np.abs(a) + 1.0)))

    f1, f4 = fields(one), fields(many)
    diffs = {k: max([rel(a, b) for a, b in zip(jax.tree.leaves(f1[k]), jax.tree.leaves(f4[k]))] or [0.0])
             for k in f1}
    equal = {k: all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(f1[k]), jax.tree.leaves(f4[k])))
             for k in f1}
    x = np.asarray(many.positions)
    print("RESULT" + json.dumps({
        "equal": equal,
        "max_rel_diff": diffs,
        "devices_in": len(many.state.position.sharding.device_set),
        "devices_out": len(many.positions.sharding.device_set),
        "training_loops": [one.num_training_loops, many.num_training_loops],
        "global_acceptance": [one.global_acceptance, many.global_acceptance],
        "local_acceptance": [one.local_acceptance, many.local_acceptance],
        "mean": x.reshape(-1, 2).mean(0).tolist(),
        "ess": np.asarray(fs.estimators.mcmc_ess(x)).tolist(),
    }))
    """
    % (MEAN, STD)
)


def test_sharded_chains_equal_single_device_and_are_exact():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][len("RESULT"):])
    print(res)
    assert res["devices_in"] == 4  # the chain axis really was sharded
    assert res["training_loops"] == [3, 3]
    assert 0.0 < res["global_acceptance"][1] <= 1.0 and 0.0 < res["local_acceptance"][1] <= 1.0
    assert res["devices_out"] == 4
    # Same key, same program, the chain axis split 4 ways: the samples, log-densities, trained
    # flow, final state and per-loop positions/losses/step sizes are bitwise identical (the
    # target and flow act per chain; the flow is trained on the replicated buffer).
    stats = ("history.local_acceptance", "history.global_acceptance")
    for name, same in res["equal"].items():
        if name not in stats:
            assert same, (name, res)
    # The per-loop acceptance rates are means over the chain axis, which XLA reduces per
    # device and then across devices, in another order than on one device: float32 rounding
    # (measured ~1.6e-7 relative, i.e. ~1 ulp), nothing more.
    for name in stats:
        assert res["max_rel_diff"][name] < 1e-6, (name, res)
    # Production means of the sharded run within 4 SE (SE from numpyro's ESS) of the exact ones.
    se = np.asarray(STD) / np.sqrt(res["ess"])
    assert np.all(np.abs(np.asarray(res["mean"]) - MEAN) < 4 * se), (res["mean"], se)
