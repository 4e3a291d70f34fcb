"""Neural and hybrid Wang-Landau vs classic 1/t WL on the 8x8 Ising model: error vs wall time.

Mean |ln g(E) - ln g_exact(E)| (ln g(E_0) = ln 2) at every check against wall seconds (compile
included), all in one run, every method with 16 walkers sharing ln g unless stated:

* ``classic``: ``fs.samplers.wang_landau(schedule="1/t")`` at its defaults;
* ``control``: ``neural_wang_landau(neural_every=0, local_sweeps=4)``: the classic single-spin
  sweeps on the neural driver's on-device ln f schedule, no net (separates the schedule's effect
  from the net's);
* ``hybrid_fkl`` / ``hybrid_rkl``: the same sweeps plus one neural proposal per walker every 4 sweeps,
  accepted with min(1, g(E) q(s) / (g(E') q(s'))), the net trained by maximum likelihood on the
  walkers (forward KL) or by reverse KL to p ∝ 1/g, training stopped at the acceptance plateau;
* ``neural``: purely neural WL-IMH walkers (128), reverse KL (the talk's training);
* ``neural_weights``: the talk's first algorithm, g(E(s)) <- g f^{M w(s)} with normalised weights (128 draws).

    python benchmarks/neural_wang_landau.py [--L 8] [--max-seconds 240] [--only classic,hybrid_fkl]

Writes ``benchmarks/results/neural_wang_landau.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

import flowsamp as fs


def _first(times, errors, level=0.02):
    hit = np.nonzero(np.asarray(errors) <= level)[0]
    return float(np.asarray(times)[hit[0]]) if hit.size else None


CONFIGS = {
    "control": dict(batch_size=16, local_sweeps=4, neural_every=0),
    "hybrid_fkl": dict(batch_size=16, local_sweeps=4, loss="forward_kl", stop_training="plateau"),
    "hybrid_rkl": dict(batch_size=16, local_sweeps=4, loss="reverse_kl", stop_training="plateau"),
    "neural": dict(batch_size=128, loss="reverse_kl"),
    "neural_weights": dict(batch_size=128, loss="reverse_kl", update="weights"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--L", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="classic," + ",".join(CONFIGS))
    args = parser.parse_args()
    t = fs.targets.ising(L=args.L, beta=0.0)
    exact = t.exact_log_dos()
    out = {"L": args.L, "seed": args.seed, "load_before": os.getloadavg()[0], "runs": {}}
    names = args.only.split(",")
    for name in names:
        t0 = time.perf_counter()
        if name == "classic":
            # wang_landau has no wall budget: give it the sweeps it needs (it stops at 0.02)
            r = fs.samplers.wang_landau(jax.random.key(args.seed), t, schedule="1/t", stop_error=0.02,
                                        exact_log_g=exact, max_sweeps=400_000)
            rec = {"sweeps": r.times.tolist()}
        else:
            r = fs.samplers.neural_wang_landau(jax.random.key(args.seed), t, exact_log_g=exact,
                                               stop_error=0.02, max_iterations=10**7, check_every=50,
                                               max_seconds=args.max_seconds, **CONFIGS[name])
            loc = CONFIGS[name].get("local_sweeps", 0)
            rec = {"iterations": r.times.tolist(), "sweeps": (r.times * loc).tolist(),
                   "acceptance": r.acceptance.tolist(), "training": r.training.tolist(),
                   "error_dos": r.diagnostics["error_dos"], "levels_missing": r.diagnostics["levels_missing"],
                   "config": CONFIGS[name]}
        rec.update(elapsed=r.elapsed.tolist(), errors=r.errors.tolist(), t_002=_first(r.elapsed, r.errors),
                   wall=time.perf_counter() - t0, first_check_s=float(r.elapsed[0]))
        out["runs"][name] = rec
        print(f"{name:>15} done: t_0.02 {rec['t_002']}  final {rec['errors'][-1]:.4f} at "
              f"{rec['elapsed'][-1]:.1f} s", flush=True)
    out["load_after"] = os.getloadavg()[0]
    print(f"\nIsing L={args.L} seed {args.seed} (load {out['load_before']:.1f} -> {out['load_after']:.1f}): "
          "wall seconds (compile included) to mean |d ln g| <= 0.02")
    print(f"{'method':>15} {'t_0.02 [s]':>11} {'1st check':>10} {'sweeps':>9} {'final err':>10} {'acc':>6}")
    for k, v in out["runs"].items():
        acc = f"{v['acceptance'][-1]:.3f}" if "acceptance" in v and v["acceptance"] else "-"
        sw = v["sweeps"][-1] if v["sweeps"] else 0
        tt = f"{v['t_002']:.1f}" if v["t_002"] is not None else "not reached"
        print(f"{k:>15} {tt:>11} {v['first_check_s']:>10.1f} {sw:>9} {v['errors'][-1]:>10.4f} {acc:>6}")
    path = Path(__file__).parent / "results" / f"neural_wang_landau_L{args.L}_seed{args.seed}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
