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
    # WL's error is not monotone: from ~800 sweeps on (ln f ~ 1e-3) it is the statistical error of ln g,
    # which falls only ~ t^(-1/2) under 1/t and moves as much from check to check. Over keys 0-59 in x64
    # errors[-1] >= errors[len // 3] for 9 keys (key 0: 0.121 against 0.116; float32 passes by chance with
    # 0.046, its errors equal to the x64 ones up to sweep 1600) and errors[-1] > 0.15 for 4 (max 0.235).
    # What every run shows is the fall from the start: the final error is under 5% of that at the first
    # check (measured 0.1-2.1%, median 0.3%) and under that at 300 sweeps (measured <= 6%).
    assert r.errors[-1] < 0.05 * r.errors[0] and r.errors[-1] < r.errors[2], r.errors
    assert np.all(r.diagnostics["exchange_acceptance"] > 0.05)
    assert r.diagnostics["window_errors"].shape == (3,)


def test_rewl_bad_input():
    t = fs.targets.ising(L=4, beta=0.0)
    with pytest.raises(ValueError, match="multiple"):
        replica_exchange_wang_landau(jax.random.key(0), t, check_every=15, exchange_every=10)
    with pytest.raises(ValueError, match="num_windows"):
        replica_exchange_wang_landau(jax.random.key(0), t, num_windows=0)
