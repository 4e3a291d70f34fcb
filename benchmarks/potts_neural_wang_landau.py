"""q = 10 Potts, L = 8: the double-peaked canonical histogram at beta_c(L) from the hybrid neural WL g(E),
beside the multicanonical run flowsamp already has (notebook 04's recipe), in one run.

beta_c(L) is where the two (4-level smoothed) peaks of P_beta(E) are equally high
(``fs.estimators.equal_height_beta``); peak positions e = E/N are compared.

    python benchmarks/potts_neural_wang_landau.py [--max-seconds 300] [--muca-sweeps 1600]

Writes ``benchmarks/results/potts_neural_wang_landau.json``.
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
from flowsamp.estimators.canonical import smoothed_distribution


def peaks(energies, log_g, N, smooth=4):
    beta = fs.estimators.equal_height_beta(energies, log_g, 1.3, 1.5, smooth=smooth)
    p = smoothed_distribution(energies, log_g, beta, smooth=smooth)
    e = np.asarray(energies) / N
    i_o, i_d = np.argmax(np.where(e < -1.3, p, 0)), np.argmax(np.where(e >= -1.3, p, 0))
    return beta, p, float(e[i_o]), float(e[i_d])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--muca-sweeps", type=int, default=1600)
    args = parser.parse_args()
    t = fs.targets.potts(8, 10, 1.4)
    N = t.num_sites
    out = {"load_before": os.getloadavg()[0]}
    t0 = time.perf_counter()
    wlp = fs.samplers.wang_landau(jax.random.key(4), t, num_walkers=32, schedule="1/t", num_windows=4,
                                  check_every=250, max_sweeps=5 * args.muca_sweeps, exact_log_g=None)
    mu = fs.samplers.multicanonical(jax.random.key(5), t, num_walkers=32, initial_log_g=wlp.log_g,
                                    num_iterations=2, sweeps_per_iteration=args.muca_sweeps,
                                    num_production_sweeps=int(2.5 * args.muca_sweeps))
    t_mu = time.perf_counter() - t0
    b_mu, p_mu, eo_mu, ed_mu = peaks(mu.energies, mu.log_g, N)
    t0 = time.perf_counter()
    hy = fs.samplers.neural_wang_landau(jax.random.key(0), t, batch_size=32, local_sweeps=4, loss="forward_kl",
                                        stop_training="plateau", max_iterations=10**7, max_seconds=args.max_seconds,
                                        exact_log_g=None)
    t_hy = time.perf_counter() - t0
    try:
        b_hy, p_hy, eo_hy, ed_hy = peaks(hy.energies, hy.log_g, N)
    except ValueError as err:  # the budget ran out before g(E) has a double peak to balance
        print(f"  hybrid g(E) gives no balanced double peak: {err}")
        b_hy, eo_hy, ed_hy = float("nan"), float("nan"), float("nan")
        p_hy = smoothed_distribution(hy.energies, hy.log_g, b_mu, smooth=4)
    # the same levels' ln g, both pinned at the ground state: mean |difference|
    diff = float(np.mean(np.abs(hy.log_g - mu.log_g)))
    out.update(energies=mu.energies.tolist(), multicanonical={"log_g": mu.log_g.tolist(), "beta_c_L": b_mu,
               "P": p_mu.tolist(), "peaks": [eo_mu, ed_mu], "seconds": t_mu},
               hybrid={"log_g": hy.log_g.tolist(), "beta_c_L": b_hy, "P": p_hy.tolist(), "peaks": [eo_hy, ed_hy],
                       "seconds": t_hy, "acceptance": hy.acceptance.tolist(), "log_f": hy.log_f.tolist(),
                       "iterations": int(hy.times[-1]), "dos_counts": hy.dos.counts.tolist(),
                       "levels_visited": int(np.sum(np.asarray(hy.state.histogram)[0] > 0)),
                       "one_over_t": bool(np.asarray(hy.state.one_over_t)[0])},
               mean_abs_log_g_difference=diff, load_after=os.getloadavg()[0])
    print(f"q=10 Potts L=8 (load {out['load_before']:.1f} -> {out['load_after']:.1f})")
    print(f"  multicanonical: {t_mu:.0f} s, beta_c(L) {b_mu:.4f}, peaks e = {eo_mu:.3f}, {ed_mu:.3f}")
    print(f"  hybrid neural WL: {t_hy:.0f} s ({hy.times[-1]} it, ln f {hy.log_f[-1]:.2g}, neural acc "
          f"{hy.acceptance[-1]:.3f}), beta_c(L) {b_hy:.4f}, peaks e = {eo_hy:.3f}, {ed_hy:.3f}")
    print(f"  mean |ln g_hybrid - ln g_muca| = {diff:.3f}; levels the net proposed: {int(np.sum(hy.dos.counts > 0))}"
          f" of {hy.energies.size}")
    path = Path(__file__).parent / "results" / "potts_neural_wang_landau.json"
    path.write_text(json.dumps(out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
