"""fs.estimators.summarize: one set of names for every result, the verdict included."""

import json
from typing import NamedTuple

import numpy as np
import pytest

import flowsamp as fs
from flowsamp.estimators import summarize


class _Target:
    dim, num_modes, log_Z = 2, 2, 0.0
    mode_weights = np.array([0.3, 0.7])

    @staticmethod
    def mode_of(x):
        return (np.asarray(x)[..., 0] > 0).astype(np.int32)


class _FlowOut(NamedTuple):  # the fields summarize reads from an AdaptiveFlowOutput
    positions: np.ndarray
    local_acceptance: float
    global_acceptance: float
    num_training_loops: int
    wall_s: float


def _mixture_draws(rng, chains=8, draws=1000):
    x = rng.normal(size=(chains, draws, 2))
    x[..., 0] += np.where(rng.uniform(size=(chains, draws)) < 0.7, 4.0, -4.0)
    return x


def test_raw_draws_iid_mixture_converged_and_weights_within_4se():
    res = summarize(_mixture_draws(np.random.default_rng(0)), _Target(), wall_s=2.0)
    assert res["sampler"] == "draws" and res["num_chains"] == 8 and res["num_draws"] == 1000
    assert res["converged"] and res["problems"] == []
    assert res["max_z"] < 4 and res["exact_mode_weights"] == [0.3, 0.7]
    assert res["min_ess_bulk_per_s"] == pytest.approx(res["min_ess_bulk"] / 2.0)
    json.dumps(res)  # JSON-ready


def test_flow_output_without_own_verdict_gets_one_with_flow_acceptance():
    out = _FlowOut(_mixture_draws(np.random.default_rng(1)), 0.6, 0.01, 3, 1.5)
    res = summarize(out, _Target())
    assert res["sampler"] == "_FlowOut" and res["training_loops"] == 3 and res["wall_s"] == 1.5
    assert not res["converged"] and "flow acceptance 0.01: the flow is not helping" in res["problems"]


def test_chains_stuck_in_one_mode_are_not_converged():
    x = np.random.default_rng(2).normal(size=(8, 500, 2)) + np.array([4.0, 0.0])
    res = summarize(x, _Target())
    assert not res["converged"] and res["mode_weights"] == [0.0, 1.0]
    assert any(p.startswith("only 1 of 2 modes visited") for p in res["problems"])


def test_importance_result():
    rng = np.random.default_rng(3)
    log_w = rng.normal(scale=0.1, size=4000)
    samples = _mixture_draws(rng, 1, 4000)[0]
    is_res = fs.samplers.ISResult(0.0, 0.01, 3900.0, 0.2, 0.0, 0.0, log_w, log_w, samples, None, 0,
                                  {}, True, [])
    res = summarize(is_res, _Target())
    assert res["sampler"] == "ISResult" and res["ess"] == 3900.0 and res["k_hat"] == 0.2
    assert res["converged"] and res["max_z"] < 4


def test_unreadable_result_raises():
    with pytest.raises(TypeError, match="cannot read draws"):
        summarize(object())
