"""fs.numpyro.Kernel inside numpyro's MCMC: eight schools against a NUTS reference.

Tolerance: |mean_fs - mean_nuts| < 4 sqrt(mcse_fs^2 + mcse_nuts^2), with each MCSE
= posterior sd / sqrt(ESS) and ESS from numpyro.diagnostics over the chains.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS

import flowsamp as fs
from flowsamp.numpyro import Kernel
from flowsamp.numpyro.models import EIGHT_SCHOOLS_SIGMA, EIGHT_SCHOOLS_Y, eight_schools

ARGS, KWARGS = (EIGHT_SCHOOLS_SIGMA,), {"y": EIGHT_SCHOOLS_Y}
HMC_OPTIONS = {"step_size": 0.3, "num_integration_steps": 8}


def mean_and_mcse(samples_by_chain):
    """Posterior mean and its MCSE = sd / sqrt(ESS) for each site, from (chains, draws) arrays."""
    out = {}
    for name in ("mu", "tau"):
        x = np.asarray(samples_by_chain[name], dtype=np.float64)
        ess = float(effective_sample_size(x))
        out[name] = (x.mean(), x.std() / np.sqrt(ess), ess)
    return out


def assert_agrees(stats, ref):
    for name in ("mu", "tau"):
        (m, se, _), (m_ref, se_ref, _) = stats[name], ref[name]
        assert abs(m - m_ref) < 4.0 * np.hypot(se, se_ref), (name, stats[name], ref[name])


@pytest.fixture(scope="module")
def nuts_reference():
    mcmc = MCMC(NUTS(eight_schools), num_warmup=500, num_samples=2000, num_chains=4,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(2024), *ARGS, **KWARGS)
    return mean_and_mcse(mcmc.get_samples(group_by_chain=True))


@pytest.fixture(scope="module")
def vectorized_run():
    mcmc = MCMC(Kernel(eight_schools, kernel=fs.kernels.hmc, **HMC_OPTIONS), num_warmup=500,
                num_samples=2000, num_chains=4, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(1), *ARGS, **KWARGS)
    return mcmc


def test_vectorized_hmc_matches_nuts(vectorized_run, nuts_reference):
    stats = mean_and_mcse(vectorized_run.get_samples(group_by_chain=True))
    assert stats["mu"][2] > 200 and stats["tau"][2] > 100
    assert_agrees(stats, nuts_reference)


def test_samples_are_constrained_and_extra_fields(vectorized_run):
    samples = vectorized_run.get_samples()
    assert samples["theta"].shape == (8000, 8) and float(samples["tau"].min()) > 0.0
    extra = vectorized_run.get_extra_fields(group_by_chain=True)
    assert set(extra) >= {"accept_prob", "is_accepted", "potential_energy"}
    assert extra["accept_prob"].shape == (4, 2000)
    # dual averaging towards 0.65 (HMC's default target): the sampling-phase mean is near it
    assert 0.45 < float(extra["accept_prob"].mean()) < 0.9
    state = vectorized_run.last_state
    assert state.step_size.shape == (4,) and bool(np.all(state.step_size != HMC_OPTIONS["step_size"]))


@pytest.mark.parametrize("kernel", [None, fs.kernels.hmc], ids=["default_nuts", "hmc"])
def test_no_step_size_everything_adapted_matches_nuts(kernel, nuts_reference):
    """Kernel(model) (flowsamp NUTS) and Kernel(model, kernel=fs.kernels.hmc) with no step
    size, mass matrix or trajectory length: the step size is found and dual-averaged and the
    diagonal inverse mass adapted in Stan's windows during numpyro's warm-up."""
    kern = Kernel(eight_schools) if kernel is None else Kernel(eight_schools, kernel=kernel)
    mcmc = MCMC(kern, num_warmup=500, num_samples=1000, num_chains=4, chain_method="vectorized",
                progress_bar=False)
    mcmc.run(jax.random.key(11), *ARGS, **KWARGS)
    stats = mean_and_mcse(mcmc.get_samples(group_by_chain=True))
    assert stats["mu"][2] > 200 and stats["tau"][2] > 100
    assert_agrees(stats, nuts_reference)
    inv_mass = np.asarray(mcmc.last_state.adapt_state.inverse_mass)
    assert inv_mass.shape == (4, 10) and np.all(inv_mass > 0) and np.ptp(inv_mass) > 1.0  # adapted
    assert bool(np.all(np.isfinite(mcmc.last_state.step_size)))


def test_sequential_mala_matches_nuts(nuts_reference):
    mcmc = MCMC(Kernel(eight_schools, kernel=fs.kernels.mala, step_size=0.2), num_warmup=500,
                num_samples=3000, num_chains=2, chain_method="sequential", progress_bar=False)
    mcmc.run(jax.random.key(7), *ARGS, **KWARGS)
    assert_agrees(mean_and_mcse(mcmc.get_samples(group_by_chain=True)), nuts_reference)


def test_potential_fn_mode():
    def potential(z):
        return 0.5 * ((z["a"] - 1.0) ** 2).sum()

    mcmc = MCMC(Kernel(potential_fn=potential, kernel=fs.kernels.rwmh, scale=1.0), num_warmup=200,
                num_samples=4000, progress_bar=False)
    mcmc.run(jax.random.key(0), init_params={"a": np.zeros(2, np.float32)})
    a = np.asarray(mcmc.get_samples()["a"])
    se = 1.0 / np.sqrt(float(effective_sample_size(a[None, :, 0])))
    assert abs(a[:, 0].mean() - 1.0) < 4 * se


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        Kernel(eight_schools, potential_fn=lambda z: 0.0, kernel=fs.kernels.rwmh, scale=1.0)
    with pytest.raises(ValueError, match="target_accept_prob"):
        Kernel(eight_schools, kernel=fs.kernels.mala, step_size=0.1, target_accept_prob=1.5)


_PARALLEL_SCRIPT = textwrap.dedent(
    """
    import json, jax, numpy as np
    from numpyro.infer import MCMC
    import flowsamp as fs
    from flowsamp.numpyro import Kernel
    from flowsamp.numpyro.models import EIGHT_SCHOOLS_SIGMA, EIGHT_SCHOOLS_Y, eight_schools
    assert jax.local_device_count() == 4, jax.devices()
    mcmc = MCMC(Kernel(eight_schools, kernel=fs.kernels.hmc, step_size=0.3, num_integration_steps=8),
                num_warmup=300, num_samples=2000, num_chains=4, chain_method="parallel",
                progress_bar=False)
    mcmc.run(jax.random.key(3), EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)
    s = mcmc.get_samples(group_by_chain=True)
    print(json.dumps({k: np.asarray(s[k]).tolist() for k in ("mu", "tau")}))
    """
)


def test_parallel_on_four_cpu_devices(nuts_reference):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _PARALLEL_SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = json.loads(proc.stdout.strip().splitlines()[-1])
    assert np.shape(samples["mu"]) == (4, 2000)
    assert_agrees(mean_and_mcse(samples), nuts_reference)


@pytest.mark.slow
@pytest.mark.parametrize("chain_method", ["vectorized", "sequential"])
def test_long_runs_match_long_nuts_reference(chain_method):
    ref = MCMC(NUTS(eight_schools), num_warmup=1000, num_samples=20000, num_chains=4,
               chain_method="vectorized", progress_bar=False)
    ref.run(jax.random.key(99), *ARGS, **KWARGS)
    mcmc = MCMC(Kernel(eight_schools, kernel=fs.kernels.hmc, **HMC_OPTIONS), num_warmup=1000,
                num_samples=20000, num_chains=4, chain_method=chain_method, progress_bar=False)
    mcmc.run(jax.random.key(5), *ARGS, **KWARGS)
    stats = mean_and_mcse(mcmc.get_samples(group_by_chain=True))
    ref_stats = mean_and_mcse(ref.get_samples(group_by_chain=True))
    print(chain_method, stats, ref_stats)
    assert_agrees(stats, ref_stats)
