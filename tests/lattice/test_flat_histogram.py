"""Flat-histogram pieces: energy bins, compensated accumulation, window stitching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.samplers.flat_histogram import (
    compensated,
    compensated_add_at,
    compensated_fold,
    compensated_value,
    energy_bins,
    is_flat,
    level_index,
)
from flowsamp.samplers.wang_landau import make_windows, stitch_windows


def test_level_index_round_trip_and_gaps():
    t = fs.targets.ising(8, 0.4)
    bins = energy_bins(t.energy_levels)
    idx = level_index(bins, jnp.asarray(t.energy_levels, jnp.float32))
    np.testing.assert_array_equal(idx, np.arange(63))
    # -2N + 4 is unreachable, and so is anything off the grid or outside it
    bad = level_index(bins, jnp.asarray([-124.0, -125.0, -200.0, 200.0]))
    np.testing.assert_array_equal(bad, [-1, -1, -1, -1])
    with pytest.raises(ValueError, match="regular grid"):
        energy_bins(np.array([0.0, 1.0, 2.5]))


def test_compensated_keeps_increments_float32_drops():
    """ln g near 1000 in float32: 10^5 increments of 1e-6 must add 0.1, not 0."""
    n, inc = 100_000, 1e-6

    @jax.jit
    def run(acc):
        def body(c, _):
            c = compensated_fold(compensated_add_at(c, 0, jnp.float32(inc)))
            return c, None

        return jax.lax.scan(body, acc, None, length=n)[0]

    acc = run(compensated(jnp.full((2,), 1000.0, jnp.float32)))
    total = float(np.float64(acc.hi[0]) + np.float64(acc.lo[0]))
    assert abs(total - (1000.0 + n * inc)) < 1e-6
    plain = jax.jit(lambda x: jax.lax.fori_loop(0, n, lambda i, y: y + jnp.float32(inc), x))
    assert float(plain(jnp.float32(1000.0))) == 1000.0  # what the compensation avoids
    assert float(compensated_value(acc)[1]) == 1000.0


def test_is_flat():
    mask = np.array([True, True, True, False])
    assert is_flat(np.array([10, 9, 8, 0]), mask, 0.8)
    assert not is_flat(np.array([10, 9, 2, 50]), mask, 0.8)
    assert not is_flat(np.array([10, 0, 10, 5]), mask, 0.0)


def test_stitch_windows_recovers_curve_up_to_a_constant():
    rng = np.random.default_rng(0)
    truth = np.cumsum(rng.normal(size=40))
    win = make_windows(40, 3, 0.5)
    rows = np.zeros((3, 40))
    for g, (lo, hi) in enumerate(win):
        rows[g, lo : hi + 1] = truth[lo : hi + 1] + rng.normal() * 10
    out = stitch_windows(rows, win)
    np.testing.assert_allclose(out - out[0], truth - truth[0], atol=1e-12)
    assert win[0, 0] == 0 and win[-1, 1] == 39 and np.all(win[1:, 0] <= win[:-1, 1])
