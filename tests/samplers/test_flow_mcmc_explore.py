"""The exploration of the adaptive flow sampler widens its base until no new spread is found.

A start in one mode of a three-mode mixture whose third mode lies 36σ away: the first tempered-SMC
round from :math:`\\mathcal N(\\bar x_0, 5^2 I)` finds the two near modes and loses the far one
(on the geometric path its mass is suppressed by ~r²/(2 s²) ≈ 26 nats: no particle reaches it),
which is what the exploration did before it grew its base. The rule
:math:`s = 5\\max(1, \\sigma_{\\max})` applied to the particles found asks for a ~6× wider base, and
the second round from it recovers every mode's weight.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.samplers._flow_mcmc_explore import (
    CHECK_MIN_PARTICLES, CHECK_REUSE_WORK, EXPLORE_CHECK, EXPLORE_GROWTH, _tempered_round, check_size, explore,
    population_spread)

MEANS = np.array([[0.0, 0.0], [12.0, 0.0], [6.0, 36.0]], np.float32)


@pytest.fixture(scope="module")
def target():
    return fs.targets.gaussian_mixture(MEANS, 1.0)


@pytest.fixture(scope="module")
def exploration(target):
    x0 = np.asarray(jax.random.normal(jax.random.key(1), (16, 2)), np.float32)  # all chains in mode 0
    return explore(jax.random.key(0), target.log_prob, fs.flows.rq_spline(2), x0, num_fit_steps=0, max_rounds=2)


def test_population_spread_is_the_largest_sd_in_any_direction():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4000, 3))
    z = (z - z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z.T))).T  # exactly whitened
    rot = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    x = (z * np.array([0.5, 3.0, 1.0])) @ rot.T
    assert population_spread(x) == pytest.approx(3.0, rel=1e-6)


def test_far_mode_found_by_a_wider_second_round(target, exploration):
    first, second = exploration.rounds
    assert first["base_scale_max"] == pytest.approx(5.0)
    # the first round saw the two near modes only: their spread asks for a base >= EXPLORE_GROWTH wider
    assert 5.0 * first["spread"] / first["base_scale_max"] >= EXPLORE_GROWTH
    assert second["base_scale_min"] == pytest.approx(5.0 * first["spread"])
    x = np.asarray(exploration.smc.particles)
    n = x.shape[0]
    frac = np.bincount(np.asarray(jax.vmap(target.mode_of)(x)), minlength=3) / n
    # SMC weight of a mode: each of the T resampling steps (after ESS >= N/2 reweighting) adds at
    # most 2 p(1-p)/N to its variance, so sd <= sqrt(2 T p (1-p) / N); 4 sd tolerance
    p = 1.0 / 3.0
    se = np.sqrt(2 * second["num_steps"] * p * (1 - p) / n)
    np.testing.assert_array_less(np.abs(frac - p), 4 * se)
    assert frac.min() > 0.1  # the first round's population had no particle in mode 2
    # its spread asks for a still wider base, but max_rounds=2 is spent: the verdict is told so
    assert len(exploration.problems) == 1 and "cannot be excluded" in exploration.problems[0]


def test_bad_max_rounds_raises(target):
    x0 = np.asarray(jax.random.normal(jax.random.key(1), (16, 2)), np.float32)
    with pytest.raises(ValueError, match="max_rounds"):
        explore(jax.random.key(0), target.log_prob, fs.flows.rq_spline(2), x0, num_fit_steps=0, max_rounds=0)


# ---------------------------------------------------------------- the check round: a lone far mode

LONE = np.array([[0.0, 0.0], [30.0, 0.0]], np.float32)  # a second mode 30 sigma away, none between


def _explore_from_mode0(means):
    """Exploration of the unit mixture at ``means`` from 16 starts around the origin (mode 0)."""
    t = fs.targets.gaussian_mixture(means, 1.0)
    x0 = np.asarray(jax.random.normal(jax.random.key(2), (16, 2)), np.float32)
    return t, explore(jax.random.key(3), t.log_prob, fs.flows.rq_spline(2), x0, num_fit_steps=0, num_particles=1024)


@pytest.fixture(scope="module")
def lone():
    return _explore_from_mode0(LONE)


def test_check_round_finds_a_lone_far_mode(lone):
    """Round 1 from s = 5 sees mode 0 only (spread ~1: no growth asked; the far mode is down by
    up to 30^2/(2*5^2) = 18 nats on its path); the check round from 4 s = 20 (down by <= 1.1 nats)
    sees both, and the full round from the base it asks for weighs them: 1/2 each within 4 sd of
    the SMC bound sqrt(2 T p (1-p) / N)."""
    lone_target, lone_exploration = lone
    first, check, *rest = lone_exploration.rounds
    assert not first["check"] and first["spread"] < 0.4 * first["base_scale_max"]  # round 1 did not ask to grow
    assert check["check"] and check["base_scale_max"] == pytest.approx(EXPLORE_CHECK * first["base_scale_max"])
    assert check["num_particles"] == 1024  # a small round: the check round runs the round's program
    assert rest and not rest[0]["check"] and rest[0]["base_scale_max"] >= EXPLORE_GROWTH * first["base_scale_max"]
    x = np.asarray(lone_exploration.smc.particles)
    frac = np.bincount(np.asarray(jax.vmap(lone_target.mode_of)(x)), minlength=2) / x.shape[0]
    se = np.sqrt(2 * rest[-1]["num_steps"] * 0.25 / x.shape[0])
    np.testing.assert_array_less(np.abs(frac - 0.5), 4 * se)
    assert not lone_exploration.problems


def test_check_round_on_one_mode_leaves_a_note_not_a_problem():
    """A unimodal target: the check round finds nothing new, so the exploration ends with a note
    (how far it searched), no problem, and the first round's particles."""
    _, ex = _explore_from_mode0(LONE[:1])
    assert [r["check"] for r in ex.rounds] == [False, True]
    assert not ex.problems and len(ex.notes) == 1 and "cannot be excluded" in ex.notes[0]
    assert ex.smc.particles.shape[0] == 1024  # the population is the first round's, not the check round's


def test_check_round_size_reuses_the_program_of_small_rounds():
    """At most CHECK_REUSE_WORK = N m d the check round has the round's size (its compiled
    program); above it a quarter of the particles (at least CHECK_MIN_PARTICLES) and half the steps."""
    assert check_size(2048, 20, 2) == (2048, 20)
    n, m, d = 16384, 100, 100
    assert n * m * d > CHECK_REUSE_WORK
    assert check_size(n, m, d) == (4096, 50)
    assert check_size(2048, 100, 100) == (CHECK_MIN_PARTICLES, 50)


def test_rounds_from_other_bases_share_one_compiled_program():
    """The base's loc and scale are data of the compiled SMC step: a round from another base of the
    same size adds no program to the engine's cache and is exact all the same (a Gaussian target's
    ln Z = 0 within 4 sd, sd <= sqrt(2 T / N) after T steps at ESS >= N/2; its sds within 4 relative SE,
    1/sqrt(2 N_eff) with N_eff >= N/4 = 128 effective draws after resampling and 10 RWMH moves: 0.25)."""
    import sys

    smc_mod = sys.modules["flowsamp.samplers.smc"]
    sd = np.array([1.0, 2.0], np.float32)

    def log_prob(x):  # normalised N(0, diag(sd^2))
        return -0.5 * jax.numpy.sum((x / sd) ** 2) - np.log(2 * np.pi * sd.prod()).astype(np.float32)

    outs = [_tempered_round(jax.random.key(0), jax.random.key(1), log_prob, np.zeros(2), np.full(2, 5.0), 512, 10,
                            np.float32)]
    n = len(smc_mod._PROGRAMS)
    outs.append(_tempered_round(jax.random.key(2), jax.random.key(3), log_prob, np.array([3.0, -1.0]),
                                np.array([20.0, 9.0]), 512, 10, np.float32))
    assert len(smc_mod._PROGRAMS) == n
    for o in outs:
        assert abs(o.log_Z) < 4 * np.sqrt(2.0 * o.num_steps / 512)
        assert np.asarray(o.particles).std(0) == pytest.approx(sd, rel=0.25)
