"""tempered_smc: conjugate-Gaussian ln Z and posterior moments, bad input, NaN likelihood region."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

D, S = 3, 0.05
Y = np.array([1.0, -0.5, 0.3])


def log_lik(x):
    return jnp.sum(-0.5 * ((x - Y) / S) ** 2 - jnp.log(S) - 0.5 * np.log(2 * np.pi))


def log_prior(x):
    return jnp.sum(-0.5 * x**2 - 0.5 * np.log(2 * np.pi))


# prior N(0, 1), likelihood N(y; x, S^2) per coordinate: Z = N(y; 0, 1 + S^2), posterior
# N(y / (1 + S^2), S^2 / (1 + S^2))
EXACT_LOG_Z = float(np.sum(-0.5 * Y**2 / (1 + S**2) - 0.5 * np.log(2 * np.pi * (1 + S**2))))
POST_MEAN, POST_SD = Y / (1 + S**2), np.sqrt(S**2 / (1 + S**2))


@pytest.fixture(scope="module")
def replicates():
    outs = []
    for r in range(6):
        x0 = jax.random.normal(jax.random.key(100 + r), (1024, D))
        outs.append(fs.samplers.tempered_smc(jax.random.key(r), log_lik, log_prior, x0, num_mcmc_steps=10))
    return outs


def test_log_Z_within_4_se_of_exact(replicates):
    """ln Z over 6 independent runs: mean within 4 SE (spread of the runs) of the closed form."""
    lz = np.array([o.log_Z for o in replicates])
    se = lz.std(ddof=1) / np.sqrt(len(lz))
    assert abs(lz.mean() - EXACT_LOG_Z) < 4 * se, (lz, EXACT_LOG_Z)
    assert all(o.betas[-1] == 1.0 and np.all(np.diff(o.betas) > 0) for o in replicates)


def test_posterior_moments(replicates):
    """Per-run posterior mean and sd: their averages over runs within 4 SE of the exact ones
    (SE from the spread of the runs, which includes the particles' correlation)."""
    for stat, exact in ((lambda p: p.mean(0), POST_MEAN), (lambda p: p.std(0), POST_SD)):
        vals = np.stack([stat(np.asarray(o.particles)) for o in replicates])
        se = vals.std(0, ddof=1) / np.sqrt(len(vals))
        assert np.all(np.abs(vals.mean(0) - exact) < 4 * se), (vals.mean(0), exact, se)


def test_nan_likelihood_region_is_rejected_not_propagated():
    """A likelihood that is NaN for x_0 > 2 (no posterior mass there) leaves no NaN particle."""
    def ll(x):
        return jnp.where(x[0] > 2.0, jnp.nan, log_lik(x))

    x0 = jax.random.normal(jax.random.key(7), (512, D))
    out = fs.samplers.tempered_smc(jax.random.key(8), ll, log_prior, x0, num_mcmc_steps=5)
    assert np.all(np.isfinite(np.asarray(out.particles))) and np.isfinite(out.log_Z)


def test_bad_input_errors():
    x0 = jnp.zeros((16, D))
    with pytest.raises(ValueError, match="shape"):
        fs.samplers.tempered_smc(jax.random.key(0), log_lik, log_prior, jnp.zeros(D))
    with pytest.raises(ValueError, match="target_ess"):
        fs.samplers.tempered_smc(jax.random.key(0), log_lik, log_prior, x0, target_ess=1.5)
    with pytest.raises(ValueError, match="initial particle"):
        fs.samplers.tempered_smc(jax.random.key(0), log_lik, log_prior, x0.at[3, 0].set(jnp.nan))
    with pytest.raises(TypeError, match="floating"):
        fs.samplers.tempered_smc(jax.random.key(0), log_lik, log_prior, jnp.zeros((16, D), jnp.int32))


def test_runs_in_float64(x64):
    x0 = jax.random.normal(jax.random.key(3), (256, D), dtype=jnp.float64)
    out = fs.samplers.tempered_smc(jax.random.key(4), log_lik, log_prior, x0, num_mcmc_steps=5)
    assert out.particles.dtype == jnp.float64 and np.isfinite(out.log_Z)


def test_verdict_converged_and_max_steps_flagged(replicates):
    out = replicates[0]
    assert out.converged and out.problems == []
    d = out.diagnostics
    assert d["num_steps"] == out.num_steps and d["final_beta"] == 1.0 and d["min_acceptance"] >= 0.05
    assert d["final_ess"] == pytest.approx(out.ess[-1] * 1024)
    x0 = jax.random.normal(jax.random.key(100), (1024, D))
    with pytest.warns(fs.NotConvergedWarning, match="beta reached only"):
        short = fs.samplers.tempered_smc(jax.random.key(0), log_lik, log_prior, x0, num_mcmc_steps=10, max_steps=2)
    assert not short.converged and short.num_steps == 2 and short.betas[-1] < 1.0


def test_acceptance_collapse_is_flagged(replicates):
    # a scale of 100 prior sds with one move per step: almost nothing is accepted
    x0 = jax.random.normal(jax.random.key(100), (1024, D))
    with pytest.warns(fs.NotConvergedWarning, match="move acceptance"):
        out = fs.samplers.tempered_smc(jax.random.key(0), log_lik, log_prior, x0, num_mcmc_steps=1,
                                       initial_scale=100.0, max_steps=3)
    assert out.diagnostics["min_acceptance"] < 0.05
