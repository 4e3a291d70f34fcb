"""flowsamp's adaptive global-local sampler vs flowMC (RQSpline + MALA), in one run.

For flowMC's own kind of targets -- 2-D and 10-D mixtures of four unit Gaussians at
(±5, ±5) / (±4, ±4, 0, ...) with weights 0.1/0.2/0.3/0.4, and the 1-D phi^4 field
(N = 64, a = 0.1, beta = 20, b = 0) when ``fs.targets.phi4_1d`` exists -- both samplers
get the same number of chains and the same starting points; the script prints, for each,
the time to result (wall time from the call until the samples are on the host,
compilation included; JSON ``wall_s`` = ``time_to_result_s``), CPU time, total minimum ESS
(numpyro's bulk ESS over all production samples, minimum over coordinates), minimum ESS
per second of time to result, the maximum absolute mode-weight error and the production
global acceptance, plus the flowsamp/flowMC ratio; it writes the table as JSON.

flowsamp's flow and schedule are chosen per target (:data:`FLOWSAMP_SPECS`): the
mixtures use a plain RQ-spline flow; phi^4 uses an RQ-spline on the informed Gaussian base
of the chain (``fs.flows.phi4_1d_precision``), the final affine layer's shift initialised
on the + mode (mean of the starting points reflected into the + mode) and the symmetry
``x -> -x``, which covers the - mode. flowMC gets its bundle's defaults (one schedule for
all targets, :class:`_flowmc_runner.FlowMCSchedule`).

Usage::

    python benchmarks/vs_flowmc.py [--targets mix2,mix10,phi4] [--chains 100]
        [--skip-flowmc] [--json benchmarks/results/vs_flowmc.json]

flowMC is the optional ``bench`` extra (``pip install flowmc``); it is imported, never
copied. Time on a shared machine drifts: compare the two only inside one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import flowsamp as fs  # noqa: E402
from _flowmc_runner import FlowMCSchedule, run_flowmc  # noqa: E402

#: flowsamp's schedule per target (chains are set on the command line).
FLOWSAMP_SCHEDULES = {
    # the mixtures: flowsamp's defaults, run until the criterion's ESS (its own stopping rule;
    # mode_of/num_modes only feed its convergence checks)
    "mix2": dict(target_ess=4000.0),
    "mix10": dict(target_ess=4000.0),
    # as tests/samplers/test_adaptive_flow_mcmc.py::test_phi4_from_one_mode_vs_plain_mala
    "phi4": dict(num_local_steps=100, num_global_steps=50, max_training_loops=30, min_training_loops=4,
                 num_production_loops=40, num_epochs=10, buffer_points_per_chain=20, step_size=1e-3),
}
FLOW_KW = dict(num_layers=4, hidden=(32, 32), num_bins=8)


def _negate(x):
    return -x


def _plain_flow(target):
    return fs.flows.rq_spline(target.dim, **FLOW_KW)


def _phi4_flow(target):
    base = fs.flows.informed_gaussian(fs.flows.phi4_1d_precision(target.dim, a=target.a, beta=target.beta))
    return fs.flows.rq_spline(target.dim, num_layers=4, hidden=(64,), num_bins=8, base=base)


def _shift_on_plus_mode(flow, key, x0, target):
    """``flow.init(key)`` with the final affine shift at the mean of the starting points
    reflected into the + mode (``x0`` has half its chains in each mode, so its plain mean is
    ~0, between the modes); the symmetry ``x -> -x`` then proposes the - mode. Any
    initialisation leaves the sampler exact; this one only makes training start on a mode."""
    params = flow.init(key)
    sign = 2.0 * np.asarray(target.mode_of(x0), np.float32) - 1.0
    params["layers"][-1]["shift"] = jnp.mean(jnp.asarray(sign)[:, None] * x0, axis=0)
    return params


#: per target: flow constructor ``make_flow(target)``, ``init_params(flow, key, x0, target)``
#: (``None``: the sampler's own ``flow.init``) and the ``symmetries`` of the global proposal.
FLOWSAMP_SPECS = {
    "mix2": dict(make_flow=_plain_flow, init_params=None, symmetries=()),
    "mix10": dict(make_flow=_plain_flow, init_params=None, symmetries=()),
    "phi4": dict(make_flow=_phi4_flow, init_params=_shift_on_plus_mode, symmetries=(_negate,)),
}
#: the same, in words, for the JSON.
FLOWSAMP_SPEC_NOTES = {
    "mix2": {"flow": f"rq_spline(dim, {FLOW_KW}), standard normal base", "params_init": "flow.init", "symmetries": []},
    "mix10": {"flow": f"rq_spline(dim, {FLOW_KW}), standard normal base", "params_init": "flow.init", "symmetries": []},
    "phi4": {"flow": "rq_spline(64, num_layers=4, hidden=(64,), num_bins=8, base=informed_gaussian(phi4_1d_precision(64, a=0.1, beta=20)))",
             "params_init": "flow.init, final affine shift = mean of x0 reflected into the + mode",
             "symmetries": ["x -> -x"]},
}


def make_target(name: str):
    """Return ``(target, mode_labels_fn, exact_weights, initial_positions_fn)``."""
    if name in ("mix2", "mix10"):
        dim = 2 if name == "mix2" else 10
        t = fs.targets.four_mode_mixture(dim)

        def x0(key, chains):  # spread over the plane of the modes, standard normal elsewhere
            z = jax.random.normal(key, (chains, dim))
            return z.at[:, :2].multiply(4.0)

        return t, t.mode_of, np.asarray(t.mode_weights), x0
    if name == "phi4":
        if not hasattr(fs.targets, "phi4_1d"):
            raise LookupError("fs.targets.phi4_1d is not available")
        t = fs.targets.phi4_1d(N=64, a=0.1, beta=20.0, b=0.0)

        def x0(key, chains):  # half the chains near each of the +/- modes
            prof = np.sin(np.pi * (np.arange(64) + 1) / 65.0)
            sign = np.where(np.arange(chains) % 2 == 0, 1.0, -1.0)
            return jnp.asarray(sign[:, None] * prof[None, :], dtype=jnp.float32) + 0.01 * jax.random.normal(key, (chains, 64))

        return t, t.mode_of, np.array([0.5, 0.5]), x0
    raise ValueError(f"unknown target {name!r}")


#: the result the clock stops at (time to result): every coordinate's bulk ESS and every mode weight
TARGET_MIN_ESS, TARGET_WEIGHT_ERR = 4000.0, 0.01


class CompileCounter:
    """Counts XLA compilations (``jax.monitoring`` backend-compile events) and their seconds
    while active: the number of distinct jitted programs a run builds, and what they cost."""

    def __init__(self):
        self.active, self.count, self.seconds = False, 0, 0.0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, duration, **_):
        if self.active and event == "/jax/core/compile/backend_compile_duration":
            self.count += 1
            self.seconds += float(duration)

    def start(self):
        self.active, self.count, self.seconds = True, 0, 0.0

    def stop(self) -> dict:
        self.active = False
        return {"num_compiles": self.count, "compile_s": self.seconds}


def import_seconds(module: str) -> float:
    """Wall time of ``import module`` in a fresh interpreter (jax's own import included)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def summarize(positions, mode_of, weights, wall, cpu):
    positions = np.asarray(positions)
    ess = fs.estimators.mcmc_ess(positions)
    labels = np.asarray(mode_of(jnp.asarray(positions)))
    w, se = fs.estimators.mode_weights(jnp.asarray(labels), len(weights))
    w, se = np.asarray(w), np.asarray(se)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "num_samples": int(positions.shape[0] * positions.shape[1]),
        "min_ess": float(np.min(ess)),
        "min_ess_per_s": float(np.min(ess) / wall),
        "mode_weights": w.tolist(),
        "mode_weights_se": se.tolist(),
        "mode_weight_max_err": float(np.max(np.abs(w - weights))),
    }


def run_flowsamp(key, target, x0, name):
    spec = FLOWSAMP_SPECS[name]
    c0, t0 = time.process_time(), time.perf_counter()
    flow = spec["make_flow"](target)
    kw = dict(FLOWSAMP_SCHEDULES[name])
    k_run = key  # the mixture rows: exactly as before the per-target specs (no split: it is two programs)
    if spec["init_params"] is not None:
        k_params, k_run = jax.random.split(key)
        kw["params"] = spec["init_params"](flow, k_params, x0, target)
    if spec["symmetries"]:
        kw["symmetries"] = spec["symmetries"]
    if name in ("mix2", "mix10"):
        kw.update(mode_of=target.mode_of, num_modes=len(target.mode_weights))
    out = fs.samplers.adaptive_flow_mcmc(k_run, target.log_prob, flow, x0, **kw)
    pos = np.asarray(out.positions)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    extra = {
        "training_loops": out.num_training_loops,
        "local_acceptance": out.local_acceptance,
        "global_acceptance": out.global_acceptance,
        "first_loop_s": float(out.history["wall_s"][0]),
        "training_s": float(out.history["wall_s"][max(out.num_training_loops - 1, 0)]),
        # per phase (s since the call): exploration (tempered SMC + warm start), then production
        "explore_s": out.diagnostics.get("explore_wall_s"),
        "production_s": float(out.history["wall_s"][-1] - out.history["wall_s"][max(out.num_training_loops - 1, 0)]),
        "production_steps": out.diagnostics.get("num_production_steps"),
    }
    return pos, wall, cpu, extra


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="mix2,mix10,phi4")
    ap.add_argument("--chains", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-flowmc", action="store_true")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "vs_flowmc.json"))
    args = ap.parse_args(argv)
    sched = FlowMCSchedule()
    counter = CompileCounter()
    imports = {"flowsamp": import_seconds("flowsamp")}
    if not args.skip_flowmc:
        try:
            imports["flowmc"] = import_seconds("flowMC.Sampler") + import_seconds(
                "flowMC.resource_strategy_bundle.RQSpline_MALA") / 2  # second import mostly cached jax
        except subprocess.CalledProcessError:
            pass
    results = {"machine": {"cpus": os.cpu_count(), "jax": jax.__version__, "devices": str(jax.devices())},
               "flowmc_schedule": sched.__dict__, "flowsamp_schedules": FLOWSAMP_SCHEDULES,
               "flowsamp_specs": FLOWSAMP_SPEC_NOTES, "chains": args.chains,
               "import_s": imports, "criterion": {"min_ess": TARGET_MIN_ESS, "max_weight_err": TARGET_WEIGHT_ERR},
               "targets": {}}
    for name in args.targets.split(","):
        try:
            target, mode_of, weights, x0_fn = make_target(name)
        except LookupError as e:
            print(f"[{name}] skipped: {e}")
            results["targets"][name] = {"skipped": str(e)}
            continue
        key = jax.random.key(args.seed)
        k0, k1, k2 = jax.random.split(key, 3)
        x0 = x0_fn(k0, args.chains)
        row = {}
        counter.start()
        pos, wall, cpu, extra = run_flowsamp(k1, target, x0, name)
        row["flowsamp"] = {**summarize(pos, mode_of, weights, wall, cpu), **extra, **counter.stop()}
        _time_to_result(row["flowsamp"], imports["flowsamp"])
        print(f"[{name}] flowsamp: {json.dumps(row['flowsamp'])}", flush=True)
        if not args.skip_flowmc:
            try:
                counter.start()
                pos, info = run_flowmc(k2, target.log_prob, target.dim, x0, sched)
                c = info.pop("cpu_s", float("nan"))
                row["flowmc"] = {**summarize(pos, mode_of, weights, info.pop("wall_s"), c), **info, **counter.stop()}
                _time_to_result(row["flowmc"], imports.get("flowmc", float("nan")))
                row["ratio_min_ess_per_s"] = row["flowsamp"]["min_ess_per_s"] / row["flowmc"]["min_ess_per_s"]
                row["ratio_time_to_result"] = row["flowmc"]["time_to_result_s"] / row["flowsamp"]["time_to_result_s"]
                print(f"[{name}] flowMC:   {json.dumps(row['flowmc'])}", flush=True)
            except ImportError as e:
                row["flowmc"] = {"skipped": f"flowMC not installed ({e}); pip install flowmc"}
        results["targets"][name] = row
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as fh:  # rewritten after every target
            json.dump(results, fh, indent=2)
    print_table(results)
    print(f"wrote {args.json}")
    return results


def print_table(results: dict) -> None:
    wall = "time to result (s, compile included)"
    hdr = f"{'target':7s} {'sampler':9s} {wall:>37s} {'cpu s':>8s} {'min ESS':>9s} {'ESS/s':>8s} {'max|dw|':>8s} {'glob acc':>9s}"
    print(hdr)
    print("-" * len(hdr))
    for name, row in results["targets"].items():
        for who in ("flowsamp", "flowmc"):
            r = row.get(who)
            if not r or "skipped" in r:
                continue
            print(f"{name:7s} {who:9s} {r['wall_s']:37.1f} {r['cpu_s']:8.1f} {r['min_ess']:9.0f} {r['min_ess_per_s']:8.2f} "
                  f"{r['mode_weight_max_err']:8.4f} {r.get('global_acceptance', float('nan')):9.3g}")
        if "ratio_min_ess_per_s" in row:
            print(f"{name:7s} ratio (flowsamp / flowMC min-ESS per second): {row['ratio_min_ess_per_s']:.1f}x")
        if "ratio_time_to_result" in row:
            fm, fs_ = row["flowmc"], row["flowsamp"]
            print(f"{name:7s} time to result incl. import (flowMC / flowsamp): {row['ratio_time_to_result']:.1f}x "
                  f"({fm['time_to_result_s']:.1f} s / {fs_['time_to_result_s']:.1f} s; criterion met: "
                  f"flowMC {fm['reached']}, flowsamp {fs_['reached']}); compiles flowMC {fm['num_compiles']} "
                  f"({fm['compile_s']:.1f} s), flowsamp {fs_['num_compiles']} ({fs_['compile_s']:.1f} s)")


def _time_to_result(row: dict, import_s: float) -> None:
    """Add ``time_to_result_s`` = import + wall (compile included) and whether the criterion
    (min-ESS >= 4000, every weight within 0.01) was ``reached`` by the end of the run."""
    row["import_s"] = import_s
    row["time_to_result_s"] = import_s + row["wall_s"]
    row["reached"] = bool(row["min_ess"] >= TARGET_MIN_ESS and row["mode_weight_max_err"] <= TARGET_WEIGHT_ERR)


if __name__ == "__main__":
    main()
