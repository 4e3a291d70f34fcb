"""GMM-40 (FAB, 2-D, 40 modes): score diffusion with probability-flow IS correction against an
RQ-spline flow trained for the same training wall time (compilation excluded) on the same exact
samples.

Used by ``benchmarks/continuous_flows.py --only gmm40``; reports ln Z (exact 0) in SE, ESS/N and
the largest mode-weight error (exact 1/40 each) with its SE for both proposals.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowsamp as fs
from _continuous_common import is_report as _is_report


def _train_for(key, flow, params, loss, opt, steps, wall_limit=None):
    """Train for ``steps`` (or until ``wall_limit`` s); the timing excludes compilation: a
    throw-away ``fit`` of one chunk compiles the program that the timed ``fit`` then reuses."""
    fs.train.fit(key, flow, params, loss, opt, 100, progress=False)
    t0 = time.perf_counter()

    def stop(step, params, hist):
        return wall_limit is not None and time.perf_counter() - t0 > wall_limit

    params, hist = fs.train.fit(key, flow, params, loss, opt, steps, progress=False, callback=stop)
    jax.block_until_ready(params)
    return params, len(hist.loss), time.perf_counter() - t0


def section_gmm40(seed=0, num_data=20000, num_is=4000, steps=4000, sde="vp"):
    target = fs.targets.gmm40()
    key = jax.random.key(seed)
    data = target.sample(jax.random.fold_in(key, 0), num_data)
    mean, std = jnp.mean(data, 0), jnp.std(data, 0)
    out = {"num_data": num_data, "num_is": num_is, "sde": sde}

    diff = fs.flows.diffusion(2, (128, 128), sde=sde, loc=mean, scale=std)
    params = diff.init(jax.random.fold_in(key, 1))
    loss = fs.train.score_matching(diff, data, batch_size=512)
    opt = optax.adam(optax.cosine_decay_schedule(2e-3, steps))
    params, n_done, train_s = _train_for(jax.random.fold_in(key, 2), diff, params, loss, opt, steps)
    t0 = time.perf_counter()
    res = fs.importance_sampling(jax.random.fold_in(key, 3), diff, params, target.log_prob, num_is, warn=False)
    rep = _is_report(res, 0.0, target, 40)
    rep.update(train_steps=n_done, train_s=train_s, is_s=time.perf_counter() - t0)
    y = diff.sample_sde(params, jax.random.fold_in(key, 4), num_is, 500)
    labels = np.asarray(jax.vmap(target.mode_of)(y))
    sde_w = np.bincount(labels, minlength=40) / num_is
    rep["reverse_sde_max_mode_weight_error"] = float(np.max(np.abs(sde_w - 1 / 40)))
    rep["reverse_sde_mode_weight_se"] = float(np.sqrt(1 / 40 * 39 / 40 / num_is))
    out["diffusion"] = rep

    spline = fs.flows.preconditioned(
        fs.flows.rq_spline(2, num_layers=6, hidden=(128, 128), num_bins=10), fs.flows.fit_affine(data)
    )
    sp = spline.init(jax.random.fold_in(key, 5))
    loss = fs.train.forward_kl(spline, data, batch_size=512)
    opt = optax.adam(optax.cosine_decay_schedule(2e-3, 10 * steps))
    sp, n_done, sp_train_s = _train_for(jax.random.fold_in(key, 6), spline, sp, loss, opt, 10 * steps,
                                        wall_limit=train_s)
    t0 = time.perf_counter()
    res = fs.importance_sampling(jax.random.fold_in(key, 7), spline, sp, target.log_prob, num_is, warn=False)
    rep = _is_report(res, 0.0, target, 40)
    rep.update(train_steps=n_done, train_s=sp_train_s, is_s=time.perf_counter() - t0)
    out["rq_spline_equal_wall"] = rep
    return out
