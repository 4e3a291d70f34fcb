"""Replica-exchange Wang-Landau against the exact g(E) of a small Ising lattice."""

import jax
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.samplers.replica_exchange_wang_landau import replica_exchange_wang_landau


def test_rewl_ising_4x4_converges_towards_exact():
    t = fs.targets.ising(L=4, beta=0.0)
    with pytest.warns(fs.NotConvergedWarning):
        r = replica_exchange_wang_landau(jax.random.key(0), t, num_windows=3, walkers_per_window=2,
                                         max_sweeps=3000, check_every=100, exchange_every=10)
    levels, _ = t.exact_log_dos()
    assert r.log_g.shape == levels.shape and abs(r.log_g[0] - np.log(2)) < 1e-9
    assert r.errors[-1] < 0.15 and r.errors[-1] < r.errors[len(r.errors) // 3]
    assert np.all(r.diagnostics["exchange_acceptance"] > 0.05)
    assert r.diagnostics["window_errors"].shape == (3,)


def test_rewl_bad_input():
    t = fs.targets.ising(L=4, beta=0.0)
    with pytest.raises(ValueError, match="multiple"):
        replica_exchange_wang_landau(jax.random.key(0), t, check_every=15, exchange_every=10)
    with pytest.raises(ValueError, match="num_windows"):
        replica_exchange_wang_landau(jax.random.key(0), t, num_windows=0)
