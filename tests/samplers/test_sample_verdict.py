"""fs.sample verdict: converged well-mixed runs, flagged stuck / divergent runs, target_ess blocks."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

CHAINS, DIM = 8, 2
TRACES = {"n": 0}


def gauss_log_prob(x):
    TRACES["n"] += 1  # counts JAX traces (a Python side effect)
    return -0.5 * jnp.sum(x**2)


GAUSS = fs.kernels.mala(gauss_log_prob, step_size=1.2)
SEP = 6.0  # two unit components 12 sigma apart: MALA never crosses


def mixture_log_prob(x):
    a = -0.5 * jnp.sum((x - jnp.array([SEP, 0.0])) ** 2)
    b = -0.5 * jnp.sum((x + jnp.array([SEP, 0.0])) ** 2)
    return jnp.logaddexp(a, b)


def mode_of(x):
    return (x[..., 0] > 0).astype(jnp.int32)


MIXTURE = fs.kernels.mala(mixture_log_prob, step_size=0.8)
X0 = jnp.asarray(np.random.default_rng(0).normal(size=(CHAINS, DIM)), jnp.float32)  # exact draws


@pytest.fixture(scope="module")
def gauss():
    with warnings.catch_warnings():
        warnings.simplefilter("error", fs.NotConvergedWarning)
        return fs.sample(jax.random.key(0), GAUSS, X0, 1000)


def test_well_mixed_gaussian_is_converged_without_warning(gauss):
    d = gauss.diagnostics
    assert gauss.converged and gauss.problems == []
    assert d["max_rhat"] < 1.01 and d["min_ess_bulk"] >= 400 and d["min_ess_tail"] >= 400
    assert d["num_nonfinite"] == 0 and d["num_chains"] == CHAINS and d["num_draws"] == 1000
    # the sample mean is within 4 SE of 0 with SE = 1 / sqrt(bulk ESS)
    assert np.all(np.abs(np.asarray(gauss.positions).mean((0, 1))) < 4 / np.sqrt(d["ess_bulk"]))


def test_chains_stuck_in_different_modes_are_flagged():
    x0 = X0 + jnp.array([SEP, 0.0]) * jnp.where(jnp.arange(CHAINS) % 2 == 0, 1.0, -1.0)[:, None]
    with pytest.warns(fs.NotConvergedWarning, match="R-hat"):
        tr = fs.sample(jax.random.key(1), MIXTURE, x0, 400, mode_of=mode_of, num_modes=2)
    assert not tr.converged
    # rank-normalised R-hat is bounded (ranks of two separated groups give about 1.7), but >> 1.01
    assert tr.diagnostics["rhat"][0] > 1.5
    assert list(tr.diagnostics["mode_visits"]) == [CHAINS // 2, CHAINS // 2]
    assert any(p.startswith("R-hat of mode indicators inf") for p in tr.problems), tr.problems


def test_chains_all_in_one_mode_say_the_other_was_never_visited():
    with pytest.warns(fs.NotConvergedWarning, match="only 1 of 2 modes visited"):
        tr = fs.sample(jax.random.key(2), MIXTURE, X0 + jnp.array([SEP, 0.0]), 400, mode_of=mode_of, num_modes=2)
    assert list(tr.diagnostics["mode_visits"]) == [0, CHAINS]


def test_summary_mode_gives_classic_rhat_and_no_ess(gauss):
    summ = fs.sample(jax.random.key(0), GAUSS, X0, 1000, keep="summary")
    assert summ.diagnostics["ess_bulk"] is None and "not available" in summ.diagnostics["ess_note"]
    assert summ.converged and summ.diagnostics["max_rhat"] < 1.01


def test_target_ess_runs_blocks_equal_to_one_long_run(gauss):
    fs.sample(jax.random.key(0), GAUSS, X0, 100, warn=False)  # compiles the 100-step block
    traces = TRACES["n"]
    tr = fs.sample(jax.random.key(0), GAUSS, X0, 100, target_ess=1500, warn=False)
    assert TRACES["n"] == traces, "the blocks of a target_ess run re-traced"
    n = tr.num_steps
    assert n > 100 and n % 100 == 0 and tr.diagnostics["min_ess_bulk"] >= 1500
    np.testing.assert_array_equal(tr.positions, gauss.positions[:, :n])
    np.testing.assert_array_equal(tr.num_accepted, np.asarray(gauss.info.is_accepted[:, :n]).sum(1))
    # pairwise-merged Welford of the blocks equals the two-pass moments (float32 rounding)
    np.testing.assert_allclose(tr.mean, np.asarray(tr.positions, np.float64).mean(1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tr.variance, np.asarray(tr.positions, np.float64).var(1), rtol=1e-4, atol=1e-5)


def test_target_ess_budget_exhausted_says_so():
    with pytest.warns(fs.NotConvergedWarning, match="target ESS 100000 not reached: min bulk ESS"):
        tr = fs.sample(jax.random.key(0), GAUSS, X0, 100, target_ess=1e5, max_steps=200)
    assert tr.num_steps == 200 and tr.positions.shape == (CHAINS, 200, DIM)
    assert tr.problems[-1].endswith("after 200 steps")


def test_bad_verdict_options_raise():
    with pytest.raises(ValueError, match="keep='all'"):
        fs.sample(0, GAUSS, X0, 10, keep="summary", target_ess=100)
    with pytest.raises(ValueError, match="pass target_ess"):
        fs.sample(0, GAUSS, X0, 10, max_steps=100)
    with pytest.raises(ValueError, match="mode_of / num_modes need keep='all'"):
        fs.sample(0, GAUSS, X0, 10, keep="summary", mode_of=mode_of)
    with pytest.raises(ValueError, match="pass mode_of too"):
        fs.sample(0, GAUSS, X0, 10, num_modes=2)
    with pytest.raises(TypeError, match="Thresholds"):
        fs.sample(0, GAUSS, X0, 10, thresholds={"rhat": 1.1})


def test_centred_eight_schools_hmc_with_dual_averaging_warns_about_divergences():
    from flowsamp.numpyro import models

    tg = fs.numpyro.target(models.eight_schools_centered, models.EIGHT_SCHOOLS_SIGMA, models.EIGHT_SCHOOLS_Y)
    factory = lambda eps: fs.kernels.hmc(tg.log_prob, eps, 10)  # noqa: E731
    warm = fs.kernels.dual_averaging_adaptation(1, factory, tg.init_positions(0, CHAINS), 300, 0.65)
    with pytest.warns(fs.NotConvergedWarning, match="divergent proposals") as rec:
        tr = fs.sample(2, factory, warm.state, 500, params=warm.step_size)
    print(rec[0].message)
    assert not tr.converged and tr.diagnostics["num_divergent"] > 0
