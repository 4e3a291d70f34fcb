"""ArviZ: from_numpyro on fs.numpyro.Kernel runs, fs.to_arviz on plain flowsamp traces."""

import jax
import numpy as np
import pytest

arviz = pytest.importorskip("arviz")

from numpyro.infer import MCMC  # noqa: E402

import flowsamp as fs  # noqa: E402
from flowsamp.arviz import to_arviz  # noqa: E402
from flowsamp.numpyro import Kernel, target  # noqa: E402
from flowsamp.numpyro.models import EIGHT_SCHOOLS_SIGMA, EIGHT_SCHOOLS_Y, eight_schools  # noqa: E402


@pytest.fixture(scope="module")
def eight():
    return target(eight_schools, EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)


def test_from_numpyro_on_kernel_run():
    mcmc = MCMC(Kernel(eight_schools, kernel=fs.kernels.mala, step_size=0.2), num_warmup=50,
                num_samples=100, num_chains=2, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(0), EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)
    idata = arviz.from_numpyro(mcmc)
    assert idata.posterior["tau"].shape == (2, 100)
    assert idata.posterior["theta"].shape == (2, 100, 8)
    stats = idata.sample_stats
    assert {"acceptance_rate", "lp", "is_accepted"} <= set(stats.data_vars)
    # arviz's lp is -potential_energy, i.e. flowsamp's log_prob at the unconstrained draw
    pe = mcmc.get_extra_fields(group_by_chain=True)["potential_energy"]
    np.testing.assert_allclose(stats["lp"].values, -np.asarray(pe))
    assert "y" in idata.observed_data and "y" in idata.log_likelihood
    summary = arviz.summary(idata, var_names=["mu", "tau"])
    assert list(summary.index) == ["mu", "tau"]


def test_to_arviz_on_flowsamp_trace(eight):
    x0 = eight.init_positions(jax.random.key(1), 3)
    trace = fs.sample(jax.random.key(2), fs.kernels.mala(eight.log_prob, 0.1), x0, 40)
    idata = to_arviz(trace, eight)
    post = idata.posterior
    assert post["theta"].shape == (3, 40, 8) and post["mu"].shape == (3, 40)
    np.testing.assert_allclose(post["tau"].values, np.exp(np.asarray(trace.positions)[..., 1]), rtol=1e-6)
    lp = np.asarray(jax.vmap(jax.vmap(eight.log_prob))(trace.positions))
    np.testing.assert_allclose(idata.sample_stats["lp"].values, lp, rtol=1e-5)
    np.testing.assert_allclose(idata.sample_stats["acceptance_rate"].values,
                               np.asarray(trace.info.acceptance_rate))


def test_to_arviz_plain_array_and_errors():
    x = np.random.default_rng(0).normal(size=(2, 5, 3))
    idata = to_arviz(x)
    assert idata.posterior["x"].shape == (2, 5, 3)
    with pytest.raises(ValueError, match="chains, draws, dim"):
        to_arviz(x[0])
