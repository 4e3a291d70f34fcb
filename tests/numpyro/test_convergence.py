"""fs.numpyro.verdict on numpyro MCMC runs: centred eight schools warns about divergences."""

import jax
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS

import flowsamp as fs
from flowsamp.numpyro import models


@pytest.fixture(scope="module")
def centred_nuts():
    mcmc = MCMC(NUTS(models.eight_schools_centered), num_warmup=300, num_samples=300, num_chains=4,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(0), models.EIGHT_SCHOOLS_SIGMA, y=models.EIGHT_SCHOOLS_Y,
             extra_fields=("accept_prob",))
    return mcmc


@pytest.mark.slow
def test_centred_eight_schools_nuts_warns_about_divergences(centred_nuts):
    with pytest.warns(fs.NotConvergedWarning, match="divergent proposals") as rec:
        v = fs.numpyro.verdict(centred_nuts)
    print(rec[0].message)
    diverging = np.asarray(centred_nuts.get_extra_fields()["diverging"])
    assert v.diagnostics["num_divergent"] == int(diverging.sum()) > 0
    assert not v.converged and v.diagnostics["num_chains"] == 4 and v.diagnostics["num_draws"] == 300
    # mu, tau and the 8 thetas, flattened in site order
    assert [s[0] for s in v.diagnostics["sites"]] == ["mu", "tau", "theta"]
    assert v.diagnostics["rhat"].shape == (10,) and 0 < v.diagnostics["acceptance"] <= 1


class _FakeMCMC:
    """What verdict reads from numpyro's MCMC: grouped samples and the extra fields."""

    def __init__(self, samples, extra):
        self.samples, self.extra = samples, extra

    def get_samples(self, group_by_chain=False):
        return self.samples

    def get_extra_fields(self, group_by_chain=False):
        return self.extra


def test_verdict_reads_sites_and_diverging_field():
    rng = np.random.default_rng(0)
    good = _FakeMCMC({"b": rng.normal(size=(4, 500, 2, 2)), "a": rng.normal(size=(4, 500))},
                     {"diverging": np.zeros((4, 500), bool)})
    v = fs.numpyro.verdict(good)
    assert v.converged and v.diagnostics["sites"] == [("a", 0, 1), ("b", 1, 4)]
    assert v.diagnostics["num_divergent"] == 0
    div = np.zeros((4, 500), bool)
    div[1, :7] = True
    with pytest.warns(fs.NotConvergedWarning, match="7 divergent proposals"):
        fs.numpyro.verdict(_FakeMCMC(good.samples, {"diverging": div}))


def test_verdict_rejects_non_mcmc():
    with pytest.raises(TypeError, match="numpyro MCMC"):
        fs.numpyro.verdict(object())
