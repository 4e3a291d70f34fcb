"""importance_sampling: exact cases, log Z / moments / mode weights within 4 SE, batching."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.base import Flow, Proposal
from flowsamp.samplers import ISResult, importance_sampling

KEY = jax.random.key(3)
S_P = 1.5  # target N(0.5, S_P^2 I) in 2-D, unnormalised: log Z = log(2 pi S_P^2)
MU = 0.5
LOG_Z = float(np.log(2 * np.pi * S_P**2))


def log_p(x):
    return -0.5 * jnp.sum(((x - MU) / S_P) ** 2)


def gaussian_sampler(scale, loc=0.0, dim=2):
    """Callable proposal N(loc, scale^2 I): (key, n) -> (x, log q)."""

    def sample_and_log_prob(key, n):
        z = jax.random.normal(key, (n, dim))
        log_q = -0.5 * jnp.sum(z**2, -1) - dim * jnp.log(scale * jnp.sqrt(2 * jnp.pi))
        return loc + scale * z, log_q

    return sample_and_log_prob


def affine_flow(dim=2):
    def init(key):
        return {"loc": jnp.zeros(dim), "log_scale": jnp.zeros(dim)}

    def forward(p, z):
        return p["loc"] + jnp.exp(p["log_scale"]) * z, jnp.sum(p["log_scale"]) + 0 * z[..., 0]

    def inverse(p, x):
        return (x - p["loc"]) * jnp.exp(-p["log_scale"]), -jnp.sum(p["log_scale"]) + 0 * x[..., 0]

    def base(z):
        return -0.5 * jnp.sum(z**2, -1) - 0.5 * dim * jnp.log(2 * jnp.pi)

    def log_prob(p, x):
        z, ld = inverse(p, x)
        return base(z) + ld

    def sample_and_log_prob(p, key, n):
        z = jax.random.normal(key, (n, dim))
        x, ld = forward(p, z)
        return x, base(z) - ld

    return Flow(init, sample_and_log_prob, log_prob, forward, inverse, dim)


FLOW = affine_flow()
EXACT = {"loc": jnp.full(2, MU), "log_scale": jnp.full(2, np.log(S_P))}


@pytest.fixture(scope="module")
def wide():
    # proposal wider than the target (finite weight variance): N(0, 2^2 I)
    return importance_sampling(KEY, gaussian_sampler(2.0), None, log_p, 20_000, batch_size=6000)


def test_exact_proposal_gives_exact_answer():
    res = importance_sampling(KEY, FLOW, EXACT, log_p, 2000)
    assert isinstance(res, ISResult)
    # log w = log Z exactly up to float32 rounding (~1e-6): SE ~ sqrt(N/ESS - 1)/N is tiny
    assert abs(float(res.log_Z) - LOG_Z) < 1e-5 and float(res.log_Z_se) < 1e-3
    assert np.isclose(res.ess, 2000, rtol=1e-5) and np.isclose(res.ess_fraction, 1.0, rtol=1e-5)
    assert abs(float(res.elbo) - LOG_Z) < 1e-5


def test_log_Z_and_moments_within_4se(wide):
    assert abs(float(wide.log_Z) - LOG_Z) < 4 * float(wide.log_Z_se)
    mean, se = wide.expectation(lambda x: x)
    assert np.all(np.abs(np.asarray(mean) - MU) < 4 * np.asarray(se))
    m2, se2 = wide.expectation(lambda x: {"sq": (x[0] - MU) ** 2})
    assert abs(float(m2["sq"]) - S_P**2) < 4 * float(se2["sq"])
    # ELBO <= log Z (Jensen) by more than its noise; ESS/N in (0, 1)
    assert float(wide.elbo) + 4 * float(wide.elbo_se) < LOG_Z
    assert 0.0 < float(wide.ess_fraction) < 1.0
    assert wide.samples.shape == (20_000, 2) and wide.log_weights.shape == (20_000,)
    assert float(wide.pareto_k) < 0.5


def test_batching_and_observables_without_samples(wide):
    res = importance_sampling(KEY, gaussian_sampler(2.0), None, log_p, 20_000, batch_size=6000,
                              keep_samples=False, observables=lambda x: x[1])
    assert res.samples is None
    np.testing.assert_array_equal(res.log_weights, wide.log_weights)  # same keys, same draws
    m, se = res.expectation()
    m_ref, se_ref = wide.expectation(lambda x: x[1])
    assert np.isclose(m, m_ref) and np.isclose(se, se_ref)
    with pytest.raises(ValueError, match="samples were not kept"):
        res.expectation(lambda x: x)


def test_flow_proposal_and_callable_agree():
    p = {"loc": jnp.zeros(2), "log_scale": jnp.full(2, np.log(2.0))}
    a = importance_sampling(KEY, FLOW, p, log_p, 2000)
    b = importance_sampling(KEY, lambda k, n: FLOW.sample_and_log_prob(p, k, n), None, log_p, 2000)
    np.testing.assert_allclose(a.log_weights, b.log_weights, rtol=1e-5, atol=1e-5)
    prop = Proposal(lambda k: jax.tree.map(lambda v: v[0], FLOW.sample_and_log_prob(p, k, 1)),
                    lambda x: FLOW.log_prob(p, x))
    c = importance_sampling(KEY, prop, None, log_p, 2000)
    assert abs(float(c.log_Z) - LOG_Z) < 4 * float(c.log_Z_se)


def test_mode_weights_of_mixture():
    # 1/3 N(-3, 1) + 2/3 N(3, 1) in 1-D, proposal N(0, 4^2): weights within 4 SE
    def log_mix(x):
        return jnp.logaddexp(jnp.log(1 / 3) - 0.5 * (x[0] + 3) ** 2, jnp.log(2 / 3) - 0.5 * (x[0] - 3) ** 2)

    res = importance_sampling(KEY, gaussian_sampler(4.0, dim=1), None, log_mix, 20_000)
    w, se = res.mode_weights(lambda xs: (xs[:, 0] > 0).astype(jnp.int32), 2)
    # mass of each component on its own side of 0 (Phi(3) = 0.99865010)
    phi3 = 0.9986501019683699
    exact = np.array([1 / 3 * phi3 + 2 / 3 * (1 - phi3), 2 / 3 * phi3 + 1 / 3 * (1 - phi3)])
    assert np.all(np.abs(np.asarray(w) - exact) < 4 * np.asarray(se))
    assert abs(float(res.log_Z) - 0.5 * np.log(2 * np.pi)) < 4 * float(res.log_Z_se)


def test_nan_region_gets_zero_weight():
    res = importance_sampling(KEY, gaussian_sampler(2.0), None,
                              lambda x: jnp.where(x[0] > 3.0, jnp.nan, log_p(x)), 2000)
    assert res.num_nonfinite > 0 and np.isfinite(res.log_Z) and np.isfinite(res.ess)


def test_float64():
    with jax.enable_x64(True):
        res = importance_sampling(KEY, gaussian_sampler(2.0), None, log_p, 2000)
        assert res.log_weights.dtype == jnp.float64 and res.log_Z.dtype == jnp.float64


@pytest.mark.parametrize(
    "args, exc",
    [
        ((FLOW, None, log_p, 10), ValueError),  # a flow needs params
        ((gaussian_sampler(1.0), EXACT, log_p, 10), ValueError),  # params with a callable
        (("flow", None, log_p, 10), TypeError),
        ((FLOW, EXACT, log_p, 0), ValueError),
    ],
)
def test_bad_input_raises(args, exc):
    with pytest.raises(exc):
        importance_sampling(KEY, *args)


def test_top_level_name():
    assert fs.samplers.importance_sampling is importance_sampling


def test_verdict_of_good_and_heavy_tailed_proposals(wide):
    assert wide.converged and wide.problems == []
    assert wide.diagnostics["ess"] == pytest.approx(float(wide.ess), rel=1e-5)
    assert wide.diagnostics["k_hat"] == pytest.approx(float(wide.pareto_k), abs=1e-5)
    # proposal narrower than the target (N(0, 0.5^2) for N(0.5, 1.5^2)): infinite weight variance
    with pytest.warns(fs.NotConvergedWarning, match="k-hat"):
        narrow = importance_sampling(KEY, gaussian_sampler(0.5), None, log_p, 2000)
    assert not narrow.converged and narrow.diagnostics["k_hat"] > 0.7


def test_light_tailed_proposal_on_a_heavy_tailed_target_is_right_or_flagged():
    # N(0, 1.2^2 I) for a 5-D Student t_3 (a target no other test uses): the weights' variance is
    # infinite, and ln Z comes out low by ~0.05 at SEs of ~0.01 (with only k-hat > 0.7 flagged,
    # seeds 2 and 5 were confident misses: z -4.2 at k-hat 0.69, z -6.4 at 0.66)
    from scipy.special import gammaln

    d, nu = 5, 3.0
    log_z = -float(gammaln((nu + d) / 2) - gammaln(nu / 2) - d / 2 * np.log(nu * np.pi))

    def log_t(x):
        return -(nu + d) / 2 * jnp.log1p(x @ x / nu)

    for seed in range(6):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fs.NotConvergedWarning)
            out = importance_sampling(jax.random.key(seed), gaussian_sampler(1.2, dim=d), None, log_t, 20000)
        z = (float(out.log_Z) - log_z) / float(out.log_Z_se)
        assert abs(z) <= 4 or not out.converged, (seed, z, out.diagnostics["k_hat"])


def test_all_nonfinite_weights_raise_naming_the_problem():
    with pytest.raises(ValueError, match="all 100 importance weights are non-finite: log_prob is NaN at 100"):
        importance_sampling(KEY, gaussian_sampler(1.0), None, lambda x: jnp.nan * x[0], 100)
    with pytest.raises(ValueError, match="-inf at 100"):
        importance_sampling(KEY, gaussian_sampler(1.0), None, lambda x: -jnp.inf + 0 * x[0], 100)
