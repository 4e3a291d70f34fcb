"""Defaults of adaptive_flow_mcmc that stop when the result is there: the stopping rules on
synthetic histories, the tempered-SMC warm start, and (slow) the acceptance cases of issue 12."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.samplers import _flow_mcmc_stopping as stop
from flowsamp.samplers._flow_mcmc_explore import default_base_scale, explore

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------ stopping rules


def test_plateau_needs_flat_and_useful_acceptance():
    kw = dict(patience=2, tol=0.02, min_acceptance=0.1)
    assert not stop.plateaued([0.1, 0.2, 0.3, 0.4], **kw)  # still rising
    assert stop.plateaued([0.1, 0.4, 0.41, 0.40], **kw)
    assert not stop.plateaued([0.01, 0.02, 0.02, 0.02], **kw)  # flat but useless
    assert not stop.plateaued([0.4, 0.4], **kw)  # too short


def test_drift_z_sees_a_trend_and_not_noise():
    iid = RNG.normal(size=(64, 100))
    assert abs(stop.log_prob_drift(iid)) < 4
    trend = iid + np.linspace(0, 1, 100)  # chains still climbing
    assert stop.log_prob_drift(trend) > 10
    assert stop.log_prob_drift(np.ones((8, 10))) == 0.0


def test_mixing_flags_chains_that_disagree():
    iid = RNG.normal(size=(64, 100))
    assert stop.mixing(iid).ok
    offset = iid + (np.arange(64) % 2)[:, None]  # half the chains in a region of higher log p
    check = stop.mixing(offset)
    assert not check.ok and check.rhat_log_prob > 1.1 and "R-hat of log p" in check.reasons[0]


def test_mixing_flags_mode_indicators_but_not_one_shared_mode():
    lp = RNG.normal(size=(64, 100))
    stuck = np.repeat((np.arange(64) % 2)[:, None], 100, axis=1)  # each chain sits in its own mode
    check = stop.mixing(lp, stuck, 2)
    assert not check.ok and any("mode indicators" in r for r in check.reasons)
    mixed = RNG.integers(0, 2, size=(64, 100))
    assert stop.mixing(lp, mixed, 2).ok
    # all chains in one mode: R-hat cannot see the other one (why the default explores first)
    assert stop.mixing(lp, np.zeros((64, 100), int), 2).ok


def test_production_budget_and_geometric_checks():
    assert stop.production_done(1000.0, 500, target_ess=1000, max_steps=10_000)
    assert not stop.production_done(999.0, 500, target_ess=1000, max_steps=10_000)
    assert stop.production_done(10.0, 10_000, target_ess=1000, max_steps=10_000)
    assert stop.next_check(1000, 100, 500.0, 1000) == 1500  # halfway to the predicted 2000
    assert stop.next_check(1000, 100, 990.0, 1000) == 1200  # at least 20 % later
    assert "max_steps=10000" in stop.budget_problem(512.3, 1000, 10_000)


def test_clustered_start_sentence():
    x0 = 0.01 * RNG.normal(size=(16, 3))
    assert stop.clustered_start_problem(x0, np.ones(3)) == stop.CLUSTERED_PROBLEM
    assert stop.clustered_start_problem(RNG.normal(size=(16, 3)), np.ones(3)) is None


# ------------------------------------------------------------------ exploration


@pytest.fixture(scope="module")
def two_modes():
    return fs.targets.mixture_benchmark(2, 2, 8.0, (0.3, 0.7), 0)


@pytest.fixture(scope="module")
def explored(two_modes):
    t = two_modes
    x0 = jnp.asarray(t.means[0], jnp.float32) + 0.1 * jax.random.normal(jax.random.key(1), (32, 2))
    flow = fs.flows.realnvp(2, num_layers=2, hidden=(8,))
    return explore(jax.random.key(0), t.log_prob, flow, x0, num_particles=512, num_fit_steps=100), x0


def test_default_base_is_over_dispersed():
    x0 = np.zeros((4, 2)) + np.array([[0.0, 0.0], [0.0, 4.0], [0.0, 0.0], [0.0, 4.0]])
    np.testing.assert_allclose(default_base_scale(x0), [5.0, 10.0])


def test_exploration_from_one_mode_finds_the_other(explored, two_modes):
    ex, _ = explored
    labels = np.asarray(two_modes.mode_of(ex.smc.particles))
    frac = np.bincount(labels, minlength=2) / labels.size
    # power, not accuracy: each mode holds at least half its exact share (exact 0.3 / 0.7)
    assert np.all(frac >= 0.5 * np.asarray(two_modes.mode_weights)), frac
    assert set(np.asarray(two_modes.mode_of(ex.seeds)).tolist()) == {0, 1}


def test_seeds_come_from_held_out_particles(explored):
    ex, x0 = explored
    assert ex.seeds.shape == x0.shape
    train = {tuple(r) for r in np.asarray(ex.train).tolist()}
    val = {tuple(r) for r in np.asarray(ex.validation).tolist()}
    assert all(tuple(r) in val for r in np.asarray(ex.seeds).tolist())
    assert ex.train.shape[0] + ex.validation.shape[0] == 512 and len(train) > 0


def test_preconditioned_flow_starts_at_the_particle_gaussian(explored):
    ex, _ = explored
    assert ex.affine is not None and ex.affine.is_full
    np.testing.assert_allclose(ex.affine.loc, np.asarray(ex.train, np.float64).mean(0), rtol=1e-5, atol=1e-5)
    x, lq = ex.flow.sample_and_log_prob(ex.params, jax.random.key(2), 64)
    np.testing.assert_allclose(ex.flow.log_prob(ex.params, x), lq, rtol=1e-4, atol=1e-3)


def test_own_particles_and_bad_options(two_modes):
    t = two_modes
    flow = fs.flows.realnvp(2, num_layers=1, hidden=(4,))
    x0 = jnp.zeros((8, 2))
    parts = t.sample(jax.random.key(3), 64)
    ex = explore(jax.random.key(0), t.log_prob, flow, x0, particles=parts, precondition=False, num_fit_steps=0)
    assert ex.smc is None and ex.affine is None and ex.flow is flow
    with pytest.raises(ValueError, match="positive"):
        explore(jax.random.key(0), t.log_prob, flow, x0, base_scale=0.0)
    with pytest.raises(ValueError, match="shape"):
        explore(jax.random.key(0), t.log_prob, flow, x0, particles=parts[:, :1])
