"""fs.rare.reweight: draws of a learned log-density corrected to the true one by importance weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

N = 4000


def gauss(mu, sd):
    return lambda x: -0.5 * jnp.sum(((x - mu) / sd) ** 2)


@pytest.fixture(scope="module")
def draws():
    return jax.random.normal(jax.random.key(0), (N, 2))  # exact draws of the learned N(0, 1)


def test_reweighted_moments_within_4_se(draws):
    mu, sd = jnp.array([0.3, -0.2]), 1.2
    res = fs.rare.reweight(draws, gauss(mu, sd), gauss(0.0, 1.0), lambda x: jnp.concatenate([x, x**2]))
    truth = np.concatenate([np.asarray(mu), np.asarray(mu) ** 2 + sd**2])
    assert np.all(np.abs(res.mean - truth) < 4 * res.se), (res.mean, res.se)
    assert res.converged and res.k_hat < 0.7 and 0.3 < res.ess_fraction < 1.0
    assert res.num_expensive_evaluations == N
    assert np.all(np.abs(res.learned_mean[:2]) < 0.1)  # the uncorrected answer is the learned one


def test_far_off_learned_potential_is_flagged(draws):
    # learned N(0, 1), true N(3, 1) per coordinate: log-normal weights exp(3 (x0 + x1) - 9), sd 4.2
    with pytest.warns(fs.NotConvergedWarning, match="too far"):
        res = fs.rare.reweight(draws, gauss(3.0, 1.0), gauss(0.0, 1.0))
    assert not res.converged and res.k_hat > 0.7
    assert "learned potential is too far" in res.problems[0]


def test_subset_and_precomputed_values(draws):
    lq = jax.vmap(gauss(0.0, 1.0))(draws)
    res = fs.rare.reweight(draws, gauss(0.1, 1.0), lq, key=jax.random.key(1), num_expensive=1000, batch_size=100)
    assert res.num_expensive_evaluations == 1000 and len(np.unique(res.indices)) == 1000
    assert np.all(np.abs(res.mean - np.array([0.1, 0.1])) < 4 * res.se)


def test_bad_input_raises(draws):
    with pytest.raises(ValueError, match="samples"):
        fs.rare.reweight(draws[0], gauss(0, 1), gauss(0, 1))
    with pytest.raises(ValueError, match="key"):
        fs.rare.reweight(draws, gauss(0, 1), gauss(0, 1), num_expensive=10)
    with pytest.raises(ValueError, match="shape"):
        fs.rare.reweight(draws, gauss(0, 1), jnp.zeros(3))
