"""Replica-exchange Wang-Landau (Vogel et al. 2013) vs one window on the L x L Ising model.

Exact reference g(E): Beale's polynomial (``fs.targets.beale``; cached in
``benchmarks/results/ising_exact_log_g_L{L}.json``).  Same total walkers for every run (16);
each run gets the same wall budget (compile included); printed: the error curve's end, the error
per window, exchange acceptance, and the speed-up = (wall time one window needs to reach the
error the W-window run ends with) / (the W-window run's time to it).

    python benchmarks/replica_exchange_wang_landau.py [--L 16] [--max-seconds 240] [--windows 1,4]

Writes ``benchmarks/results/rewl_L{L}.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import jax
import numpy as np

import flowsamp as fs
from flowsamp.samplers.replica_exchange_wang_landau import replica_exchange_wang_landau

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


def first_time(elapsed, errors, level):
    hit = np.nonzero(np.asarray(errors) <= level)[0]
    return float(np.asarray(elapsed)[hit[0]]) if hit.size else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--L", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--windows", default="1,4")
    parser.add_argument("--walkers", type=int, default=16)
    args = parser.parse_args()
    t = fs.targets.ising(L=args.L, beta=0.0)
    ref = exact(args.L)
    out = {"L": args.L, "load_before": os.getloadavg()[0], "runs": {}}
    for W in (int(w) for w in args.windows.split(",")):
        r = replica_exchange_wang_landau(jax.random.key(0), t, num_windows=W, walkers_per_window=args.walkers // W,
                                         exact_log_g=ref, max_sweeps=10**8, max_seconds=args.max_seconds)
        wins = r.windows
        werr = [float(np.mean(np.abs(r.log_g[lo:hi + 1] - ref[1][lo:hi + 1]))) for lo, hi in wins]
        out["runs"][str(W)] = {"elapsed": r.elapsed.tolist(), "errors": r.errors.tolist(), "sweeps": r.times.tolist(),
                               "window_errors": werr, "windows": wins.tolist(),
                               "exchange_acceptance": np.asarray(r.diagnostics["exchange_acceptance"]).tolist(),
                               "log_g": r.log_g.tolist()}
        print(f"{W} windows x {args.walkers // W} walkers: error {r.errors[-1]:.4f} after {r.elapsed[-1]:.0f} s "
              f"({r.times[-1]} sweeps); per window {np.round(werr, 4).tolist()}; exchange acc "
              f"{np.round(out['runs'][str(W)]['exchange_acceptance'], 2).tolist()}", flush=True)
    one = out["runs"].get("1")
    print(f"\nIsing L={args.L}, exact g (Beale), {args.walkers} walkers per run, {args.max_seconds:.0f} s each "
          f"(load {out['load_before']:.1f} -> {os.getloadavg()[0]:.1f})")
    for W, v in out["runs"].items():
        end = v["errors"][-1]
        tw = first_time(v["elapsed"], v["errors"], end)
        t1 = first_time(one["elapsed"], one["errors"], end) if one else None
        sp = f"{t1 / tw:.2f}" if (t1 and tw) else (">" + f"{one['elapsed'][-1] / tw:.2f}" if one and tw else "-")
        v["speed_up"] = sp
        print(f"  W={W}: final mean |d ln g| {end:.4f}; reached at {tw:.0f} s; one window reaches it: "
              f"{'%.0f s' % t1 if t1 else 'not within budget'}; speed-up {sp}")
    out["load_after"] = os.getloadavg()[0]
    (RESULTS / f"rewl_L{args.L}.json").write_text(json.dumps(out))
    print(f"wrote {RESULTS / f'rewl_L{args.L}.json'}")


if __name__ == "__main__":
    main()
