"""Spin-flip throughput and Wang-Landau time to result on the 2-D Ising model.

1. Spin flips (single-site trials) per second for L = 8, 16, 32, steady state (second
   call of a compiled program), for: the Wang-Landau sweep (``WALKERS`` walkers sharing ln g),
   random-site Metropolis and checkerboard Metropolis (``WALKERS`` vmapped chains), and
   checkerboard heat bath.  "Per core" divides by the CPU cores this process may use.
2. Time to result at L = 8: wall time, compilation included, until the mean
   |ln g(E) - ln g_exact(E)| (ln g(E_0) = ln 2) reaches 0.02, for the 1/t schedule, and the
   error reached by classic halving WL in the same number of sweeps; log-log slopes of both
   error curves over the second half of the run.

3. Against a C reference (``benchmarks/c/wl_ising.c``, a plain single-walker 1/t WL built here
   with ``cc -O2``): seconds until mean |d ln g| <= 0.02 for the C code and for
   ``fs.samplers.wang_landau(key, ising(L, 0), schedule="1/t", stop_error=0.02)`` (compile
   included), medians over ``--repeats`` seeds, in the same run, at L = 8 (transfer matrix) and
   L = 16 (Beale's exact g(E)); wall and CPU seconds (the machine is shared: CPU time is the
   steadier measure).

    python benchmarks/wang_landau.py [--walkers 64] [--max-sweeps 200000]
    python benchmarks/wang_landau.py --c-only [--sizes 8 16] [--repeats 3]

Writes ``benchmarks/results/wang_landau.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import flowsamp as fs
from flowsamp.samplers.flat_histogram import energy_bins
from flowsamp.samplers.wang_landau import build_sweeps, make_windows


def _steady(fn, *args):
    """Seconds of the second call (the first compiles)."""
    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def throughput(L: int, walkers: int, sweeps: int) -> dict:
    t = fs.targets.ising(L, 0.44)
    n = L * L
    flips = sweeps * n * walkers
    out = {"L": L, "walkers": walkers, "sweeps": sweeps}
    bins = energy_bins(t.energy_levels)
    run = build_sweeps(t, bins, np.zeros(walkers, int), make_windows(len(bins.levels), 1, 0.5), sweeps)
    r0 = fs.samplers.wang_landau(jax.random.key(0), t, num_walkers=walkers, check_every=1,
                                 max_sweeps=1, exact_log_g=None)
    out["wang_landau"] = flips / _steady(run, jax.random.key(1), r0.state)
    x0 = t.random_state(jax.random.key(2), (walkers,))
    for name, kernel in (
        ("metropolis_random", fs.kernels.spin_metropolis(t, scan="random")),
        ("metropolis_checkerboard", fs.kernels.spin_metropolis(t, scan="checkerboard")),
        ("gibbs_checkerboard", fs.kernels.gibbs(t, order="checkerboard")),
    ):
        @jax.jit
        def chains(keys, x0, kernel=kernel):
            def one(k, x):
                st = kernel.init(x)
                st, _ = jax.lax.scan(lambda s, kk: (kernel.step(kk, s)[0], None), st,
                                     jax.random.split(k, sweeps))
                return st.position
            return jax.vmap(one)(keys, x0)

        out[name] = flips / _steady(chains, jax.random.split(jax.random.key(3), walkers), x0)
    return out


def time_to_result(walkers: int, max_sweeps: int, check_every: int) -> dict:
    t = fs.targets.ising(8, 0.44)
    exact = t.exact_log_dos()
    res = {}
    runs = {}
    for schedule in ("1/t", "halving"):
        r = fs.samplers.wang_landau(jax.random.key(0), t, num_walkers=walkers, schedule=schedule,
                                    check_every=check_every, max_sweeps=max_sweeps,
                                    exact_log_g=exact, log_f_final=1e-9)
        runs[schedule] = r
        late = r.times >= r.times[-1] / 2
        slope = float(np.polyfit(np.log(r.times[late]), np.log(r.errors[late]), 1)[0])
        hit = np.nonzero(r.errors <= 0.02)[0]
        res[schedule] = {
            "sweeps": int(r.num_sweeps),
            "wall_s": float(r.elapsed[-1]),
            "final_error": float(r.errors[-1]),
            "min_error": float(r.errors.min()),
            "slope_second_half": slope,
            "first_error_le_0.02_sweeps": int(r.times[hit[0]]) if hit.size else None,
            "first_error_le_0.02_wall_s": float(r.elapsed[hit[0]]) if hit.size else None,
            "stays_le_0.02_from_sweeps": _stays_below(r, 0.02),
        }
        stay = res[schedule]["stays_le_0.02_from_sweeps"]
        res[schedule]["stays_le_0.02_from_wall_s"] = (
            float(r.elapsed[np.searchsorted(r.times, stay)]) if stay is not None else None
        )
    res["curves"] = {k: {"times": v.times.tolist(), "errors": v.errors.tolist(),
                         "log_f": v.log_f.tolist()} for k, v in runs.items()}
    return res


def _stays_below(r, level):
    above = np.nonzero(r.errors > level)[0]
    if above.size == 0:
        return int(r.times[0])
    if above[-1] == len(r.errors) - 1:
        return None
    return int(r.times[above[-1] + 1])


def build_c_reference(workdir: str) -> str:
    """Compile ``benchmarks/c/wl_ising.c`` with ``cc -O2`` into ``workdir``; return the binary."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc) on PATH: the C reference cannot be built")
    src = Path(__file__).parent / "c" / "wl_ising.c"
    exe = os.path.join(workdir, "wl_ising")
    subprocess.run([cc, "-O2", "-o", exe, str(src), "-lm"], check=True)
    return exe


def _write_levels(path: str, L: int, energies: np.ndarray, log_g: np.ndarray) -> None:
    u = np.rint((energies + 2 * L * L) / 2).astype(int)  # Ising: E = 2u - 2N (J = 1)
    with open(path, "w") as f:
        f.write(f"{len(u)}\n" + "".join(f"{int(a)} {float(b)!r}\n" for a, b in zip(u, log_g)))


def _exact_reference(L: int):
    """(energies, ln g, label): the transfer matrix for L <= 10, else Beale's exact g(E)
    (cached in benchmarks/results/ising_exact_log_g_L{L}.json)."""
    t = fs.targets.ising(L=L, beta=0.0)
    if t.num_states ** L <= 1024:
        e, lg = t.exact_log_dos()
        return e, lg, "exact (transfer matrix)"
    path = Path(__file__).parent / "results" / f"ising_exact_log_g_L{L}.json"
    if not path.exists():
        from flowsamp.targets.beale import beale_dos

        e, g, worst = beale_dos(L)
        path.write_text(json.dumps({"L": L, "energies": e.tolist(), "log_g": [math.log(c) for c in g],
                                    "max_rounding": worst}))
    d = json.loads(path.read_text())
    return np.array(d["energies"]), np.array(d["log_g"]), "exact (Beale)"


def vs_c_reference(sizes, repeats: int, max_sweeps: int, walkers: int | None = None,
                   check_trials: int = 6400, c_walkers: bool = False) -> list[dict]:
    """Time to mean |d ln g| <= 0.02: C reference vs fs.samplers.wang_landau, same run.

    flowsamp runs the contract call ``wang_landau(key, ising(L, 0), schedule="1/t",
    stop_error=0.02)`` with its defaults (``walkers`` only when given; at L = 8 the reference is
    the library's own ``"auto"`` one, whose transfer-matrix cost the first call pays; at larger L
    Beale's exact g(E) is passed).  The first flowsamp call of each size compiles its program;
    later seeds reuse it (``*_first`` fields keep the first call apart).  The C code runs one
    walker (its classic form; with ``c_walkers`` also the same walkers sharing ln g) and checks
    the error every ``check_trials`` trials.  Wall and CPU seconds of both (C: its children's
    CPU time; flowsamp: this process's).
    """
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_c_reference(tmp)
        for L in sizes:
            t = fs.targets.ising(L=L, beta=0.0)
            n = L * L
            energies, log_g, reference = _exact_reference(L)
            path = os.path.join(tmp, f"exact{L}.txt")
            _write_levels(path, L, energies, log_g)
            c_check = max(1, check_trials // n)
            w = walkers or 16  # for the C xW run only
            w_check = max(1, check_trials // (w * n))
            row = {"L": L, "reference": reference, "walkers": walkers, "check_trials": check_trials,
                   "load_before": os.getloadavg()[0]}
            for name in ("c", "c_walkers", "flowsamp"):
                for f in ("_s", "_cpu_s", "_error", "_trials"):
                    row[name + f] = []
            kw = {} if walkers is None else {"num_walkers": walkers}
            for seed in range(repeats):
                for name, cw_, chk in (("c", 1, c_check), ("c_walkers", w, w_check))[: 2 if c_walkers else 1]:
                    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    out = subprocess.run([exe, str(L), str(seed + 1), "0.02", str(chk), str(max_sweeps), path,
                                          str(cw_)], check=True, capture_output=True, text=True).stdout.split()
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    row[name + "_s"].append(float(out[1]))
                    row[name + "_cpu_s"].append((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime))
                    row[name + "_error"].append(float(out[2]))
                    row[name + "_trials"].append(int(out[0]) * n * cw_)
                target = fs.targets.ising(L=L, beta=0)
                ref_kw = {} if L == 8 else {"exact_log_g": (energies, log_g)}
                c0, t0 = time.process_time(), time.perf_counter()
                r = fs.samplers.wang_landau(jax.random.key(seed), target, schedule="1/t", stop_error=0.02,
                                            max_sweeps=max_sweeps, **kw, **ref_kw)
                row["flowsamp_s"].append(time.perf_counter() - t0)
                row["flowsamp_cpu_s"].append(time.process_time() - c0)
                row["flowsamp_error"].append(float(r.errors[-1]))
                row["flowsamp_trials"].append(int(r.num_sweeps) * n * r.state.positions.shape[0])
                row["flowsamp_walkers"] = int(r.state.positions.shape[0])
                cw = (f"C x{w} {row['c_walkers_s'][-1]:.2f} s ({row['c_walkers_trials'][-1]:.3g}), "
                      if c_walkers else "")
                print(f"  L={L} seed {seed}: C {row['c_s'][-1]:.2f} s wall {row['c_cpu_s'][-1]:.2f} s CPU "
                      f"({row['c_trials'][-1]:.3g} trials), {cw}flowsamp x{row['flowsamp_walkers']} "
                      f"{row['flowsamp_s'][-1]:.2f} s wall {row['flowsamp_cpu_s'][-1]:.2f} s CPU "
                      f"({row['flowsamp_trials'][-1]:.3g}){' first call' if seed == 0 else ''}", flush=True)
            row["load_after"] = os.getloadavg()[0]
            for clock in ("s", "cpu_s"):
                c_med = np.median(row["c_" + clock])
                row[f"ratio_median_{clock}"] = float(np.median(row["flowsamp_" + clock]) / c_med)
                if repeats > 1:
                    row[f"ratio_median_repeat_calls_{clock}"] = float(np.median(row["flowsamp_" + clock][1:]) / c_med)
            row["ratio_median"] = row["ratio_median_s"]
            if c_walkers:
                row["ratio_median_same_walkers"] = float(np.median(row["flowsamp_s"]) / np.median(row["c_walkers_s"]))
            row["c_ns_per_trial"] = float(np.sum(row["c_cpu_s"]) / np.sum(row["c_trials"]) * 1e9)
            row["flowsamp_ns_per_trial"] = float(np.sum(row["flowsamp_cpu_s"][1:] or row["flowsamp_cpu_s"])
                                                 / np.sum(row["flowsamp_trials"][1:] or row["flowsamp_trials"]) * 1e9)
            rows.append(row)
    return rows


def trial_rate(L: int, walkers: int, trials: float) -> dict:
    """CPU nanoseconds per single-spin WL trial at size L, same run: the C code (one walker) and
    ``fs.samplers.wang_landau`` with ``walkers`` walkers, each for about ``trials`` trials; flowsamp
    is timed at ``trials`` (twice: the first call compiles) and ``2 * trials`` so that the
    difference gives the steady rate, the intercept the fixed cost per call and the first call
    the compile time; CPU time (children's for the
    C code), which a shared machine disturbs less than wall time."""
    t = fs.targets.ising(L=L, beta=0.0)
    n = L * L
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_c_reference(tmp)
        path = os.path.join(tmp, "levels.txt")
        _write_levels(path, L, t.energy_levels, np.zeros(len(t.energy_levels)))
        sweeps_c = int(trials // n)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([exe, str(L), "1", "-1", str(sweeps_c), str(sweeps_c), path],
                       check=True, capture_output=True, text=True)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c_ns = ((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)) / (sweeps_c * n) * 1e9
    sweeps = max(1, int(trials // (n * walkers)))
    walls = []
    for k in (1, 1, 2):  # the first call compiles; the program is kept for the next two
        t0 = time.process_time()
        fs.samplers.wang_landau(jax.random.key(0), t, num_walkers=walkers, max_sweeps=k * sweeps,
                                check_every=sweeps, exact_log_g=None)
        walls.append(time.process_time() - t0)
    fs_ns = (walls[2] - walls[1]) / (sweeps * n * walkers) * 1e9
    return {"L": L, "walkers": walkers, "c_ns_per_trial": c_ns, "flowsamp_ns_per_trial": fs_ns,
            "flowsamp_compile_s": walls[0] - walls[1], "flowsamp_fixed_s": walls[1] - (walls[2] - walls[1]),
            "flowsamp_walls_s": walls}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--walkers", type=int, default=64)
    parser.add_argument("--throughput-sweeps", type=int, default=50)
    parser.add_argument("--max-sweeps", type=int, default=100_000)
    parser.add_argument("--check-every", type=int, default=100)
    parser.add_argument("--c-only", action="store_true", help="only the C-reference comparison")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--c-walkers", action="store_true", help="also run the C code with the same walkers")
    parser.add_argument("--vs-c-walkers", type=int, default=None,
                        help="walkers of flowsamp (default: the library's) and of the C xW run")
    parser.add_argument("--rate", type=int, nargs="*", default=None,
                        help="only ns per trial (C vs flowsamp) at these sizes")
    args = parser.parse_args()
    if args.rate is not None:
        rates = []
        for L in args.rate:
            r = trial_rate(L, args.vs_c_walkers or 64, 2e7 if L <= 8 else 5e7)
            print(f"L={L}: ns/trial C {r['c_ns_per_trial']:.1f}, flowsamp x{r['walkers']} "
                  f"{r['flowsamp_ns_per_trial']:.1f} (ratio {r['flowsamp_ns_per_trial'] / r['c_ns_per_trial']:.2f}); "
                  f"flowsamp compile {r['flowsamp_compile_s']:.2f} s CPU, fixed cost per call {r['flowsamp_fixed_s']:.2f} s CPU (runs {np.round(r['flowsamp_walls_s'], 2).tolist()} s CPU), load {os.getloadavg()[0]:.0f}", flush=True)
            rates.append({**r, "load": os.getloadavg()[0]})
        out = Path(__file__).parent / "results" / "wang_landau_rate.json"
        out.write_text(json.dumps({"backend": jax.default_backend(), "rates": rates}, indent=2))
        print(f"wrote {out}")
        return
    crows = vs_c_reference(args.sizes, args.repeats, 10 * args.max_sweeps,
                           walkers=args.vs_c_walkers, c_walkers=args.c_walkers)
    print("time to mean |d ln g| <= 0.02 (1/t WL), medians over seeds; flowsamp's first call compiles")
    print(f"{'L':>4} {'W':>4} {'C s':>7} {'fs s':>7} {'ratio':>6} {'C cpu':>7} {'fs cpu':>7} {'ratio':>6} "
          f"{'ratio cpu, repeat calls':>23} {'ns/trial C':>10} {'fs':>6}  load  reference")
    for r in crows:
        print(f"{r['L']:>4} {r['flowsamp_walkers']:>4} {np.median(r['c_s']):>7.2f} {np.median(r['flowsamp_s']):>7.2f} "
              f"{r['ratio_median_s']:>6.2f} {np.median(r['c_cpu_s']):>7.2f} {np.median(r['flowsamp_cpu_s']):>7.2f} "
              f"{r['ratio_median_cpu_s']:>6.2f} {r.get('ratio_median_repeat_calls_cpu_s', float('nan')):>23.2f} "
              f"{r['c_ns_per_trial']:>10.1f} {r['flowsamp_ns_per_trial']:>6.1f}  {r['load_before']:.0f}-{r['load_after']:.0f}"
              f"  {r['reference']}")
    if args.c_only:
        tag = "" if list(args.sizes) == [8] else "_L" + "_".join(map(str, args.sizes))
        tag += "" if args.vs_c_walkers is None else f"_w{args.vs_c_walkers}"
        out = Path(__file__).parent / "results" / f"wang_landau_vs_c{tag}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"backend": jax.default_backend(), "cores": os.cpu_count(),
                                   "vs_c": crows}, indent=2))
        print(f"wrote {out}")
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = [throughput(L, args.walkers, args.throughput_sweeps) for L in (8, 16, 32)]
    print(f"spin flips per second ({args.walkers} walkers/chains, {cores} cores, backend {jax.default_backend()})")
    names = ["wang_landau", "metropolis_random", "metropolis_checkerboard", "gibbs_checkerboard"]
    print(f"{'L':>4} " + " ".join(f"{n:>24}" for n in names))
    for r in rows:
        print(f"{r['L']:>4} " + " ".join(f"{r[n]:>16.3g} ({r[n] / cores:>5.2g}/c)" for n in names))
    ttr = time_to_result(args.walkers, args.max_sweeps, args.check_every)
    print("\nIsing L = 8, mean |d ln g| (ln g(E0) = ln 2)")
    print(f"{'schedule':>9} {'sweeps':>8} {'wall s':>8} {'final':>8} {'min':>8} {'slope':>7} "
          f"{'<=0.02 at (sweeps, s)':>22} {'stays <=0.02 from (sweeps, s)':>30}")
    for k in ("1/t", "halving"):
        v = ttr[k]
        print(f"{k:>9} {v['sweeps']:>8} {v['wall_s']:>8.1f} {v['final_error']:>8.4f} {v['min_error']:>8.4f} "
              f"{v['slope_second_half']:>7.2f} {str((v['first_error_le_0.02_sweeps'], _r(v['first_error_le_0.02_wall_s']))):>22} "
              f"{str((v['stays_le_0.02_from_sweeps'], _r(v['stays_le_0.02_from_wall_s']))):>30}")
    out = Path(__file__).parent / "results" / "wang_landau.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"cores": cores, "backend": jax.default_backend(), "walkers": args.walkers,
                               "throughput": rows, "time_to_result": ttr, "vs_c": crows}, indent=2))
    print(f"\nwrote {out}")


def _r(x):
    return None if x is None else round(x, 1)


if __name__ == "__main__":
    main()
