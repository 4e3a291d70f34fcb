"""Estimators against closed forms; tolerances are 4 standard errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

SIGMA_P = 1.3  # target p(x) = exp(-x^2 / (2 sigma_p^2)), Z = sqrt(2 pi) sigma_p


def _gaussian_is(key, n, dtype=jnp.float32):
    """log w for p = unnormalised N(0, SIGMA_P^2) with proposal q = N(0, 1)."""
    x = jax.random.normal(key, (n,), dtype)
    log_q = -0.5 * x**2 - 0.5 * jnp.log(2 * jnp.pi)
    log_p = -0.5 * x**2 / SIGMA_P**2
    return x, log_p - log_q


def test_ess_exact_cases():
    assert np.isclose(fs.estimators.ess(jnp.zeros(100)), 100.0, rtol=1e-6)
    assert np.isclose(fs.estimators.ess(jnp.array([0.0, -1e4, -1e4])), 1.0, rtol=1e-6)
    lw = jnp.array([0.0, jnp.log(3.0)])  # weights 1, 3: (4)^2 / (1 + 9)
    assert np.isclose(fs.estimators.ess(lw), 1.6, rtol=1e-6)
    # scale invariant, no overflow; float32 rounds 500 + ln 3 to an ulp of 3e-5, hence rtol 1e-4
    assert np.isclose(fs.estimators.ess(lw + 500.0), 1.6, rtol=1e-4)
    w = fs.estimators.normalized_weights(jnp.array([0.0, jnp.nan, jnp.log(3.0)]))
    np.testing.assert_allclose(w, [0.25, 0.0, 0.75], rtol=1e-6)


def test_log_evidence_matches_closed_form():
    _, lw = _gaussian_is(jax.random.key(1), 20_000)
    log_Z, se = fs.estimators.log_evidence(lw)
    exact = np.log(np.sqrt(2 * np.pi) * SIGMA_P)
    assert 0 < se < 0.05
    assert abs(log_Z - exact) < 4 * se


def test_log_evidence_standard_error_is_calibrated():
    """The spread of ln Z over independent replicates equals the reported SE."""
    reps, n = 400, 2000
    keys = jax.random.split(jax.random.key(2), reps)
    log_Z, se = jax.vmap(lambda k: fs.estimators.log_evidence(_gaussian_is(k, n)[1]))(keys)
    spread = np.std(np.asarray(log_Z), ddof=1)
    # sd of a sample standard deviation over R replicates is about spread / sqrt(2 (R - 1))
    assert abs(spread - np.mean(se)) < 4 * spread / np.sqrt(2 * (reps - 1))


def test_expectation_weighted_and_plain():
    x, lw = _gaussian_is(jax.random.key(3), 20_000)
    mean, se = fs.estimators.expectation(x**2, lw)
    assert abs(mean - SIGMA_P**2) < 4 * se
    both, se2 = fs.estimators.expectation(jnp.stack([x, x**2], axis=1), lw)
    assert both.shape == (2,) and se2.shape == (2,)
    assert abs(both[0]) < 4 * se2[0]
    plain, plain_se = fs.estimators.expectation(x**2)
    assert abs(plain - 1.0) < 4 * plain_se


def test_mode_weights_three_regimes():
    p = np.array([0.2, 0.3, 0.5])
    labels = jax.random.choice(jax.random.key(4), 3, (8, 2000), p=jnp.asarray(p))
    w_mcmc, se_mcmc = fs.estimators.mode_weights(labels, 3)
    w_iid, se_iid = fs.estimators.mode_weights(labels.reshape(-1), 3)
    assert np.all(np.abs(w_mcmc - p) < 4 * se_mcmc)
    assert np.all(np.abs(w_iid - p) < 4 * se_iid)
    # importance weights: draw labels uniformly, reweight to p
    flat = jax.random.choice(jax.random.key(5), 3, (20_000,))
    w_is, se_is = fs.estimators.mode_weights(flat, 3, jnp.log(jnp.asarray(p))[flat])
    assert np.all(np.abs(w_is - p) < 4 * se_is)
    with pytest.raises(TypeError, match="integers"):
        fs.estimators.mode_weights(jnp.zeros(4), 3)


@pytest.mark.parametrize("k", [0.3, 0.8])
def test_pareto_k_recovers_generalized_pareto_shape(k):
    """Weights u^(-k) have a Pareto tail of shape k; the ML SE is (1 + k) / sqrt(M)."""
    n = 20_000
    u = jax.random.uniform(jax.random.key(6), (n,), minval=1e-12)
    k_hat = fs.estimators.pareto_k(-k * jnp.log(u))
    m = min(int(np.ceil(0.2 * n)), int(np.ceil(3 * np.sqrt(n))))
    assert abs(k_hat - k) < 4 * (1 + k) / np.sqrt(m)


def test_pareto_k_compiled_equals_op_by_op_on_extreme_weights():
    """pareto_k is one jitted program; on log-weights spanning float32's whole range (Cauchy x 5:
    the tail exceedances are the smallest normal float but one) the compiled profile likelihood
    must not overflow where the op-by-op one does not (it did: k-hat NaN instead of 1.45)."""
    rng = np.random.default_rng(8)
    for scale in (5.0, 20.0):
        lw = rng.standard_cauchy(2000) * scale
        with jax.disable_jit():
            eager = float(fs.estimators.pareto_k(lw))
        compiled = float(fs.estimators.pareto_k(lw))
        assert np.isfinite(eager) and eager > 0.7
        assert abs(compiled - eager) < 1e-4 * max(1.0, abs(eager))


def test_pareto_k_with_tied_weights():
    """Repeated states (a discrete target) tie weights with the tail threshold: the ties carry
    no tail information and are left out, so a Pareto tail of shape k under a block of tied
    weights is still recovered, bounded (few-valued) weights give k-hat < 0.5, and a tail made
    only of ties has no k-hat (NaN) instead of a spurious k-hat of ~10."""
    k, n = 0.5, 20_000
    u = jax.random.uniform(jax.random.key(7), (n,), minval=1e-12)
    tied = jnp.concatenate([-k * jnp.log(u), jnp.full((n // 4,), 2.0)])
    m = min(int(np.ceil(0.2 * tied.shape[0])), int(np.ceil(3 * np.sqrt(tied.shape[0]))))
    assert abs(fs.estimators.pareto_k(tied) - k) < 4 * (1 + k) / np.sqrt(m)
    levels = jax.random.choice(jax.random.key(8), jnp.log(jnp.array([1.0, 2.0, 3.0, 50.0])), (4000,),
                               p=jnp.array([0.5, 0.3, 0.19, 0.01]))
    assert fs.estimators.pareto_k(levels) < 0.5
    assert np.isnan(fs.estimators.pareto_k(jnp.log(jnp.array([1.0, 1.1] * 2000))))


def test_bad_log_weights():
    with pytest.raises(ValueError, match="1-D"):
        fs.estimators.ess(jnp.zeros((3, 2)))
    with pytest.raises(TypeError, match="floating"):
        fs.estimators.log_evidence(jnp.zeros(3, jnp.int32))


def _ar1(key, chains, n, rho):
    eps = jax.random.normal(key, (n, chains))

    def step(x, e):
        x = rho * x + jnp.sqrt(1 - rho**2) * e
        return x, x

    _, xs = jax.lax.scan(step, eps[0], eps[1:])
    return np.asarray(xs.T)


def test_mcmc_diagnostics_on_ar1():
    """AR(1) with coefficient rho has tau = (1 + rho) / (1 - rho)."""
    rho = 0.8
    x = _ar1(jax.random.key(7), 8, 20_001, rho)
    tau = fs.estimators.integrated_autocorr_time(x)
    tau_exact = (1 + rho) / (1 - rho)
    # Sokal: relative sd of a windowed tau estimate is sqrt(2 (2M + 1) / N), window M ~ 5 tau
    n_total = x.shape[0] * x.shape[1]
    rel_se = np.sqrt(2 * (2 * 5 * tau_exact + 1) / n_total)
    assert abs(float(tau) - tau_exact) / tau_exact < 4 * rel_se
    assert float(fs.estimators.rhat(x)) < 1.01
    shifted = x + np.arange(8)[:, None]
    assert float(fs.estimators.rhat(shifted)) > 1.5
    acf = fs.estimators.autocorrelation(x)
    assert abs(acf[0, 1] - rho) < 0.02
    with pytest.raises(ValueError, match="chains, draws"):
        fs.estimators.mcmc_ess(np.zeros(10))


def test_estimators_run_in_float64():
    with jax.enable_x64(True):
        x, lw = _gaussian_is(jax.random.key(8), 5000, jnp.float64)
        log_Z, se = fs.estimators.log_evidence(lw)
        mean, _ = fs.estimators.expectation(x**2, lw)
        assert log_Z.dtype == jnp.float64 and se.dtype == jnp.float64
        assert mean.dtype == jnp.float64
        assert fs.estimators.ess(lw).dtype == jnp.float64
        assert fs.estimators.pareto_k(lw).dtype == jnp.float64
        assert abs(log_Z - np.log(np.sqrt(2 * np.pi) * SIGMA_P)) < 4 * se
