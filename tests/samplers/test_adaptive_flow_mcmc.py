"""Adaptive global-local flow MCMC: options, shapes, resume/checkpoint, exactness, modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.samplers._flow_mcmc_config import make_config
from flowsamp.samplers.adaptive_flow_mcmc import AdaptiveFlowState, adaptive_flow_mcmc, init_state

MEAN = np.array([1.0, -2.0])
STD = np.array([0.5, 2.0])
SMALL = dict(num_local_steps=10, num_global_steps=10, max_training_loops=6, min_training_loops=2,
             num_production_loops=20, num_epochs=5, buffer_points_per_chain=8)


def gauss_log_prob(x):
    return -0.5 * jnp.sum(((x - MEAN.astype(x.dtype)) / STD.astype(x.dtype)) ** 2)


@pytest.fixture(scope="module")
def small_flow():
    return fs.flows.realnvp(2, num_layers=2, hidden=(8,), affine=True)


@pytest.fixture(scope="module")
def small_run(small_flow):
    x0 = jnp.zeros((64, 2)) + jnp.array([3.0, 3.0])
    return adaptive_flow_mcmc(jax.random.key(0), gauss_log_prob, small_flow, x0, **SMALL)


def test_output_shapes_and_history(small_run):
    out = small_run
    n_prod = int(np.sum(out.history["phase"] == 1))  # at least num_production_loops, then until target_ess
    assert n_prod >= SMALL["num_production_loops"]
    steps = n_prod * (SMALL["num_local_steps"] + SMALL["num_global_steps"])
    assert out.positions.shape == (64, steps, 2) and out.log_prob.shape == (64, steps)
    loops = out.num_training_loops + n_prod
    assert out.history["global_acceptance"].shape == (loops,)
    assert out.history["positions"].shape == (loops, 64, 2)
    assert SMALL["min_training_loops"] <= out.num_training_loops <= SMALL["max_training_loops"]
    assert 0.0 < out.local_acceptance <= 1.0 and 0.0 < out.global_acceptance <= 1.0
    assert isinstance(out.state, AdaptiveFlowState) and bool(out.state.training_done)
    np.testing.assert_allclose(out.log_prob[:, -1], jax.vmap(gauss_log_prob)(out.positions[:, -1]), rtol=1e-5)


def test_production_samples_are_exact(small_run):
    """Production means within 4 SE (SE from numpyro's ESS) of the exact Gaussian means."""
    x = np.asarray(small_run.positions)
    ess = fs.estimators.mcmc_ess(x)
    se = STD / np.sqrt(ess)
    assert np.all(np.abs(x.reshape(-1, 2).mean(0) - MEAN) < 4 * se), (x.reshape(-1, 2).mean(0), se)


def test_resume_and_checkpoint(small_run, small_flow, tmp_path):
    path = str(tmp_path / "state.msgpack")
    fs.io.save(path, small_run.state)
    state = fs.io.load(path, small_run.state)
    out = adaptive_flow_mcmc(jax.random.key(1), gauss_log_prob, small_run.flow, state.position, initial_state=state,
                             checkpoint_path=path, **{**SMALL, "num_production_loops": 2, "target_ess": None})
    assert out.num_training_loops == 0  # training was finished: resume goes straight to production
    assert out.positions.shape[1] == 2 * (SMALL["num_local_steps"] + SMALL["num_global_steps"])
    assert int(out.state.loop) == int(small_run.state.loop) + 2
    meta = fs.io.read_meta(path)  # the checkpoint is the whole run (see test_adaptive_flow_mcmc_resume.py)
    assert meta["sampler"] == "adaptive_flow_mcmc" and meta["n_hist"] == 2 and meta["phase"] == "production"


def test_options_are_validated(small_flow):
    x0 = jnp.zeros((4, 2))
    with pytest.raises(TypeError, match="unknown option"):
        adaptive_flow_mcmc(jax.random.key(0), gauss_log_prob, small_flow, x0, num_local_stepz=3)
    with pytest.raises(ValueError, match="num_epochs"):
        adaptive_flow_mcmc(jax.random.key(0), gauss_log_prob, small_flow, x0, num_epochs=0)
    with pytest.raises(ValueError, match="local"):
        adaptive_flow_mcmc(jax.random.key(0), gauss_log_prob, small_flow, x0, local="nuts")
    with pytest.raises(ValueError, match="shape"):
        adaptive_flow_mcmc(jax.random.key(0), gauss_log_prob, small_flow, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="chain 2"):
        adaptive_flow_mcmc(jax.random.key(0), gauss_log_prob, small_flow, x0.at[2, 0].set(jnp.nan))


def test_symmetrized_density_is_the_group_average(small_flow):
    params = small_flow.init(jax.random.key(3))
    params = jax.tree.map(lambda l: l + 0.3, params)  # non-symmetric flow
    q = fs.flows.symmetrize(small_flow, (lambda x: -x,))
    x, lq = q.sample_and_log_prob(params, jax.random.key(4), 5)
    expected = jnp.logaddexp(small_flow.log_prob(params, x), small_flow.log_prob(params, -x)) - jnp.log(2.0)
    np.testing.assert_allclose(lq, expected, rtol=1e-5)
    np.testing.assert_allclose(q.log_prob(params, x), expected, rtol=1e-5)
    assert fs.flows.symmetrize(small_flow, ()) is small_flow
    with pytest.raises(NotImplementedError, match="bijection"):
        q.forward(params, x)


def test_production_from_exact_mixture_samples_is_exact():
    """Chains started from exact draws of the 2-D four-mode mixture, production only, with a
    poor flow (random non-symmetric parameters, off-centre shift, symmetrised over the sign
    flips so that it proposes every mode): mode weights, means and second moments stay
    within 4 SE of the exact ones, while the flow does move chains between modes."""
    t = fs.targets.four_mode_mixture(2)
    flow = fs.flows.realnvp(2, num_layers=2, hidden=(8,), affine=True)
    params = jax.tree.map(lambda leaf: leaf + 0.3, flow.init(jax.random.key(3)))
    params["layers"][-1]["shift"] = jnp.array([4.0, 6.0])
    x0 = t.sample(jax.random.key(4), 64)
    cfg = make_config(**SMALL, symmetries=(_flip(0), _flip(1), _flip01))
    state = init_state(jax.random.key(5), t.log_prob, flow, x0, cfg, params)._replace(training_done=jnp.array(True))
    out = adaptive_flow_mcmc(jax.random.key(6), t.log_prob, flow, x0, initial_state=state,
                             **{**SMALL, "num_production_loops": 25}, symmetries=cfg.symmetries)
    assert out.num_training_loops == 0 and out.global_acceptance > 0.02  # the flow moves chains
    w, se = fs.estimators.mode_weights(t.mode_of(out.positions), 4)
    print(f"global acc {out.global_acceptance:.3f}, weights {np.asarray(w)} +- {np.asarray(se)}")
    assert np.all(np.abs(np.asarray(w) - t.mode_weights) < 4 * np.asarray(se)), (w, se)
    means = np.asarray(t.means)
    exact = {"x": t.mode_weights @ means, "x^2": t.mode_weights @ (means**2 + 1.0)}
    x = np.asarray(out.positions, np.float64)
    for name, f in (("x", x), ("x^2", x**2)):
        ess = np.asarray(fs.estimators.mcmc_ess(f))
        se_f = f.reshape(-1, 2).std(0) / np.sqrt(ess)
        assert np.all(np.abs(f.reshape(-1, 2).mean(0) - exact[name]) < 4 * se_f), (name, f.reshape(-1, 2).mean(0), se_f)


# ---------------------------------------------------------------- slow acceptance runs

def _flip(i):
    return lambda x: x.at[..., i].multiply(-1.0)


def _flip01(x):
    return x.at[..., :2].multiply(-1.0)


@pytest.mark.slow
@pytest.mark.parametrize("dim", [2, 10])
def test_four_mode_mixture_from_one_mode(dim):
    """All chains start in the (+,+) mode; recovered weights within 0.01 of 0.1/0.2/0.3/0.4."""
    t = fs.targets.four_mode_mixture(dim)
    s = 5.0 if dim == 2 else 4.0
    x0 = jnp.zeros((100, dim)).at[:, :2].set(s) + 0.1 * jax.random.normal(jax.random.key(1), (100, dim))
    flow = fs.flows.rq_spline(dim, num_layers=4, hidden=(32, 32), num_bins=8)
    out = adaptive_flow_mcmc(jax.random.key(2), t.log_prob, flow, x0, symmetries=(_flip(0), _flip(1), _flip01),
                             num_local_steps=20, num_global_steps=50, max_training_loops=25, min_training_loops=4,
                             num_production_loops=100, num_epochs=10, buffer_points_per_chain=20)
    w, se = fs.estimators.mode_weights(t.mode_of(out.positions), 4)
    err = np.max(np.abs(np.asarray(w) - t.mode_weights))
    print(f"dim={dim} weights={np.asarray(w)} se={np.asarray(se)} max err={err:.4f} wall={out.wall_s:.1f}s")
    assert err < 0.01


@pytest.mark.slow
def test_phi4_from_one_mode_vs_plain_mala():
    """phi^4 (N=64, a=0.1, beta=20, b=0), all chains in the + mode: the flow sampler finds
    weight 1/2 within 4 SE; plain MALA with the same number of local+global steps stays stuck."""
    t = fs.targets.phi4_1d(N=64, a=0.1, beta=20.0, b=0.0)
    prof = np.sin(np.pi * (np.arange(64) + 1) / 65.0)
    x0 = jnp.asarray(np.tile(prof, (64, 1)), jnp.float32)
    base = fs.flows.informed_gaussian(fs.flows.phi4_1d_precision(64, a=0.1, beta=20.0))
    flow = fs.flows.rq_spline(64, num_layers=4, hidden=(64,), num_bins=8, base=base)
    sched = dict(num_local_steps=100, num_global_steps=50, max_training_loops=30, min_training_loops=4,
                 num_production_loops=40, num_epochs=10, buffer_points_per_chain=20, step_size=1e-3)
    params = flow.init(jax.random.key(0))
    params["layers"][-1]["shift"] = x0.mean(0)  # data-dependent init of the final affine layer
    out = adaptive_flow_mcmc(jax.random.key(5), t.log_prob, flow, x0, params=params, symmetries=(lambda x: -x,), **sched)
    w, se = fs.estimators.mode_weights(t.mode_of(out.positions), 2)
    w, se = np.asarray(w), np.asarray(se)
    # plain MALA, same total number of steps per chain, same start
    n_steps = (out.num_training_loops + sched["num_production_loops"]) * (sched["num_local_steps"] + sched["num_global_steps"])
    alg = fs.kernels.mala(t.log_prob, step_size=float(out.history["step_size"][-1]))
    trace = fs.sample(jax.random.key(6), alg, x0, n_steps)
    w_mala, _ = fs.estimators.mode_weights(t.mode_of(trace.positions), 2)
    print(f"flow: w+={w[1]:.4f} +- {se[1]:.4f}, glob acc={out.global_acceptance:.3f}; MALA w+={float(w_mala[1]):.4f}")
    assert abs(w[1] - 0.5) < 4 * se[1]
    assert float(w_mala[1]) == 1.0


def test_hmc_local_steps_keep_the_gaussian(small_flow):
    """local="hmc" runs (regression: the HMC module was shadowed by its constructor) and its
    production means stay within 4 SE of the exact ones."""
    x0 = jnp.zeros((32, 2)) + jnp.asarray(MEAN)
    sched = {**SMALL, "max_training_loops": 2, "num_production_loops": 10}
    out = adaptive_flow_mcmc(jax.random.key(3), gauss_log_prob, small_flow, x0, local="hmc", **sched)
    x = np.asarray(out.positions)
    se = STD / np.sqrt(fs.estimators.mcmc_ess(x))
    assert 0.0 < out.local_acceptance <= 1.0
    assert np.all(np.abs(x.reshape(-1, 2).mean(0) - MEAN) < 4 * se)


def test_continuous_flow_log_q_is_checked_before_the_global_moves():
    """A 2-step midpoint CNF has an inexact log q: the sampler refuses it (check_log_q) before
    the first global MH test, rather than running a biased chain."""
    from tests.flows.conftest import perturb

    coarse = fs.flows.cnf(2, hidden=(8,), num_steps=2, solver="midpoint")
    params = perturb(coarse.init(jax.random.key(0)), jax.random.key(1), 0.4)  # a non-zero field (init is exact)
    x0 = jnp.zeros((8, 2))
    with pytest.raises(fs.flows.InexactLogQError, match="adaptive_flow_mcmc"):
        adaptive_flow_mcmc(jax.random.key(0), gauss_log_prob, coarse, x0, params=params, explore=False, **SMALL)
