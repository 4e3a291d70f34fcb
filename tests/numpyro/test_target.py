"""fs.numpyro.target: log_prob = -U (numpyro's potential), postprocess, init, site checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro
import numpyro.distributions as dist
from numpyro.infer.util import potential_energy

import flowsamp as fs  # noqa: F401
from flowsamp.numpyro import Kernel, target
from flowsamp.numpyro.models import (
    EIGHT_SCHOOLS_SIGMA,
    EIGHT_SCHOOLS_Y,
    RV_SIGMA,
    RV_T,
    RV_Y,
    eight_schools,
    kepler_eccentric_anomaly,
    radial_velocity,
)

CASES = {
    "eight_schools": (eight_schools, (EIGHT_SCHOOLS_SIGMA,), {"y": EIGHT_SCHOOLS_Y}),
    "radial_velocity": (radial_velocity, (RV_T, RV_SIGMA), {"y": RV_Y}),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    model, args, kwargs = CASES[request.param]
    t = target(model, *args, **kwargs)
    x = 1.5 * jax.random.normal(jax.random.key(3), (16, t.dim))

    def neg_potential(flat):
        return -potential_energy(model, args, kwargs, t.unravel(flat))

    return t, x, jax.jit(neg_potential)


def test_log_prob_is_minus_potential_under_jit_vmap(case):
    t, x, neg_potential = case
    ref = np.array([neg_potential(xi) for xi in x])  # numpyro's own potential, point by point
    np.testing.assert_allclose(jax.jit(jax.vmap(t.log_prob))(x), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(t.log_prob(x), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_grad_log_prob_is_minus_grad_potential(case):
    t, x, neg_potential = case
    g = jax.jit(jax.vmap(jax.grad(t.log_prob)))(x)
    grad_ref = jax.jit(jax.grad(neg_potential))
    ref = np.stack([grad_ref(xi) for xi in x])
    np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_postprocess_and_init_positions(case):
    t, x, _ = case
    out = t.postprocess(x)
    assert all(v.shape[0] == x.shape[0] for v in out.values())
    x0 = t.init_positions(jax.random.key(0), 5)
    assert x0.shape == (5, t.dim) and bool(jnp.all(jnp.isfinite(t.log_prob(x0))))
    assert not np.allclose(x0[0], x0[1])


def test_eight_schools_postprocess_values():
    t = target(eight_schools, EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)
    assert t.dim == 10 and t.site_shapes == {"mu": (), "tau": (), "theta_t": (8,)}
    x = jnp.arange(10.0) / 10.0
    out = t.postprocess(x)
    tau = np.exp(0.1)  # HalfCauchy: tau = exp(x_tau)
    np.testing.assert_allclose(out["tau"], tau, rtol=1e-6)
    np.testing.assert_allclose(out["theta"], 0.0 + tau * np.arange(2, 10) / 10.0, rtol=1e-5)


def test_radial_velocity_sites():
    t = target(radial_velocity)
    assert t.dim == 8
    out = t.postprocess(jnp.zeros(8))
    assert {"P", "omega", "M0", "e", "K", "v0"} <= set(out)
    assert 2.0 < float(out["P"]) < 256.0


def test_kepler_solution_and_derivatives():
    M = jnp.linspace(-7.0, 7.0, 41)
    for e in (0.0, 0.3, 0.9, 0.99):
        E = kepler_eccentric_anomaly(M, jnp.full_like(M, e))
        resid = jnp.mod(E - e * jnp.sin(E) - M + jnp.pi, 2 * jnp.pi) - jnp.pi
        assert float(jnp.max(jnp.abs(resid))) < 1e-5
    # implicit derivative vs a central difference (float32 step 1e-2, curvature error O(h^2))
    M0, e0, h = 1.3, 0.4, 1e-2
    dE_dM = jax.grad(kepler_eccentric_anomaly, 0)(M0, e0)
    fd = (kepler_eccentric_anomaly(M0 + h, e0) - kepler_eccentric_anomaly(M0 - h, e0)) / (2 * h)
    np.testing.assert_allclose(dE_dM, fd, rtol=1e-3)
    dE_de = jax.grad(kepler_eccentric_anomaly, 1)(M0, e0)
    fd = (kepler_eccentric_anomaly(M0, e0 + h) - kepler_eccentric_anomaly(M0, e0 - h)) / (2 * h)
    np.testing.assert_allclose(dE_de, fd, rtol=1e-3)


_FLOAT64_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
from numpyro.infer.util import potential_energy
from flowsamp.numpyro import target
from flowsamp.numpyro.models import EIGHT_SCHOOLS_SIGMA, EIGHT_SCHOOLS_Y, eight_schools
t = target(eight_schools, EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)
x = jax.random.normal(jax.random.key(0), (t.dim,), jnp.float64)
assert t.log_prob(x).dtype == jnp.float64, t.log_prob(x).dtype
ref = -potential_energy(eight_schools, (EIGHT_SCHOOLS_SIGMA,), {"y": EIGHT_SCHOOLS_Y}, t.unravel(x))
np.testing.assert_allclose(t.log_prob(x), ref, rtol=1e-12)
print("ok")
"""


def test_float64():
    """Under JAX_ENABLE_X64 set at start-up (a fresh interpreter, as a user runs it; toggling
    x64 mid-process leaves float32 constants in numpyro's caches), log_prob is float64 and
    equals -potential_energy to 1e-12."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _FLOAT64_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def _discrete_model():
    z = numpyro.sample("z_cluster", dist.Bernoulli(0.3))
    numpyro.sample("y", dist.Normal(z, 1.0), obs=0.5)


def _sphere_model():
    numpyro.sample("direction", dist.ProjectedNormal(jnp.ones(3)))


def _subsample_model():
    mu = numpyro.sample("mu", dist.Normal())
    with numpyro.plate("data", 100, subsample_size=10):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=jnp.zeros(10))


@pytest.mark.parametrize(
    "model, name", [(_discrete_model, "z_cluster"), (_sphere_model, "direction"), (_subsample_model, "data")]
)
def test_unsupported_sites_raise_naming_the_site(model, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        target(model)
    with pytest.raises(ValueError, match=f"'{name}'"):
        numpyro.infer.MCMC(Kernel(model, kernel=fs.kernels.rwmh, step_size=0.1),
                           num_warmup=1, num_samples=1, progress_bar=False).run(jax.random.key(0))
