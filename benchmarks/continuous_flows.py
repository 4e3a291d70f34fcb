"""Continuous flows as corrected proposals: CNF (flow matching) and score diffusion (DSM).

Sections (``--only`` picks some):

* ``mb``: Müller-Brown beta = 0.1. MALA chains from the three minima give training data; a
  CNF trained by ``fs.train.flow_matching`` on them is the proposal of
  ``fs.importance_sampling``: ln Z against the quadrature value 11.729591 (in SE), ESS/N,
  basin weights.
* ``afm``: the four-mode mixture (weights 0.1..0.4) sampled by ``fs.samplers.adaptive_flow_mcmc``
  with a CNF (pretrained by flow matching on chain samples) as the global move: mode weights in SE.
* ``gmm40``: FAB's 40-mode 2-D mixture (``fs.targets.gmm40``): a VP diffusion trained by
  denoising score matching on exact samples, its probability-flow ODE as IS proposal (ln Z
  vs 0 in SE, mode-weight error), against an RQ-spline flow trained by maximum likelihood
  on the same samples for the same wall time.

    python benchmarks/continuous_flows.py [--only mb,afm,gmm40] [--x64]

Writes ``benchmarks/results/continuous_flows.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowsamp as fs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _continuous_common import is_report as _is_report  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "continuous_flows.json"


def _diag_base_params(data):
    data = np.asarray(data)
    return {"loc": jnp.asarray(data.mean(0)), "log_scale": jnp.asarray(np.log(data.std(0)))}


def train_cnf(key, data, *, hidden=(64, 64), steps=3000, lr=2e-3, batch=256, **cnf_kw):
    dim = data.shape[1]
    flow = fs.flows.cnf(dim, hidden, base=fs.flows.diagonal_gaussian(dim), **cnf_kw)
    params = flow.init(key)
    params["base"] = jax.tree.map(lambda a, b: jnp.asarray(b, a.dtype), params["base"], _diag_base_params(data))
    loss = fs.train.flow_matching(flow, data, batch_size=batch)
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))
    t0 = time.perf_counter()
    params, hist = fs.train.fit(jax.random.fold_in(key, 1), flow, params, loss, opt, steps, progress=False)
    jax.block_until_ready(params)
    return flow, params, hist, time.perf_counter() - t0


def section_mb(seed=0, num_samples=20000):
    target = fs.targets.muller_brown(0.1)
    key = jax.random.key(seed)
    starts = jnp.repeat(jnp.asarray(target.minima), 16, axis=0)  # 48 chains, 16 per basin
    kernel = fs.kernels.mala(target.log_prob, step_size=0.003)
    t0 = time.perf_counter()
    trace = fs.sample(jax.random.fold_in(key, 0), kernel, starts, 3000, warn=False)
    chain_s = time.perf_counter() - t0
    data = np.asarray(trace.positions[:, 1000::4]).reshape(-1, 2)
    flow, params, hist, train_s = train_cnf(jax.random.fold_in(key, 1), data)
    t0 = time.perf_counter()
    res = fs.importance_sampling(jax.random.fold_in(key, 2), flow, params, target.log_prob, num_samples, warn=False)
    is_s = time.perf_counter() - t0
    out = _is_report(res, target.log_Z, target, 3)
    out.update(exact_log_Z=float(target.log_Z), num_samples=num_samples, train_data=int(data.shape[0]),
               chain_s=chain_s, train_s=train_s, is_s=is_s, final_fm_loss=float(np.mean(hist.loss[-100:])),
               exact_mode_weights=np.asarray(target.mode_weights).tolist())
    return out


def section_afm(seed=0):
    """Four-mode mixture: CNF pretrained by flow matching on MALA chain samples (4 chains per
    mode), then the frozen global move of ``adaptive_flow_mcmc`` (exploration off: the chains
    are the data). The CNF uses the adaptive Tsit5 solve at its default tolerances and is not
    trained further by maximum likelihood through the ODE: a from-scratch CNF of 8 midpoint
    steps trained that way put weights 0.17/0.59/0.17/0.07 (40 SE off; see
    ``fs.flows.check_log_q``). ``check_log_q`` runs before and after the sampler and raises if
    log q is not consistent to 1e-3 nat."""
    target = fs.targets.four_mode_mixture(2)
    key = jax.random.key(seed)
    starts = jnp.repeat(jnp.asarray(target.means), 4, axis=0)
    trace = fs.sample(jax.random.fold_in(key, 0), fs.kernels.mala(target.log_prob, step_size=0.5),
                      starts, 1000, warn=False)
    data = np.asarray(trace.positions[:, 200::2]).reshape(-1, 2)
    t0 = time.perf_counter()
    flow, params, _, train_s = train_cnf(jax.random.fold_in(key, 1), data, hidden=(64, 64), steps=3000)
    check_before = fs.flows.check_log_q(flow, params, jax.random.fold_in(key, 3), 512, what="afm cnf")
    out = fs.samplers.adaptive_flow_mcmc(
        jax.random.fold_in(key, 2), target.log_prob, flow, trace.positions[:, -1], params=params,
        explore=False, optimizer=optax.set_to_zero(), min_training_loops=1, max_training_loops=1,
        mode_of=target.mode_of, num_modes=4, target_ess=400,
    )
    check_after = fs.flows.check_log_q(out.flow, out.params, jax.random.fold_in(key, 4), 512, what="afm cnf")
    wall = time.perf_counter() - t0
    labels = np.asarray(jax.vmap(jax.vmap(target.mode_of))(out.positions))
    w, se = fs.estimators.mode_weights(jnp.asarray(labels), 4)
    w, se = np.asarray(w), np.asarray(se)
    exact = np.asarray(target.mode_weights)
    return {"mode_weights": w.tolist(), "mode_weight_se": se.tolist(), "exact": exact.tolist(),
            "max_z": float(np.max(np.abs(w - exact) / se)), "converged": bool(out.converged),
            "problems": list(out.problems), "wall_s": wall, "pretrain_s": train_s,
            "global_acceptance": float(out.diagnostics.get("global_acceptance", np.nan)),
            "production_steps": int(out.positions.shape[1]),
            "check_log_q_before": check_before, "check_log_q_after": check_after,
            "setup": "cnf(2,(64,64)) tsit5 default tol, flow matching 3000 steps on 16 MALA chains, frozen"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="mb,afm,gmm40")
    ap.add_argument("--x64", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    sections = {"mb": section_mb, "afm": section_afm}
    from diffusion_gmm40 import section_gmm40  # noqa: PLC0415

    sections["gmm40"] = section_gmm40
    for name in args.only.split(","):
        res = sections[name](seed=args.seed)
        res["x64"] = bool(args.x64)
        print(name, json.dumps(res, indent=1))
        RESULTS.parent.mkdir(exist_ok=True)
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}  # re-read: runs may overlap
        results[name + ("_x64" if args.x64 else "")] = res
        RESULTS.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
