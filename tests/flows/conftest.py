"""Helpers for flow tests: perturbed (non-identity) params and the Jacobian check."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def perturb(params, key, scale=0.05):
    """Add N(0, scale^2) noise to every leaf, so the flow is clearly not the identity.

    At 0.05 the test flows move points by O(1) with mean |log det| / dim ~ 0.1 while staying
    well conditioned in float32 (much stronger random maps compress regions so hard that
    float32 rounding of x alone spoils the inverse).
    """
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    noisy = [a + scale * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noisy)


def jacobian_log_det(fn, points):
    """log|det J| of ``fn`` (one point -> one point) at each row of ``points`` by jacfwd.

    """
    jac = jax.vmap(jax.jacfwd(fn))(points)
    return jnp.linalg.slogdet(jac)[1]


def flow_errors(flow, params, z, key, n):
    """One jitted program with every acceptance check of a flow at points ``z``.

    Returns max abs errors of: inverse(forward(z)) - z, log_det_f + log_det_i, log_det_f vs
    jacfwd, log_prob(sample) - log_q; and max |x - z| (non-identity). With the round trip,
    log_det_f = log|det J| and log_det_i = -log_det_f pin down the inverse's log-det too.

    Traced with full float32 matmuls: these are checks of the maths to 1e-4, and a GPU's
    default TF32 products (10-bit mantissa) in the conditioners and in jacfwd's chain rule
    differ from each other by ~1e-4 to 1e-3 (the flow stays self-consistent under TF32: forward
    and inverse see the same conditioner input).
    """

    def run(params, z, key):
        x, ld_f = flow.forward(params, z)
        z2, ld_i = flow.inverse(params, x)
        ref_f = jacobian_log_det(lambda u: flow.forward(params, u)[0], z)
        xs, log_q = flow.sample_and_log_prob(params, key, n)
        return {
            "round_trip": jnp.max(jnp.abs(z2 - z)),
            "log_det_sum": jnp.max(jnp.abs(ld_f + ld_i)),
            "log_det_forward": jnp.max(jnp.abs(ld_f - ref_f)),
            "log_prob_vs_log_q": jnp.max(jnp.abs(flow.log_prob(params, xs) - log_q)),
            "log_q_scale": jnp.max(jnp.abs(log_q)),
            "moved": jnp.max(jnp.abs(x - z)),
        }

    with jax.default_matmul_precision("highest"):
        return {k: float(v) for k, v in jax.jit(run)(params, z, key).items()}
