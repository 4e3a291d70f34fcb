"""smc / ais checkpoints: a run interrupted after a checkpoint and resumed equals the uninterrupted
run with the same key bit for bit (in process, interrupted by an exception; and SIGKILLed in a
subprocess, slow); a checkpoint of another key is refused naming 'key'."""

import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

BASE = fs.targets.gaussian(jnp.zeros(2), 9.0 * jnp.eye(2))


def log_target(x):
    return -0.5 * jnp.sum(((x - 1.0) / 0.3) ** 2)


KW = dict(num_islands=4, num_mcmc_steps=3, warn=False)
FIELDS = ("particles", "log_weights", "log_Z", "island_log_Z", "schedule", "ess", "acceptance", "step_size",
          "num_steps", "num_target_evals")


def _same(a, b):
    for f in FIELDS:
        x, y = np.asarray(getattr(a, f)), np.asarray(getattr(b, f))
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f


class _Stop(Exception):
    pass


@pytest.mark.parametrize("sampler", [fs.samplers.smc, fs.samplers.ais])
def test_interrupted_and_resumed_equals_uninterrupted(sampler, tmp_path):
    ck = tmp_path / "smc.msgpack"
    plain = sampler(jax.random.key(0), log_target, BASE, 128, **KW)
    assert plain.num_steps.max() >= 3

    def stop(t, _):
        if t == 2:
            raise _Stop

    with pytest.raises(_Stop):
        sampler(jax.random.key(0), log_target, BASE, 128, checkpoint_path=ck, checkpoint_every=2, callback=stop, **KW)
    assert fs.io.read_meta(ck)["num_done"] == 2
    resumed = sampler(jax.random.key(0), log_target, BASE, 128, checkpoint_path=ck, resume=True, **KW)
    _same(resumed, plain)
    with pytest.raises(ValueError, match="key"):
        sampler(jax.random.key(1), log_target, BASE, 128, checkpoint_path=ck, resume=True, **KW)


WORKER = textwrap.dedent(
    """
    import os, signal, sys
    import jax, jax.numpy as jnp, numpy as np
    import flowsamp as fs
    from flowsamp import io as fio
    ck, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    if not resume:
        save = fio.save
        def save_and_die(*a, **k):  # the process is SIGKILLed right after its first checkpoint
            save(*a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
        fio.save = save_and_die
    base = fs.targets.gaussian(jnp.zeros(2), 9.0 * jnp.eye(2))
    lp = lambda x: -0.5 * jnp.sum(((x - 1.0) / 0.3) ** 2)
    kw = dict(num_islands=4, num_mcmc_steps=3, warn=False)
    r = fs.samplers.smc(jax.random.key(0), lp, base, 128, checkpoint_path=ck, checkpoint_every=1, resume=resume, **kw)
    p = fs.samplers.smc(jax.random.key(0), lp, base, 128, **kw)
    np.savez(out, rx=np.asarray(r.particles), px=np.asarray(p.particles), rz=r.island_log_Z, pz=p.island_log_Z,
             done=fio.read_meta(ck)["num_done"])
    """
)


@pytest.mark.slow
def test_sigkilled_and_resumed_is_bit_identical(tmp_path):
    ck, out = str(tmp_path / "smc.msgpack"), str(tmp_path / "out.npz")
    killed = subprocess.run([sys.executable, "-c", WORKER, ck, out, "0"], capture_output=True, text=True, timeout=900)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert fs.io.read_meta(ck)["num_done"] == 1
    done = subprocess.run([sys.executable, "-c", WORKER, ck, out, "1"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    d = np.load(out)
    assert np.array_equal(d["rx"], d["px"]) and np.array_equal(d["rz"], d["pz"])
