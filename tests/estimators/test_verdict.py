"""Verdict: rank-normalised R-hat / bulk and tail ESS against ArviZ, mode diagnostics, IS verdict."""

import warnings

import numpy as np
import pytest

import flowsamp as fs
from flowsamp.estimators import (
    NotConvergedWarning,
    Thresholds,
    importance_verdict,
    mcmc_verdict,
    rank_diagnostics,
    warn_if_not_converged,
)

az = pytest.importorskip("arviz")


def _ar1(rng, chains, draws, dim, phi):
    x = np.zeros((chains, draws, dim))
    e = rng.normal(size=(chains, draws, dim))
    x[:, 0] = e[:, 0] / np.sqrt(1 - phi**2)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


@pytest.mark.parametrize("chains,draws,phi", [(4, 1000, 0.5), (4, 1001, 0.9), (8, 200, 0.95)])
def test_matches_arviz_rank_rhat_bulk_tail_ess(chains, draws, phi):
    # Same estimators (Vehtari et al. 2021): R-hat is the same formula on the same rank-normalised
    # split draws, so it agrees to rounding. The ESS differs only in the truncation of Geyer's
    # initial monotone sequence (numpyro clips negative pairs to 0, ArviZ stops at the first one
    # and bounds tau from below), a term of order one lag autocorrelation: measured <= 2.6 %
    # relative on these chains (0.06 % for phi = 0.5), so 5 % bounds it.
    rng = np.random.default_rng(draws)
    x = _ar1(rng, chains, draws, 3, phi)
    x[..., 2] = np.exp(x[..., 2])  # skewed coordinate: rank normalisation matters
    ours = rank_diagnostics(x)
    ds = az.convert_to_dataset({"x": x})
    np.testing.assert_allclose(ours["rhat"], az.rhat(ds, method="rank")["x"].values, atol=1e-6)
    np.testing.assert_allclose(ours["ess_bulk"], az.ess(ds, method="bulk")["x"].values, rtol=0.05)
    np.testing.assert_allclose(ours["ess_tail"], az.ess(ds, method="tail")["x"].values, rtol=0.05)


def test_indicator_draws_match_arviz_rank_rhat():
    # 0/1 draws (mode and tail indicators) take the counting path of the ranks, not the sort:
    # the same average ranks, so R-hat agrees with ArviZ to rounding, and the ESS within 5 %
    # as above. Sticky indicators (a two-state Markov chain) so that R-hat is not trivially 1.
    rng = np.random.default_rng(5)
    c, n = 4, 800
    x = np.zeros((c, n, 3))
    stay = np.array([0.9, 0.97, 0.995])
    x[:, 0] = rng.random((c, 3)) < 0.3
    for t in range(1, n):
        flip = rng.random((c, 3)) > stay
        x[:, t] = np.where(flip, 1.0 - x[:, t - 1], x[:, t - 1])
    ours = rank_diagnostics(x)
    ds = az.convert_to_dataset({"x": x})
    np.testing.assert_allclose(ours["rhat"], az.rhat(ds, method="rank")["x"].values, atol=1e-6)
    np.testing.assert_allclose(ours["ess_bulk"], az.ess(ds, method="bulk")["x"].values, rtol=0.05)


def test_well_mixed_iid_chains_converge_without_warning():
    rng = np.random.default_rng(1)
    v = mcmc_verdict(rng.normal(size=(4, 500, 5)), num_divergent=0, acceptance=0.8)
    assert v.converged and v.problems == []
    assert v.diagnostics["num_chains"] == 4 and v.diagnostics["num_draws"] == 500
    assert v.diagnostics["max_rhat"] < 1.01 and v.diagnostics["min_ess_bulk"] > 1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_not_converged(v, "test")


def test_chains_in_different_places_fail_rhat_and_warn():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 500, 10))
    x[:2, :, :8] += 5.0
    v = mcmc_verdict(x)
    assert not v.converged
    assert any(p.startswith("R-hat") and "for 8 of 10 coordinates" in p for p in v.problems), v.problems
    with pytest.warns(fs.NotConvergedWarning, match="R-hat"):
        warn_if_not_converged(v, "test run")


def test_short_correlated_chains_fail_ess():
    rng = np.random.default_rng(3)
    v = mcmc_verdict(_ar1(rng, 4, 200, 2, 0.95))
    assert any("bulk ESS" in p for p in v.problems) and any("tail ESS" in p for p in v.problems)


def test_constant_coordinate_is_not_a_failure_unless_chains_disagree():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 400, 3))
    x[..., 1] = 2.0
    r = rank_diagnostics(x)
    assert r["rhat"][1] == 1.0 and np.isnan(r["ess_bulk"][1])
    assert mcmc_verdict(x).converged
    x[0, :, 1] = 3.0
    v = mcmc_verdict(x)
    assert np.isinf(v.diagnostics["rhat"][1]) and not v.converged
    assert mcmc_verdict(np.ones((4, 100, 2))).problems == ["every draw is the same point: the chains never moved"]


def test_divergences_nonfinite_and_flow_acceptance_are_problems():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 500, 2))
    v = mcmc_verdict(x, num_divergent=18195, num_nonfinite=3, global_acceptance=0.001)
    assert "18195 divergent proposals" in v.problems
    assert "3 non-finite proposals" in v.problems
    assert "flow acceptance 0.00: the flow is not helping" in v.problems
    assert mcmc_verdict(x, num_divergent=3, thresholds=Thresholds(max_nonfinite=5)).converged


def test_stuck_modes_and_drift_are_flagged():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(8, 400, 2))
    stuck = np.repeat(np.arange(8)[:, None] % 2, 400, axis=1)  # each chain stays in its own mode
    v = mcmc_verdict(x, mode_labels=stuck, num_modes=3)
    assert list(v.diagnostics["mode_visits"]) == [4, 4, 0]
    assert any(p.startswith("only 2 of 3 modes visited") for p in v.problems)
    assert any(p.startswith("R-hat of mode indicators inf") for p in v.problems)
    # every chain goes from mode 0 (first half) to mostly mode 1 (second half): one-sided drift
    drift = np.zeros((8, 400), dtype=int)
    drift[:, 200:] = (rng.uniform(size=(8, 200)) < 0.6).astype(int)
    v = mcmc_verdict(x, mode_labels=drift)
    assert v.diagnostics["mode_weights_halves"].shape == (8, 2, 2)
    assert abs(v.diagnostics["mode_drift"] - 0.6) < 4 * np.sqrt(0.24 / 1600)
    assert any(p.startswith("mode weights drifted by 0.") for p in v.problems), v.problems


def test_well_mixed_mode_labels_pass():
    rng = np.random.default_rng(7)
    labels = (rng.uniform(size=(8, 1000)) < 0.3).astype(int)
    v = mcmc_verdict(rng.normal(size=(8, 1000, 2)), mode_labels=labels, num_modes=2)
    assert v.converged, v.problems
    assert abs(v.diagnostics["mode_weights"][1] - 0.3) < 4 * np.sqrt(0.21 / 8000)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="chains, draws"):
        mcmc_verdict(np.zeros(10))
    with pytest.raises(ValueError, match="at least 4 draws"):
        mcmc_verdict(np.zeros((2, 3, 1)))
    with pytest.raises(TypeError, match="integers"):
        mcmc_verdict(np.random.default_rng(0).normal(size=(2, 10)), mode_labels=np.zeros((2, 10)))


def test_importance_verdict():
    rng = np.random.default_rng(8)
    v = importance_verdict(rng.normal(scale=0.1, size=2000))
    assert v.converged and v.diagnostics["ess"] > 1900 and v.diagnostics["k_hat"] < 0.5
    heavy = importance_verdict(rng.standard_cauchy(2000) * 5)
    assert not heavy.converged and any("k-hat" in p for p in heavy.problems)
    allbad = importance_verdict(np.full(10, -np.inf))
    assert allbad.problems == ["all 10 importance weights are non-finite"]


def test_khat_threshold_depends_on_the_sample_size():
    from flowsamp.estimators.verdict import khat_threshold

    assert khat_threshold(100) == pytest.approx(0.5)
    assert khat_threshold(1000) == pytest.approx(1 - 1 / 3)
    assert khat_threshold(10**6) == 0.7 and khat_threshold(10**6, 0.6) == 0.6


@pytest.mark.parametrize("shape, flagged", [(0.3, None), (0.6, "standard error"), (0.8, "too heavy-tailed")])
def test_importance_verdict_reads_the_tail_shape(shape, flagged):
    # weights at the exact quantiles of a Pareto law of tail shape k: w = u^-k, so k-hat ~ k with
    # no sampling noise; k in (0.5, 0.7] means an infinite variance: the SE is not to be trusted
    u = (np.arange(20000) + 0.5) / 20000
    v = importance_verdict(-shape * np.log(u))
    assert v.diagnostics["k_hat"] == pytest.approx(shape, abs=0.05)
    if flagged is None:
        assert v.converged, v.problems
    else:
        assert not v.converged and len(v.problems) == 1 and flagged in v.problems[0]
    # 100 weights: the threshold is 1 - 1/log10(100) = 0.5 (Vehtari et al. 2024)
    few = importance_verdict(-0.55 * np.log((np.arange(100) + 0.5) / 100))
    assert any("> 0.50: the weights are too heavy-tailed" in p for p in few.problems), few.problems


def test_verdict_reuses_given_rank_diagnostics_and_checks_their_shape():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 300, 3)) + np.array([0.0, 0.0, 0.5])[None, None] * np.arange(4)[:, None, None]
    fresh, reused = mcmc_verdict(x), mcmc_verdict(x, rank=rank_diagnostics(x))
    assert fresh.problems == reused.problems and repr(fresh.diagnostics) == repr(reused.diagnostics)
    assert not fresh.converged  # the third coordinate's chains disagree: the check is not vacuous
    with pytest.raises(ValueError, match="one entry per coordinate"):
        mcmc_verdict(x, rank=rank_diagnostics(x[..., :2]))
