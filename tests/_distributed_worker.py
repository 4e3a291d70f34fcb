"""One process of the 2-process ``jax.distributed`` test (``tests/test_distributed.py``).

Run as ``python _distributed_worker.py PROCESS_ID PORT OUT_DIR`` with ``JAX_PLATFORMS=cpu``
(and optionally ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` for two CPU devices
per process). The process joins a 2-process job whose coordinator listens on
``127.0.0.1:PORT``, runs :func:`run_case` over ``jax.devices()`` (the devices of both
processes), and writes what it holds of the result to ``OUT_DIR/process_<id>.npz``.
The test imports :func:`run_case` to compute the single-process reference.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import warnings

NUM_CHAINS = 8
NUM_STEPS = 200
FIELDS = ("positions", "final_position", "final_log_prob", "acceptance_rate", "num_accepted", "mean", "variance")


@functools.cache
def _setup():
    """Target, kernel and starts, built once per process (one kernel object: one compilation)."""
    import jax
    import numpy as np

    import flowsamp as fs

    target = fs.targets.gaussian(np.zeros(3), np.diag([1.0, 4.0, 0.25]))
    kernel = fs.kernels.mala(target.log_prob, 0.5)
    return kernel, np.asarray(target.sample(jax.random.key(0), NUM_CHAINS))


def run_case(devices=None, global_inputs: bool = False, progress: bool = False) -> dict:
    """MALA on a 3-D diagonal Gaussian (sds 1, 2, 0.5), 8 chains x 200 steps, key 1.

    The covariance is diagonal so that the target's matmul with ``L^{-1}`` is exact (every
    off-diagonal product is an exact zero): the numbers cannot depend on how XLA blocks the
    matmul for 8 chains on one device versus 2 per device, and the sharded run must equal
    the single-process run bit for bit. With ``global_inputs`` each process hands over only
    its own chains' starts, as a global array (``jax.make_array_from_process_local_data``).
    With ``progress`` the run shows its progress bar (process 0 only; compiled in pieces of
    10 steps), which must not change a number.
    """
    import jax
    import numpy as np

    import flowsamp as fs

    kernel, x0 = _setup()
    if global_inputs:
        from flowsamp import parallel

        mesh = parallel.chain_mesh(devices)
        per_process = NUM_CHAINS // jax.process_count()
        mine = x0[jax.process_index() * per_process:(jax.process_index() + 1) * per_process]
        x0 = jax.make_array_from_process_local_data(jax.sharding.NamedSharding(mesh, parallel.CHAINS), mine)
    with warnings.catch_warnings():  # 8 short chains need not pass the convergence verdict
        warnings.simplefilter("ignore")
        trace = fs.sample(jax.random.key(1), kernel, x0, NUM_STEPS, devices=devices, progress=progress)
    values = (trace.positions, trace.final_state.position, trace.final_state.log_prob,
              trace.acceptance_rate, trace.num_accepted, trace.mean, trace.variance)
    return {name: np.asarray(v) for name, v in zip(FIELDS, values)}


def main(process_id: int, port: int, out_dir: str) -> None:
    t_start = time.perf_counter()
    import jax

    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id,
        initialization_timeout=120,
    )
    t_init = time.perf_counter()
    import numpy as np

    from flowsamp import parallel

    devices = jax.devices()
    mesh = parallel.chain_mesh(devices)
    assert parallel.spans_processes(mesh), devices
    t_import = time.perf_counter()
    result = run_case(devices)
    t_sample = time.perf_counter()
    print("PROGRESS-START", flush=True)
    with_bar = run_case(devices, progress=True)
    sys.stderr.flush()
    print("PROGRESS-END", flush=True)
    t_progress = time.perf_counter()
    try:
        from_global = run_case(devices, global_inputs=True)
        global_error = None
    except RuntimeError as err:  # fs.sample reading a global array it has not gathered
        from_global, global_error = {}, str(err)

    # put_chains / gather: a global array split over both processes, gathered back.
    x = np.arange(NUM_CHAINS * 2, dtype=np.float32).reshape(NUM_CHAINS, 2)
    split = parallel.put_chains(x, mesh)
    local_rows = sum(s.data.shape[0] for s in split.addressable_shards)
    back = np.asarray(parallel.gather(split))
    keys = parallel.gather(parallel.put_chains(jax.random.split(jax.random.key(5), NUM_CHAINS), mesh))
    info = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "num_devices": len(devices),
        "num_local_devices": jax.local_device_count(),
        "collectives": str(jax.config.jax_cpu_collectives_implementation),
        "gather_ok": bool(np.array_equal(back, x)) and local_rows == NUM_CHAINS // jax.process_count(),
        "key_gather_ok": bool(np.array_equal(jax.random.key_data(keys),
                                             jax.random.key_data(jax.random.split(jax.random.key(5), NUM_CHAINS)))),
        "global_inputs_error": global_error,
        "seconds": {"init": t_init - t_start, "import": t_import - t_init, "sample": t_sample - t_import, "progress": t_progress - t_sample,
                    "total": time.perf_counter() - t_start, "cpu": time.process_time()},
    }
    np.savez(os.path.join(out_dir, f"process_{process_id}.npz"), **result)
    np.savez(os.path.join(out_dir, f"process_{process_id}_global.npz"), **from_global)
    np.savez(os.path.join(out_dir, f"process_{process_id}_progress.npz"), **with_bar)
    with open(os.path.join(out_dir, f"process_{process_id}.json"), "w") as f:
        json.dump(info, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
