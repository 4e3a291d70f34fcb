"""Run MALA chains of a Gaussian target over every device of a job: one GPU, several, or hosts.

The same script serves every case (see ``README.md`` next to it)::

    python sample_chains.py                                    # one process, all its devices
    python sample_chains.py --auto                             # srun / TPU pod / mpirun:
                                                               #   jax.distributed auto-detection
    python sample_chains.py --coordinator HOST:PORT --num-processes N --process-id I

Every process runs this same program (multi-controller JAX) with the same key and the same
initial positions; ``fs.sample(..., devices=jax.devices())`` gives each device a block of
consecutive chains and gathers the result on every process, so the numbers equal a
single-process run with the same key. Process 0 prints the verdict and writes ``--out``.
The target is :math:`\\mathcal N(0, \\operatorname{diag}(s^2))` with scales ``s`` log-spaced
from 0.5 to 2, so the printout compares the chain means with the exact answer 0.
"""

from __future__ import annotations

import argparse
import time
import warnings


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dist = p.add_argument_group("distributed (leave out for one process)")
    dist.add_argument("--auto", action="store_true",
                      help="jax.distributed.initialize() with no arguments: SLURM, Open MPI, TPU pods")
    dist.add_argument("--coordinator", help="HOST:PORT of process 0 (plain jax.distributed.initialize)")
    dist.add_argument("--num-processes", type=int)
    dist.add_argument("--process-id", type=int)
    dist.add_argument("--local-device-ids", help="e.g. 0,1,2,3: the devices this process uses (default: "
                      "all; under SLURM auto-detection: the GPU numbered SLURM_LOCALID)")
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--chains-per-device", type=int, default=64)
    p.add_argument("--warmup", type=int, default=500, help="steps run and discarded first")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--thin", type=int, default=1)
    p.add_argument("--step-size", type=float, default=0.3,
                   help="MALA step (acceptance ~0.6 on the default target; MALA's optimum is 0.574)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", choices=("all", "summary"), default="all",
                   help="'summary' keeps only running means/variances (memory independent of --steps)")
    p.add_argument("--out", default="chains.npz", help="written by process 0 ('' to skip)")
    return p.parse_args(argv)


def initialize(args: argparse.Namespace) -> None:
    """Join the job's processes (before any other JAX call), or do nothing for one process."""
    import jax

    ids = None if args.local_device_ids is None else [int(i) for i in args.local_device_ids.split(",")]
    if args.auto:
        jax.distributed.initialize(local_device_ids=ids)
    elif args.coordinator is not None:
        if args.num_processes is None or args.process_id is None:
            raise SystemExit("--coordinator needs --num-processes and --process-id")
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id, local_device_ids=ids)
    elif args.num_processes is not None or args.process_id is not None or ids is not None:
        raise SystemExit("--num-processes / --process-id / --local-device-ids need --coordinator or --auto")


def main(argv=None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    initialize(args)

    import jax
    import numpy as np

    import flowsamp as fs

    lead = jax.process_index() == 0
    devices = jax.devices()  # every device of every process
    num_chains = args.chains_per_device * len(devices)
    if lead:
        print(f"{jax.process_count()} process(es), {len(devices)} {devices[0].platform} device(s), "
              f"{num_chains} chains x {args.steps} steps, dim {args.dim}", flush=True)

    scales = np.geomspace(0.5, 2.0, args.dim)
    target = fs.targets.gaussian(np.zeros(args.dim), np.diag(scales**2))
    kernel = fs.kernels.mala(target.log_prob, args.step_size)
    key_init, key_warm, key_run = jax.random.split(jax.random.key(args.seed), 3)
    # The same starts on every process (overdispersed: 2x the target's scale).
    x0 = 2.0 * target.sample(key_init, num_chains)

    t1 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = x0
        if args.warmup:  # discarded; its final states (on every process) start the kept run
            start = fs.sample(key_warm, kernel, x0, args.warmup, keep="summary", devices=devices).final_state
        trace = fs.sample(key_run, kernel, start, args.steps, thin=args.thin, keep=args.keep, devices=devices)
        jax.block_until_ready(trace.final_state)
    t2 = time.perf_counter()

    if not lead:
        return
    for w in caught[-1:]:  # the kept run's verdict (the warm-up's is expected to fail)
        print(f"warning: {w.message}")
    mean = np.asarray(trace.mean).mean(axis=0)  # grand mean over chains, per coordinate
    diagnostics = getattr(trace, "diagnostics", {}) or {}
    ess = diagnostics.get("ess_bulk")
    if ess is not None:
        z = np.abs(mean) / (scales / np.sqrt(np.asarray(ess)))
        print(f"max |z| of the means against 0: {float(np.max(z)):.2f}")
    for name in ("max_rhat", "min_ess_bulk", "min_ess_tail", "acceptance"):
        if name in diagnostics and diagnostics[name] is not None:
            print(f"{name}: {float(diagnostics[name]):.4g}")
    if hasattr(trace, "converged"):
        print(f"converged: {trace.converged}" + "".join(f"\n  - {p}" for p in trace.problems))
    print(f"mean acceptance {float(np.mean(trace.acceptance_rate)):.3f}; "
          f"setup {t1 - t0:.1f} s, sampling (compile included) {t2 - t1:.1f} s")
    if args.out:
        arrays = {"mean": trace.mean, "variance": trace.variance, "acceptance_rate": trace.acceptance_rate,
                  "final_position": trace.final_state.position}
        if trace.positions is not None:
            arrays["positions"] = trace.positions
        np.savez(args.out, **{k: np.asarray(v) for k, v in arrays.items()})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
