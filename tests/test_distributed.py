"""Chains sharded over 2 processes with ``jax.distributed`` equal the single-process run.

Two worker processes (``_distributed_worker.py``) join a job on ``127.0.0.1`` (CPU, gloo
collectives, 2 CPU devices each, so the chain mesh has 4 devices over 2 processes) and run
``fs.sample`` with MALA over ``jax.devices()``; each writes what it holds of the result.
Every process must hold every chain, bit for bit equal to the same run in this (single)
process with ``devices=None``. The reference runs here while the workers start.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import _distributed_worker as worker

WORKER = Path(__file__).with_name("_distributed_worker.py")
TIMEOUT_S = 300  # both workers together; they normally finish in well under a minute


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(out_dir: Path, reference_fn):
    """Start both workers, run ``reference_fn()`` meanwhile, wait (killing both on timeout)."""
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env.pop("SLURM_JOB_ID", None)  # no cluster auto-detection: explicit coordinator only
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(i), str(port), str(out_dir)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    try:
        reference = reference_fn()
        deadline = time.monotonic() + TIMEOUT_S
        outputs = [p.communicate(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        tails = [p.communicate()[1][-2000:] for p in procs]
        pytest.fail(f"2-process run did not finish within {TIMEOUT_S} s; stderr tails: {tails}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, (p, (_, err)) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"worker {i} exited with {p.returncode}:\n{err[-4000:]}"
    return reference


@pytest.mark.skipif(not hasattr(jax.config, "jax_cpu_collectives_implementation"),
                    reason="this jax has no CPU cross-process collectives (jax_cpu_collectives_implementation)")
def test_two_processes_equal_single_process(tmp_path):
    t0 = time.perf_counter()
    reference = run_workers(tmp_path, worker.run_case)
    wall = time.perf_counter() - t0
    for i in range(2):
        info = json.loads((tmp_path / f"process_{i}.json").read_text())
        print(f"process {i}: {info}")
        assert info["process_index"] == i and info["process_count"] == 2
        assert info["num_devices"] == 4 and info["num_local_devices"] == 2
        assert info["gather_ok"] and info["key_gather_ok"]
        got = np.load(tmp_path / f"process_{i}.npz")
        for name in worker.FIELDS:
            assert got[name].shape == reference[name].shape, name
            # Bitwise: elementwise log-density (diagonal covariance), same keys per chain.
            np.testing.assert_array_equal(got[name], reference[name], err_msg=f"process {i}: {name}")
    assert reference["num_accepted"].min() > 0  # the chains moved
    assert reference["positions"].shape == (worker.NUM_CHAINS, worker.NUM_STEPS, 3)
    print(f"2-process test wall time {wall:.1f} s")
