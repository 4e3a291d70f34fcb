"""Widom insertion (fs.rare.widom): exact references within 4 SE, pre-filters unbiased.

Fast: the Tonks gas (N = 10 rods, L = 20, exact sampling; P_ins = 0.17434 exactly at finite N) with
plain, classical exact and learned pre-filters; the ideal gas (beta mu_ex = 0). Slow: hard spheres at
eta = 0.1, 0.2 against Carnahan-Starling plus the stated finite-size correction, and Lennard-Jones at
T* = 2, rho* = 0.5, 0.8 against Johnson, Zollweg & Gubbins 1993 (coefficients: their Table 10,
in flowsamp/targets/particles.py) with the tail correction, configurations from flowsamp's own
single-particle Metropolis sweeps.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

ROD = fs.targets.hard_rods(10, 20.0)


@pytest.fixture(scope="module")
def rod_configs():
    return ROD.sample(jax.random.key(0), 8 * 40).reshape(8, 40, 10)


def test_tonks_reference_value():
    assert np.exp(-ROD.beta_mu_ex_reference) == pytest.approx(0.17434, abs=5e-6)


@pytest.mark.parametrize("prefilter", [None, "exact", "ml"])
def test_tonks_gas_exact(rod_configs, prefilter):
    r = fs.rare.widom(jax.random.key(1), ROD, rod_configs, 48, prefilter=prefilter, num_train_steps=200)
    assert abs(r.beta_mu_ex - ROD.beta_mu_ex_reference) < 4 * r.se, (r.beta_mu_ex, r.se)
    if prefilter is not None:
        assert r.num_expensive < 0.5 * r.num_insertions


def test_prefilters_cut_variance_per_evaluation(rod_configs):
    plain = fs.rare.widom(jax.random.key(1), ROD, rod_configs, 64)
    exact = fs.rare.widom(jax.random.key(1), ROD, rod_configs, 64, prefilter="exact")
    assert exact.beta_mu_ex == plain.beta_mu_ex  # hard cores: the skipped insertions are exact zeros
    assert exact.variance_per_evaluation < 0.5 * plain.variance_per_evaluation


def test_ideal_gas():
    g = fs.targets.ideal_gas(20, 3.0)
    x = jax.random.uniform(jax.random.key(0), (4, 5, 60), minval=0.0, maxval=3.0)
    r = fs.rare.widom(jax.random.key(1), g, x, 16)
    assert r.beta_mu_ex == 0.0 and r.se == 0.0


def test_bad_input(rod_configs):
    with pytest.raises(ValueError, match="prefilter"):
        fs.rare.widom(jax.random.key(1), ROD, rod_configs, 4, prefilter="magic")
    with pytest.raises(ValueError, match="chains >= 2"):
        fs.rare.widom(jax.random.key(1), ROD, rod_configs[0], 4)
    with pytest.raises(ValueError, match="room"):
        fs.targets.hard_rods(10, 10.5)
    with pytest.raises(ValueError, match="cutoff"):
        fs.targets.lennard_jones(32, 0.8, 2.0)


def test_particle_sweeps_keep_hard_rods_valid():
    x0 = jnp.asarray(np.tile(ROD.lattice(), (2, 1)))
    xs, acc = jax.jit(lambda k, x: fs.rare.particle_sweeps(k, ROD, x, 5, 0.5))(jax.random.key(0), x0)
    assert xs.shape == (2, 5, 10) and 0.2 < float(acc.mean()) < 1.0
    assert np.all(np.isfinite(np.asarray(jax.vmap(jax.vmap(ROD.log_prob))(xs))))


def _configs(system, seed, chains=8, burn=100, sweeps=400, thin=4, step=0.15):
    x0 = jnp.asarray(np.tile(system.lattice(), (chains, 1)))
    run = jax.jit(lambda k, x, n: fs.rare.particle_sweeps(k, system, x, n, step, thin), static_argnums=2)
    xs, _ = run(jax.random.key(seed), x0, burn)
    xs, acc = run(jax.random.key(seed + 1), xs[:, -1], sweeps)
    return xs, float(acc.mean())


@pytest.mark.slow
@pytest.mark.parametrize("eta", [0.1, 0.2])
def test_hard_spheres_carnahan_starling(eta):
    hs = fs.targets.hard_spheres(125, eta)
    xs, acc = _configs(hs, 0, step=0.3)
    r = fs.rare.widom(jax.random.key(2), hs, xs, 512, prefilter="exact")
    ref = hs.beta_mu_ex_reference + hs.finite_size_correction
    print(f"HS eta={eta}: {r.beta_mu_ex:.4f} +- {r.se:.4f}, CS {hs.beta_mu_ex_reference:.4f} + finite-N "
          f"{hs.finite_size_correction:.4f}, acc {acc:.2f}")
    assert abs(r.beta_mu_ex - ref) < 4 * r.se + 0.25 * abs(hs.finite_size_correction)


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_lennard_jones_jzg(rho):
    lj = fs.targets.lennard_jones(125, rho, 2.0)
    xs, acc = _configs(lj, 0, step=0.12 if rho == 0.8 else 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fs.NotConvergedWarning)
        plain = fs.rare.widom(jax.random.key(2), lj, xs, 512)
        ml = fs.rare.widom(jax.random.key(2), lj, xs, 512, prefilter="ml", a_min=0.01)
        exact = fs.rare.widom(jax.random.key(2), lj, xs, 512, prefilter="exact")
    mu = plain.beta_mu_ex + lj.tail_correction
    ref = lj.beta_mu_ex_reference + lj.finite_size_correction
    spread = 0.05  # JZG's fit vs simulation (their Table) plus the truncation of the tail correction's g(r) = 1
    gain_ml = plain.variance_per_evaluation / ml.variance_per_evaluation
    gain_exact = plain.variance_per_evaluation / exact.variance_per_evaluation
    print(f"LJ rho={rho}: plain {mu:.4f} +- {plain.se:.4f} (tail {lj.tail_correction:.4f}) vs JZG {lj.beta_mu_ex_reference:.4f}"
          f" + finite-N {lj.finite_size_correction:.4f}; ml {ml.beta_mu_ex + lj.tail_correction:.4f} +- {ml.se:.4f} "
          f"({ml.num_expensive}/{ml.num_insertions} evals), exact {exact.beta_mu_ex + lj.tail_correction:.4f} +- {exact.se:.4f} "
          f"({exact.num_expensive}); variance per evaluation gain: ml {gain_ml:.1f}x, exact {gain_exact:.1f}x; acc {acc:.2f}")
    assert abs(mu - ref) < spread + 4 * plain.se
    assert abs(ml.beta_mu_ex - plain.beta_mu_ex) < 4 * np.hypot(ml.se, plain.se)
    if rho == 0.8:
        assert gain_ml >= 5.0
