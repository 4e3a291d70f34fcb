"""Defaults of adaptive_flow_mcmc that stop when the result is there: the stopping rules on
synthetic histories, the tempered-SMC warm start, and (slow) the acceptance cases of issue 12."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.samplers import _flow_mcmc_stopping as stop
from flowsamp.samplers._flow_mcmc_explore import (
    default_base_scale,
    default_num_particles,
    default_step_size,
    explore,
)

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


def _global_local_labels(acc, num_chains=100, loops=2, n_loc=50, n_glob=50, rng=RNG):
    """Mode labels of global-local chains: each local phase stays in its mode, each global step
    jumps to an exact draw of the weights 0.1/0.2/0.3/0.4 with probability ``acc``."""
    w = np.array([0.1, 0.2, 0.3, 0.4])
    lab, out = rng.choice(4, num_chains, p=w), []
    for _ in range(loops):
        out.append(np.repeat(lab[:, None], n_loc, axis=1))
        for _ in range(n_glob):
            lab = np.where(rng.random(num_chains) < acc, rng.choice(4, num_chains, p=w), lab)
            out.append(lab[:, None])
    return np.concatenate(out, axis=1)


def test_training_mixing_reads_modes_at_the_global_draws():
    """On a two-loop window the local phases repeat one label 50 times, so R-hat of the mode
    indicators over all draws is ~1.16 even for chains that mix perfectly (why training never
    stopped); at the global-phase draws it is ~1.005, and slow chains still fail."""
    mask = np.tile(stop.global_draws(50, 50), 2)
    assert mask.sum() == 100 and not mask[:50].any() and mask[50:100].all()
    assert stop.global_draws(50, 50, thinning=10).sum() == 5
    lp = RNG.normal(size=(100, 200))
    mixed = _global_local_labels(0.8)
    assert not stop.mixing(lp, mixed, 4, rhat=stop.TRAINING_RHAT).ok  # the old, unreachable check
    assert stop.mixing(lp, mixed[:, mask], 4, rhat=stop.TRAINING_RHAT).ok
    slow = _global_local_labels(0.05)
    assert not stop.mixing(lp, slow[:, mask], 4, rhat=stop.TRAINING_RHAT).ok


def test_production_budget_and_geometric_checks():
    assert stop.production_done(1000.0, 500, target_ess=1000, max_steps=10_000)
    assert not stop.production_done(999.0, 500, target_ess=1000, max_steps=10_000)
    assert stop.production_done(10.0, 10_000, target_ess=1000, max_steps=10_000)
    assert stop.next_check(1000, 100, 500.0, 1000) == 2100  # at the predicted 2000, 5 % over
    assert stop.next_check(1000, 100, 990.0, 1000) == 1100  # at least one loop later
    assert stop.next_check(1000, 100, 1200.0, 1000) == 1200  # ESS there, R-hat short: 20 % later
    assert "max_steps=10000" in stop.budget_problem(512.3, 1000, 10_000)


def test_next_check_predicts_where_rhat_reaches_the_limit():
    # R-hat^2 - 1 ~ 1/n: from 1.012 at 3000 steps the limit 1.01 is predicted at
    # 3000 * (1.012^2 - 1) / (1.01^2 - 1) = 3603.5 steps, checked 5 % later
    assert stop.next_check(3000, 100, 9000.0, 4000, 1.012, 1.01) == 3784
    # far off (or not finite: chains stuck in modes): at most twice the steps, so a wrong
    # prediction cannot spend the budget in one jump
    assert stop.next_check(1000, 100, 9000.0, 4000, 1.2, 1.01) == 2000
    assert stop.next_check(1000, 100, 9000.0, 4000, float("inf"), 1.01) == 2000
    # nearly there: at least 20 % later
    assert stop.next_check(1000, 100, 9000.0, 4000, 1.0101, 1.01) == 1200
    # R-hat already below the limit (the ESS is short): the ESS prediction alone
    assert stop.next_check(1000, 100, 500.0, 1000, 1.005, 1.01) == 2100
    # both short: where both are predicted to hold
    assert stop.next_check(1000, 100, 900.0, 1000, 1.02, 1.01) == 2000


def test_production_stop_sees_the_mode_indicators():
    from flowsamp.samplers.adaptive_flow_mcmc import _ess_and_rhat

    x = [RNG.normal(size=(16, 50, 2)) for _ in range(2)]  # coordinates mix
    stuck = np.repeat((np.arange(16) % 2)[:, None], 100, axis=1)  # each chain in its own mode
    _, rhat_x = _ess_and_rhat(x)
    _, rhat_modes = _ess_and_rhat(x, stuck, 2)
    assert rhat_x < 1.1 and rhat_modes > 1.5  # the stop waits for the verdict's mode R-hat too


def test_indicator_rhat_is_the_rank_rhat_of_the_indicators():
    from flowsamp.estimators.verdict import rank_diagnostics
    from flowsamp.samplers.adaptive_flow_mcmc import _indicator_rhat

    p = np.linspace(0.1, 0.6, 30)[:, None]
    labels = (RNG.random((30, 51)) < p).astype(int) + (RNG.random((30, 51)) < 0.2)  # 3 modes, chains differ
    stuck = np.repeat((np.arange(30) % 2)[:, None], 51, axis=1)  # constant within chains, chains disagree
    for lab, k in ((labels, 4), (stuck, 3)):  # k > labels: an indicator never on (constant, agreeing)
        onehot = (lab[..., None] == np.arange(k)).astype(float)
        np.testing.assert_allclose(_indicator_rhat(onehot), rank_diagnostics(onehot)["rhat"], rtol=1e-12)


def test_clustered_start_sentence():
    x0 = 0.01 * RNG.normal(size=(16, 3))
    assert stop.clustered_start_problem(x0, np.ones(3)) == stop.CLUSTERED_PROBLEM
    assert stop.clustered_start_problem(RNG.normal(size=(16, 3)), np.ones(3)) is None


# ------------------------------------------------------------------ exploration


def test_default_particles_grow_with_the_affine_fit_and_step_size_from_its_scale():
    # KL of a full-covariance fit ~ d(d+1)/(4N): N = d(d+1)/(2 * 0.25), within [2048, 16384]
    assert default_num_particles(2) == 2048
    assert default_num_particles(60) == int(np.ceil(60 * 61 / 0.5))
    assert default_num_particles(100) == 16384
    assert default_num_particles(1000) == 2048  # diagonal fit above MAX_FULL_DIM
    aff = fs.flows.Affine(np.zeros(2), np.array([[2.0, 0.0], [0.0, 5.0]]))
    assert np.isclose(default_step_size(aff, 2, "mala"), 0.5 * 4.0 * 2 ** (-1 / 3))
    assert np.isclose(default_step_size(aff, 2, "hmc"), 2.0 * 2 ** -0.25)
    assert default_step_size(None, 2) == 0.1


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


# ------------------------------------------------------------------ the sampler with these defaults

SCHED = dict(num_local_steps=10, num_global_steps=20, max_training_loops=8, min_training_loops=2,
             num_production_loops=4, num_epochs=5, buffer_points_per_chain=8, explore_particles=512,
             explore_fit_steps=100)


@pytest.fixture(scope="module")
def tiny_flow():
    return fs.flows.realnvp(2, num_layers=2, hidden=(16,))


@pytest.fixture(scope="module")
def default_run(two_modes, tiny_flow):
    t = two_modes
    x0 = jnp.asarray(t.means[0], jnp.float32) + 0.1 * jax.random.normal(jax.random.key(1), (32, 2))
    return fs.samplers.adaptive_flow_mcmc(jax.random.key(4), t.log_prob, tiny_flow, x0, mode_of=t.mode_of,
                                          num_modes=2, target_ess=400, **SCHED)


def test_default_run_explores_and_gets_the_weights(default_run, two_modes):
    """Chains all start in mode 0; exploration seeds both and the weights come out within 4 SE
    (SE from the bulk ESS of the mode indicator), or the run says it did not converge."""
    out = default_run
    labels = np.asarray(two_modes.mode_of(out.positions))
    w1 = labels.mean()
    ess = fs.estimators.rank_diagnostics((labels == 1).astype(float))["ess_bulk"][0]
    se = np.sqrt(w1 * (1 - w1) / ess)
    print(f"w1={w1:.4f} +- {se:.4f} (exact {two_modes.mode_weights[1]:.4f}) converged={out.converged} {out.problems}")
    assert out.exploration is not None and out.exploration.smc is not None
    assert out.converged or out.problems
    if out.converged:
        assert abs(w1 - two_modes.mode_weights[1]) < 4 * se
    assert set(out.diagnostics) >= {"max_rhat", "min_ess_bulk", "mode_visits", "global_acceptance"}
    # out.flow is the preconditioned flow the chains used; out.params are its parameters
    x, lq = out.flow.sample_and_log_prob(out.params, jax.random.key(0), 8)
    np.testing.assert_allclose(out.flow.log_prob(out.params, x), lq, rtol=1e-4, atol=1e-3)


def test_production_runs_until_target_ess(default_run):
    out = default_run
    assert out.diagnostics["min_ess_bulk"] >= 400 or any("max_steps" in p for p in out.problems)


def test_spent_budget_and_clustered_start_are_reported(two_modes, tiny_flow):
    t = two_modes
    x0 = jnp.asarray(t.means[0], jnp.float32) + 0.01 * jax.random.normal(jax.random.key(1), (16, 2))
    sched = {**SCHED, "max_training_loops": 2, "num_production_loops": 1}
    with pytest.warns(fs.NotConvergedWarning) as rec:
        out = fs.samplers.adaptive_flow_mcmc(jax.random.key(0), t.log_prob, tiny_flow, x0, explore=False,
                                             target_ess=1e6, max_steps=60, **sched)
    assert stop.CLUSTERED_PROBLEM in out.problems
    assert any("max_steps=60" in p for p in out.problems)
    assert not out.converged and out.exploration is None
    msgs = [str(r.message) for r in rec if issubclass(r.category, fs.NotConvergedWarning)]
    assert len(msgs) == 1 and stop.CLUSTERED_PROBLEM in msgs[0]


def test_new_options_are_validated(tiny_flow):
    x0 = jnp.zeros((4, 2))
    lp = lambda x: -0.5 * jnp.sum(x * x)  # noqa: E731
    for bad in (dict(target_ess=0.0), dict(max_steps=0), dict(mode_of=3), dict(explore="yes"),
                dict(explore_particles=2), dict(precondition="full"), dict(num_modes=0)):
        with pytest.raises((TypeError, ValueError)):
            fs.samplers.adaptive_flow_mcmc(jax.random.key(0), lp, tiny_flow, x0, **bad)


# ------------------------------------------------------------------ acceptance cases of issue 12 (slow)


def _weights_and_se(labels, k):
    """Mode weights and their SEs from the bulk ESS of each indicator (autocorrelation counted)."""
    onehot = (np.asarray(labels)[..., None] == np.arange(k)).astype(float)
    w = onehot.mean((0, 1))
    ess = fs.estimators.rank_diagnostics(onehot)["ess_bulk"]
    return w, np.sqrt(w * (1 - w) / np.where(np.isfinite(ess), ess, 1.0))


@pytest.mark.slow
@pytest.mark.parametrize("dim,separation,seed", [(6, 8.0, 0), (4, 12.0, 1), (10, 8.0, 2)])
def test_mixture_from_one_mode_is_right_or_warns(dim, separation, seed):
    """Issue 12's first case: four unit Gaussians ``separation`` apart, weights 0.1..0.4, 64
    chains started in one mode, every option at its default: the weights are within 0.02 and
    4 SE of the exact ones, or a NotConvergedWarning says why not."""
    import warnings

    t = fs.targets.mixture_benchmark(dim, 4, separation, (0.1, 0.2, 0.3, 0.4), seed)
    x0 = jnp.asarray(t.means[0], jnp.float32) + 0.1 * jax.random.normal(jax.random.key(1), (64, dim))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fs.samplers.adaptive_flow_mcmc(jax.random.key(seed), t.log_prob, fs.flows.rq_spline(dim), x0,
                                             mode_of=t.mode_of, num_modes=4)
    warned = any(issubclass(r.category, fs.NotConvergedWarning) for r in rec)
    w, se = _weights_and_se(t.mode_of(out.positions), 4)
    err = np.abs(w - t.mode_weights)
    print(f"dim={dim} sep={separation}: w={np.round(w, 4)} max err={err.max():.4f} max z={np.max(err / se):.2f} "
          f"global acc={out.global_acceptance:.3f} training loops={out.num_training_loops} "
          f"draws/chain={out.positions.shape[1]} wall={out.wall_s:.0f}s converged={out.converged} {out.problems}")
    assert warned == (not out.converged)
    if out.converged:
        assert err.max() <= 0.02 and np.all(err <= 4 * se)


def _ill_conditioned_gaussian(d=100, seed=0):
    """Random rotation of sds log-spaced 5.7..76 (the Inference Gym's range); exact covariance."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    cov = (q * np.geomspace(5.7, 76.0, d) ** 2) @ q.T
    prec = jnp.asarray(np.linalg.inv(cov), jnp.float32)
    return (lambda x: -0.5 * x @ (prec @ x)), cov


@pytest.mark.slow
def test_ill_conditioned_gaussian_100d():
    """Issue 12's 100-D case: flow acceptance >= 0.2 and every marginal sd within 10 % of the
    truth, the 10 % being more than 4 SE of the estimate (SE(sd) = sd / sqrt(2 ESS_bulk))."""
    log_prob, cov = _ill_conditioned_gaussian()
    d = cov.shape[0]
    x0 = 0.1 * jax.random.normal(jax.random.key(1), (64, d))
    out = fs.samplers.adaptive_flow_mcmc(jax.random.key(0), log_prob, fs.flows.rq_spline(d), x0)
    x = np.asarray(out.positions)
    sd, true_sd = x.reshape(-1, d).std(0), np.sqrt(np.diag(cov))
    se = sd / np.sqrt(2 * out.diagnostics["ess_bulk"])
    ratio = sd / true_sd
    print(f"global acc={out.global_acceptance:.3f} sd ratio {ratio.min():.3f}..{ratio.max():.3f} "
          f"max 4SE/sd={np.max(4 * se / sd):.3f} loops={out.num_training_loops} wall={out.wall_s:.0f}s {out.problems}")
    assert out.global_acceptance >= 0.2
    assert np.all(4 * se < 0.1 * true_sd)
    assert np.all(np.abs(ratio - 1) < 0.1)
