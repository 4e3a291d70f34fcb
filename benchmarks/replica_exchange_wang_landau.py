"""Replica-exchange Wang-Landau (Vogel et al. 2013) vs one window on the L x L Ising model.

Exact reference g(E): Beale's polynomial (``fs.targets.beale``; cached in
``benchmarks/results/ising_exact_log_g_L{L}.json``).  Runs are given as ``GxM`` (G windows of M
walkers each, sharing the window's ln g); all of them run at the same time, each in its own
process (so they see the same machine load), with the same wall budget (compile included).
Printed: the error at the end, the error per window, exchange acceptance, wall and CPU seconds,
and two speed-ups of each run against the one-window run ``1xM`` with the most walkers:

* at equal error: (wall / CPU time the one-window run needs to reach the error the run ends
  with) / (the run's time to it); ``>x`` when the one-window run never reaches it;
* at equal time: the one-window run's final error / the run's error at the same wall time.

    python benchmarks/replica_exchange_wang_landau.py [--L 32] [--max-seconds 1800] [--runs 1x8,8x8,1x64]

Writes ``benchmarks/results/rewl_L{L}.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def exact(L: int):
    path = RESULTS / f"ising_exact_log_g_L{L}.json"
    if not path.exists():
        from flowsamp.targets.beale import beale_dos

        e, g, worst = beale_dos(L)
        path.write_text(json.dumps({"L": L, "energies": e.tolist(), "log_g": [math.log(c) for c in g],
                                    "max_rounding": worst}))
    d = json.loads(path.read_text())
    return np.array(d["energies"]), np.array(d["log_g"])


def first_time(times, errors, level):
    hit = np.nonzero(np.asarray(errors) <= level)[0]
    return float(np.asarray(times)[hit[0]]) if hit.size else None


def error_at(times, errors, t):
    """Error of the last check at or before time ``t`` (None before the first check)."""
    k = np.searchsorted(np.asarray(times), t, side="right") - 1
    return float(np.asarray(errors)[k]) if k >= 0 else None


def one_run(L: int, spec: str, max_seconds: float, seed: int, out_path: str) -> None:
    import jax

    import flowsamp as fs
    from flowsamp.samplers.replica_exchange_wang_landau import replica_exchange_wang_landau

    G, M = (int(v) for v in spec.split("x"))
    t = fs.targets.ising(L=L, beta=0.0)
    ref = exact(L)
    load0 = os.getloadavg()[0]
    r = replica_exchange_wang_landau(jax.random.key(seed), t, num_windows=G, walkers_per_window=M,
                                     exact_log_g=ref, max_sweeps=10**9, max_seconds=max_seconds)
    werr = [float(np.mean(np.abs(r.log_g[lo:hi + 1] - ref[1][lo:hi + 1]))) for lo, hi in r.windows]
    Path(out_path).write_text(json.dumps({
        "spec": spec, "windows": G, "walkers_per_window": M, "seed": seed,
        "elapsed": r.elapsed.tolist(), "cpu": np.asarray(r.diagnostics["cpu_seconds"]).tolist(),
        "errors": r.errors.tolist(), "sweeps": r.times.tolist(), "window_errors": werr,
        "window_levels": r.windows.tolist(),
        "exchange_acceptance": np.asarray(r.diagnostics["exchange_acceptance"]).tolist(),
        "log_g": r.log_g.tolist(), "load_before": load0, "load_after": os.getloadavg()[0],
        "problems": r.problems,
    }))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--L", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--runs", default="1x8,8x8,1x64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_run(args.L, args.one, args.max_seconds, args.seed, args.out)
        return
    exact(args.L)  # computed once, before the timed runs
    specs = args.runs.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        procs = {s: subprocess.Popen([sys.executable, __file__, "--L", str(args.L), "--max-seconds",
                                      str(args.max_seconds), "--seed", str(args.seed), "--one", s,
                                      "--out", os.path.join(tmp, s + ".json")]) for s in specs}
        for p in procs.values():
            p.wait()
        runs = {s: json.loads(Path(tmp, s + ".json").read_text()) for s in specs if procs[s].returncode == 0}
    out = {"L": args.L, "max_seconds": args.max_seconds, "runs": runs}
    singles = [s for s in runs if runs[s]["windows"] == 1]
    base = max(singles, key=lambda s: runs[s]["walkers_per_window"]) if singles else None
    print(f"\nIsing L={args.L}, exact g (Beale), {args.max_seconds:.0f} s wall each, runs in parallel")
    for s, v in runs.items():
        end = v["errors"][-1]
        row = {}
        for clock in ("elapsed", "cpu"):
            tw = first_time(v[clock], v["errors"], end)
            if base is not None and s != base:
                b = runs[base]
                t1 = first_time(b[clock], b["errors"], end)
                row[f"speed_up_equal_error_{clock}"] = (t1 / tw if t1 else f">{b[clock][-1] / tw:.2f}")
                e_same = error_at(v[clock], v["errors"], b[clock][-1])
                row[f"speed_up_equal_time_{clock}"] = (b["errors"][-1] / e_same if e_same else None)
        v.update(row)
        print(f"  {s}: {v['sweeps'][-1]} sweeps, {v['elapsed'][-1]:.0f} s wall, {v['cpu'][-1]:.0f} s CPU, "
              f"load {v['load_before']:.1f}->{v['load_after']:.1f}: mean |d ln g| {end:.4f}; per window "
              f"{np.round(v['window_errors'], 4).tolist()}; exchange acc {np.round(v['exchange_acceptance'], 2).tolist()}"
              + (f"; vs {base}: {row}" if row else ""), flush=True)
    path = RESULTS / f"rewl_L{args.L}.json"
    path.write_text(json.dumps(out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
