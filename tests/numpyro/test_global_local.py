"""fs.numpyro.global_local: flow move (IMH or i-SIR) + local move leaves the target invariant."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

import flowsamp as fs
from flowsamp.numpyro import global_local

# Two-component Gaussian mixture in 2-D: weight W of the component at +MU, sd S in each
W, MU, S = 0.3, jnp.array([2.0, 1.0]), 0.7


def log_prob(x):
    lp = lambda m: -0.5 * jnp.sum(((x - m) / S) ** 2)  # noqa: E731
    return logsumexp(jnp.array([jnp.log(W) + lp(MU), jnp.log(1 - W) + lp(-MU)]))


def exact_samples(key, n):
    k1, k2 = jax.random.split(key)
    sign = jnp.where(jax.random.uniform(k1, (n,)) < W, 1.0, -1.0)
    return sign[:, None] * MU + S * jax.random.normal(k2, (n, 2))


@pytest.fixture(scope="module")
def flow_and_params():
    # an untrained (imperfect) RealNVP: the proposal need not match the target for invariance
    flow = fs.flows.realnvp(2, num_layers=2, hidden=(8,))
    return flow, flow.init(jax.random.key(1))


@pytest.mark.parametrize("num_candidates, local", [(1, "mala"), (8, "mala"), (4, "hmc")])
def test_invariance_from_exact_samples(flow_and_params, num_candidates, local):
    """Start 4000 chains at exact draws, run 20 steps: the component-weight and the mean of
    the final positions within 4 SE of the exact values (chains independent)."""
    flow, params = flow_and_params
    n = 4000
    alg = global_local(log_prob, flow, params, 0.3, local=local, num_integration_steps=3,
                       num_candidates=num_candidates)
    trace = fs.sample(jax.random.key(2), alg, exact_samples(jax.random.key(3), n), 20)
    x = np.asarray(trace.positions[:, -1])
    assert np.all(np.isfinite(x))
    # the global move does move chains between the components
    side = np.asarray(trace.positions[..., 0]) > 0
    assert np.mean(side[:, 0] != side[:, -1]) > 0.05
    frac = np.mean(x[:, 0] > 0)  # the components overlap negligibly at x0 = 0 (2.9 sd)
    assert abs(frac - W) < 4 * np.sqrt(W * (1 - W) / n), frac
    mean = (2 * W - 1) * np.asarray(MU)
    var = S**2 + np.asarray(MU) ** 2 * (1 - (2 * W - 1) ** 2)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 4 * np.sqrt(var / n))
    assert 0.0 < float(np.mean(trace.info.acceptance_rate)) < 1.0


def test_bad_num_candidates(flow_and_params):
    flow, params = flow_and_params
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="num_candidates"):
            global_local(log_prob, flow, params, 0.1, num_candidates=bad)


def test_numpyro_warmup_tunes_the_local_step_size(flow_and_params):
    """In numpyro's MCMC, dual averaging tunes the MALA step size on the local move's
    acceptance, not on the flow move's (which the step size does not affect)."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC

    from flowsamp.numpyro import Kernel
    from flowsamp.kernels.adaptation import TARGET_ACCEPTANCE

    def model():
        numpyro.sample("x", dist.Normal(jnp.zeros(2), 1.0).to_event(1))

    flow, params = flow_and_params
    kernel = Kernel(model, kernel=global_local, flow=flow, params=params, step_size=1e-3)
    mcmc = MCMC(kernel, num_warmup=300, num_samples=10, num_chains=4, chain_method="vectorized",
                progress_bar=False)
    mcmc.run(jax.random.key(4))
    step_size = np.asarray(mcmc.last_state.step_size)
    # the local acceptance at the tuned step size, measured on exact draws
    x0 = jax.random.normal(jax.random.key(5), (2000, 2))
    alg = global_local(lambda x: -0.5 * jnp.sum(x**2), flow, params, float(step_size.mean()))
    rate = float(np.mean(fs.sample(jax.random.key(6), alg, x0, 5).info.local_acceptance_rate))
    target = TARGET_ACCEPTANCE["mala"]
    assert abs(rate - target) < 0.15, (rate, target, step_size)


def test_adaptive_flow_mcmc_trained_in_numpyro_warmup():
    """Kernel(kernel=adaptive_flow_mcmc): the flow is trained while numpyro initialises the
    chains, then every iteration is a flow IMH + MALA step. On the mixture above, written as a
    numpyro model, the chains started in one component reach the other and the component
    weight is within 4 SE (spread of per-chain fractions / sqrt(chains)) of W."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, init_to_value

    from flowsamp.numpyro import Kernel

    def model():  # posterior = the mixture exactly: the factor divides the broad prior out
        prior = dist.Normal(jnp.zeros(2), 100.0).to_event(1)
        x = numpyro.sample("x", prior)
        numpyro.factor("mixture", log_prob(x) - prior.log_prob(x))

    flow = fs.flows.rq_spline(2, num_layers=2, hidden=(16,), num_bins=8)
    kernel = Kernel(model, kernel=fs.samplers.adaptive_flow_mcmc, flow=flow, local="mala",
                    step_size=0.1, num_local_steps=20, num_global_steps=20, max_training_loops=8,
                    min_training_loops=3, num_epochs=10, init_strategy=init_to_value(values={"x": -MU}))
    chains = 64
    mcmc = MCMC(kernel, num_warmup=10, num_samples=400, num_chains=chains, chain_method="vectorized",
                progress_bar=False)
    mcmc.run(jax.random.key(7))
    assert kernel.flow_training_output is not None
    x = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    assert np.all(np.isfinite(x))
    frac = (x[..., 0] > 0).mean(axis=1)
    assert np.mean((frac > 0) & (frac < 1)) > 0.5  # most chains visit both components
    se = frac.std(ddof=1) / np.sqrt(chains)
    print("weight", frac.mean(), "se", se, "movers", np.mean((frac > 0) & (frac < 1)))
    assert abs(frac.mean() - W) < 4 * se, (frac.mean(), se)
