"""Timing print (not an assertion): one full-batch Adam step of a 4-layer RQ-spline flow.

DESIGN.md: 4 couplings, hidden 32x32, 8 bins, 10 000 points, one jitted scan: flowMC ~125 /
~340 ms per epoch (2-D / 10-D), flax+distrax MaskedCoupling ~45 / ~220 ms, lean coupling
~13 / ~90 ms on an idle 2-core machine. Run with ``pytest -m slow -s``.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax
import pytest

import flowsamp as fs


def _step_time(flow, dim, n=10_000, steps=20, repeats=3):
    params = flow.init(jax.random.key(0))
    opt = optax.adam(1e-3)
    data = 1.5 * jax.random.normal(jax.random.key(1), (n, dim)) + 0.3

    def step(carry, _):
        p, s = carry
        loss, g = jax.value_and_grad(lambda p: -jnp.mean(flow.log_prob(p, data)))(p)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), loss

    run = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), None, length=steps))
    t0 = time.perf_counter()
    (p, _), losses = jax.block_until_ready(run(params, opt.init(params)))
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(params, opt.init(params)))
        best = min(best, time.perf_counter() - t0)
    return first, best / steps, losses


@pytest.mark.slow
@pytest.mark.parametrize("dim", [2, 10])
@pytest.mark.parametrize("kind", ["rq_spline", "realnvp"])
def test_training_step_timing(kind, dim):
    make = fs.flows.rq_spline if kind == "rq_spline" else fs.flows.realnvp
    flow = make(dim, num_layers=4, hidden=(32, 32), **({"num_bins": 8} if kind == "rq_spline" else {}))
    first, per_step, losses = _step_time(flow, dim)
    print(f"\n{kind} dim {dim}: {1e3 * per_step:.1f} ms per full-batch step (10 000 points), "
          f"first call (compile + 20 steps) {first:.1f} s")
    assert bool(jnp.all(jnp.isfinite(losses))) and float(losses[-1]) < float(losses[0])
