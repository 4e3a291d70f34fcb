"""rq_spline, realnvp and maf: round trip, log-det vs jacfwd, log_prob(sample) = log_q, identity init."""

from __future__ import annotations

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from tests.flows.conftest import flow_errors, jacobian_log_det, perturb

DIMS = (1, 2, 5, 7, 16)
HIDDEN = (8, 8)
# float32: the acceptance tolerance of issue 4 (round trip, log-det, log q).
TOL = 1e-4


def _make(kind, dim):
    if kind == "rq_spline":
        # bound 3 puts part of the test points (|z| up to ~6) on the identity tails
        return fs.flows.rq_spline(dim, num_layers=2, hidden=HIDDEN, num_bins=5, bound=3.0)
    if kind == "realnvp":
        return fs.flows.realnvp(dim, num_layers=3, hidden=HIDDEN, affine=True)
    if kind == "maf":
        return fs.flows.maf(dim, num_layers=2, hidden=HIDDEN)
    if kind == "maf_spline":
        return fs.flows.maf(dim, num_layers=2, hidden=HIDDEN, transform="rq_spline", num_bins=4, bound=3.0)
    if kind == "realnvp_checkerboard":
        return fs.flows.realnvp(dim, num_layers=3, hidden=HIDDEN, mask="checkerboard")
    raise ValueError(kind)


KINDS = ("rq_spline", "realnvp", "maf", "maf_spline", "realnvp_checkerboard")
# Default run: dims 1, an odd one and 16 per flow type; the remaining acceptance dims are
# `slow` (same checks; the compile of each case dominates the default suite's budget).
DEFAULT = {"rq_spline": (1, 5, 16), "realnvp": (1, 7, 16), "maf": (1, 5, 16)}
CASES = [
    pytest.param((k, d), marks=() if d in DEFAULT[k] else pytest.mark.slow)
    for k in KINDS[:3]
    for d in DIMS
] + [("maf_spline", 5), ("realnvp_checkerboard", 7)]


@pytest.fixture(scope="module", params=CASES, ids=lambda p: f"{p[0]}-{p[1]}")  # noqa: PT006
def errors(request):
    kind, dim = request.param
    flow = _make(kind, dim)
    params = perturb(flow.init(jax.random.key(0)), jax.random.key(1))
    z = 2.0 * jax.random.normal(jax.random.key(2), (16, dim))
    return flow_errors(flow, params, z, jax.random.key(3), 32)


def test_round_trip(errors):
    assert errors["round_trip"] < TOL
    assert errors["log_det_sum"] < TOL
    assert errors["moved"] > 0.1  # the perturbed flow is not the identity


def test_log_det_matches_jacfwd(errors):
    assert errors["log_det_forward"] < TOL


def test_log_prob_of_sample_is_log_q(errors):
    assert errors["log_prob_vs_log_q"] < TOL * max(1.0, errors["log_q_scale"])


def test_single_point_vmap_and_jit_agree_with_batch():
    flow = _make("realnvp", 3)
    params = perturb(flow.init(jax.random.key(0)), jax.random.key(1))
    z = jax.random.normal(jax.random.key(2), (6, 3))
    lp_batch = flow.log_prob(params, z)
    lp_vmap = jax.jit(jax.vmap(lambda u: flow.log_prob(params, u)))(z)
    np.testing.assert_allclose(lp_vmap, lp_batch, rtol=1e-6, atol=1e-5)
    assert flow.log_prob(params, z[0]).shape == () and flow.forward(params, z[0])[1].shape == ()


@pytest.mark.parametrize("kind", KINDS)
def test_identity_at_init(kind):
    dim = 5
    flow = _make(kind, dim)
    params = flow.init(jax.random.key(0))
    z = 2.0 * jax.random.normal(jax.random.key(2), (16, dim))
    x, ld = flow.forward(params, z)
    eps = float(jnp.finfo(z.dtype).eps)
    # identity up to rounding: a few ulps of |z| per layer
    assert float(jnp.max(jnp.abs(x - z) / (1.0 + jnp.abs(z)))) < 64 * eps
    assert float(jnp.max(jnp.abs(ld))) < 64 * eps * dim
    base_lp = -0.5 * jnp.sum(z**2, -1) - 0.5 * dim * np.log(2 * np.pi)
    np.testing.assert_allclose(flow.log_prob(params, z), base_lp, rtol=64 * eps, atol=64 * eps * dim)


def test_identity_at_init_dim1():
    flow = fs.flows.rq_spline(1, num_layers=2, hidden=HIDDEN)
    params = flow.init(jax.random.key(0))
    z = jnp.linspace(-12.0, 12.0, 9)[:, None]
    x, ld = flow.forward(params, z)
    eps = float(jnp.finfo(z.dtype).eps)
    assert float(jnp.max(jnp.abs(x - z) / (1.0 + jnp.abs(z)))) < 64 * eps
    assert float(jnp.max(jnp.abs(ld))) < 64 * eps


@pytest.mark.parametrize("kind", ["rq_spline", "maf"])
def test_float64(kind, x64):
    flow = _make(kind, 5)
    params = perturb(flow.init(jax.random.key(0)), jax.random.key(1))
    assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(params))

    @jax.jit
    def check(params, key):
        x, log_q = flow.sample_and_log_prob(params, key, 8)
        z, _ = flow.inverse(params, x)
        return x, log_q, flow.forward(params, z)[0], flow.log_prob(params, x)

    x, log_q, x2, log_q2 = check(params, jax.random.key(3))
    assert x.dtype == jnp.float64 and log_q.dtype == jnp.float64
    assert float(jnp.max(jnp.abs(x2 - x))) < 1e-10
    np.testing.assert_allclose(log_q2, log_q, rtol=1e-10)


def test_params_msgpack_round_trip():
    flow = _make("rq_spline", 5)
    params = perturb(flow.init(jax.random.key(0)), jax.random.key(1))
    restored = flax.serialization.from_bytes(flow.init(jax.random.key(5)), flax.serialization.to_bytes(params))
    z = jax.random.normal(jax.random.key(2), (4, 5))
    np.testing.assert_array_equal(flow.forward(restored, z)[0], flow.forward(params, z)[0])


def test_conv_conditioner_lattice():
    flow = fs.flows.realnvp(
        16, num_layers=2, hidden=(2,), mask="checkerboard", lattice_shape=(4, 4), conditioner="conv"
    )
    params = perturb(flow.init(jax.random.key(0)), jax.random.key(1), 0.3)
    z = jax.random.normal(jax.random.key(2), (8, 16))
    err = flow_errors(flow, params, z, jax.random.key(3), 8)
    assert err["round_trip"] < TOL and err["log_det_forward"] < TOL and err["moved"] > 0.1
    # a periodic conv with a checkerboard commutes with lattice shifts by 2 sites
    x = flow.forward(params, z)[0]
    shift = lambda a: jnp.roll(a.reshape(-1, 4, 4), 2, axis=2).reshape(-1, 16)
    np.testing.assert_allclose(flow.forward(params, shift(z))[0], shift(x), atol=1e-5)


def test_checkerboard_partition():
    (cond, trans), (cond2, trans2) = fs.flows.coupling.partitions(9, 2, "checkerboard", (3, 3))
    np.testing.assert_array_equal(trans, [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(trans2, cond)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="mask"):
        fs.flows.realnvp(4, mask="diagonal")
    with pytest.raises(ValueError, match="conditioner"):
        fs.flows.rq_spline(4, conditioner="transformer")
    with pytest.raises(ValueError, match="lattice_shape"):
        fs.flows.realnvp(4, conditioner="conv")
    with pytest.raises(ValueError, match="dim"):
        fs.flows.rq_spline(0)
    flow = fs.flows.rq_spline(3, hidden=(4,))
    with pytest.raises(ValueError, match="shape"):
        flow.log_prob(flow.init(jax.random.key(0)), jnp.zeros((2, 4)))


def test_maf_is_autoregressive():
    flow = fs.flows.maf(4, num_layers=1, hidden=(8, 8))
    params = perturb(flow.init(jax.random.key(0)), jax.random.key(1), 0.3)
    jac = jax.jacfwd(lambda u: flow.inverse(params, u)[0])(jnp.array([0.3, -1.0, 2.0, 0.5]))
    assert float(jnp.max(jnp.abs(jnp.triu(jac, 1)))) == 0.0  # z_i depends on x_{<=i} only
    assert bool(jnp.any(jnp.tril(jac, -1) != 0.0))  # and does depend on earlier components


@pytest.mark.parametrize("scale", [0.0, 1.0])
def test_lean_spline_equals_distrax(scale):
    from flowsamp.flows.transforms import rational_quadratic

    lean = rational_quadratic(6, -3.0, 3.0)
    ref = rational_quadratic(6, -3.0, 3.0, implementation="distrax")
    raw = scale * jax.random.normal(jax.random.key(0), (400, 1, 17))
    x = jnp.linspace(-5.0, 5.0, 400)[:, None]  # crosses both identity tails
    eps = float(jnp.finfo(x.dtype).eps)
    for fn in ("forward", "inverse"):
        y, ld = jax.jit(getattr(lean, fn))(raw, x)
        y_ref, ld_ref = jax.jit(getattr(ref, fn))(raw, x)
        # same map up to rounding: a few ulps of the range and of the log-slope
        np.testing.assert_allclose(y, y_ref, atol=64 * eps * 3.0)
        np.testing.assert_allclose(ld, ld_ref, atol=64 * eps * (1.0 + float(jnp.max(jnp.abs(ld_ref)))))
    outside = jnp.abs(x[:, 0]) >= 3.0
    np.testing.assert_array_equal(jax.jit(lean.forward)(raw, x)[0][outside], x[outside])
