"""Ising / Potts targets: exact references against enumeration and published values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import flowsamp as fs
from flowsamp.targets.ising import K_C, kaufman_log_Z
from flowsamp.targets.lattice_dos import unequal_bond_counts
from flowsamp.targets.potts import potts_transition

# 4 x 4 periodic Ising density of states (exact; e.g. Beale, PRL 76, 78 (1996))
G_4X4 = {-32: 2, -24: 32, -20: 64, -16: 424, -12: 1728, -8: 6688, -4: 13568, 0: 20524}


def _enumerated_dos(t):
    _, e = t.enumerate()
    levels, counts = np.unique(e, return_counts=True)
    return levels, counts


def test_ising_4x4_dos_transfer_matrix_equals_enumeration_and_table():
    t = fs.targets.ising(4, 0.3)
    energies, g = t.exact_dos()
    levels, counts = _enumerated_dos(t)
    np.testing.assert_array_equal(energies, levels)
    assert g == [int(c) for c in counts]
    table = {**G_4X4, **{-k: v for k, v in G_4X4.items()}}
    assert dict(zip(energies.astype(int).tolist(), g)) == table
    np.testing.assert_array_equal(t.energy_levels, levels)
    e2, log_g = t.exact_log_dos()
    assert log_g[0] == pytest.approx(math.log(2), abs=1e-15)


@pytest.mark.parametrize("L", [2, 3, 4])
@pytest.mark.parametrize("K", [0.1, K_C, 0.9])
def test_kaufman_matches_enumeration(L, K):
    t = fs.targets.ising(L, K)
    _, e = t.enumerate()
    assert t.log_Z == pytest.approx(logsumexp(-K * e), abs=1e-10)


def test_kaufman_published_values_at_kc():
    # REFERENCE: ln Z at K_c, L = 4: 15.521915458755, L = 8: 60.141780789069 (Kaufman 1949)
    assert kaufman_log_Z(4, K_C) == pytest.approx(15.521915458755, abs=1e-10)
    assert kaufman_log_Z(8, K_C) == pytest.approx(60.141780789069, abs=1e-10)
    assert kaufman_log_Z(6, 0.0) == pytest.approx(36 * math.log(2), abs=1e-12)


def test_potts_dos_and_log_z_match_enumeration():
    t = fs.targets.potts(3, 3, 0.7)
    energies, g = t.exact_dos()
    levels, counts = _enumerated_dos(t)
    np.testing.assert_array_equal(energies, levels)
    assert g == [int(c) for c in counts]
    _, e = t.enumerate()
    assert t.log_Z == pytest.approx(logsumexp(-0.7 * e), abs=1e-10)
    assert t.exact_log_dos()[1][0] == pytest.approx(math.log(3), abs=1e-15)


def test_level_formulas_match_transfer_matrix():
    for L in (4, 6):
        t = fs.targets.ising(L, 0.4)
        g = unequal_bond_counts(L, 2)
        np.testing.assert_array_equal(
            t._reachable_unequal_counts_formula(), [u for u, c in enumerate(g) if c]
        )
    t = fs.targets.potts(6, 3, 1.0)
    g = unequal_bond_counts(6, 3)
    np.testing.assert_array_equal(
        t._reachable_unequal_counts_formula(), [u for u, c in enumerate(g) if c]
    )
    # L = 8 Ising levels: -2N + 4 and 2N - 4 are unreachable (g = 0)
    lv = fs.targets.ising(8, 0.4).energy_levels
    assert len(lv) == 63 and -124 not in lv and 124 not in lv


def test_potts_transition_reference_values():
    # REFERENCE (Baxter 1973): q = 10, beta_c 1.426062439, e_o -1.664252482,
    # e_d -0.968203050, latent heat 0.696049432
    tr = potts_transition(10)
    assert tr.beta_c == pytest.approx(1.426062439, abs=1e-9)
    assert tr.e_ordered == pytest.approx(-1.664252482, abs=1e-9)
    assert tr.e_disordered == pytest.approx(-0.968203050, abs=1e-9)
    assert tr.latent_heat == pytest.approx(0.696049432, abs=1e-9)
    assert fs.targets.potts(8, 10, 1.0).beta_c == pytest.approx(math.log(1 + math.sqrt(10)))


@pytest.mark.parametrize("make", [lambda: fs.targets.ising(4, 0.4), lambda: fs.targets.potts(4, 3, 0.9)])
def test_site_energies_give_energy_differences(make):
    t = make()
    key = jax.random.key(0)
    s = t.random_state(key, (5,))
    loc = t.local_energies(s)  # (5, L, L, q)
    idx = t.state_index(s)
    for v in range(t.num_states):
        s2 = s.at[:, 1, 2].set(t.spin_values[v])
        de = t.energy(s2) - t.energy(s)
        np.testing.assert_allclose(de, loc[:, 1, 2, v] - jnp.take_along_axis(
            loc[:, 1, 2], idx[:, 1, 2, None], axis=-1)[:, 0], atol=1e-6)
    assert t.log_prob(s).shape == (5,)
    assert jnp.issubdtype(t.log_prob(s[0]).dtype, jnp.floating)
    np.testing.assert_allclose(jax.vmap(t.log_prob)(s), t.log_prob(s))


def test_exact_sample_mean_energy_and_modes():
    t = fs.targets.ising(4, 0.35)
    _, e = t.enumerate()
    w = np.exp(-t.beta * e - t.log_Z)
    mean, sd = np.sum(w * e), np.sqrt(np.sum(w * e**2) - np.sum(w * e) ** 2)
    n = 4000
    x = t.sample(jax.random.key(1), n)
    assert x.shape == (n, 4, 4) and x.dtype == jnp.int32
    assert abs(float(jnp.mean(t.energy(x))) - mean) < 4 * sd / math.sqrt(n)
    frac = float(jnp.mean(t.mode_of(x) == 1))
    assert abs(frac - 0.5) < 4 * 0.5 / math.sqrt(n)


def test_potts_mode_of_commutes_with_relabelling():
    t = fs.targets.potts(4, 3, 0.5)
    s = t.random_state(jax.random.key(3), (50,))
    perm = jnp.array([2, 0, 1])
    np.testing.assert_array_equal(t.mode_of(perm[s]), perm[t.mode_of(s)])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="L must be"):
        fs.targets.ising(1, 0.3)
    with pytest.raises(ValueError, match="J must be"):
        fs.targets.ising(4, 0.3, J=-1.0)
    with pytest.raises(ValueError, match="q must be"):
        fs.targets.potts(4, 1, 0.3)
    t = fs.targets.ising(4, 0.3)
    with pytest.raises(ValueError, match="shape"):
        t.energy(jnp.ones((3, 3), jnp.int32))
    with pytest.raises(TypeError, match="integer"):
        t.energy(jnp.ones((4, 4)))
    with pytest.raises(NotImplementedError):
        fs.targets.ising(8, 0.3).sample(jax.random.key(0), 2)


@pytest.mark.slow
def test_ising_8x8_dos_reproduces_kaufman():
    t = fs.targets.ising(8, K_C)
    energies, log_g = t.exact_log_dos()
    assert sum(t.exact_dos()[1]) == 2**64
    np.testing.assert_array_equal(energies, t.energy_levels)
    for K in (0.2, K_C, 0.6):
        assert logsumexp(log_g - K * energies) == pytest.approx(kaufman_log_Z(8, K), abs=1e-10)
