"""surrogate_mcmc: delayed acceptance whose MLP surrogate is refit on its own expensive evaluations.

Target: a 2-D banana with exact draws, x0 ~ N(0, 4), x1 | x0 ~ N(x0^2 / 4, 1), so E x = (0, 1) and
E x^2 = (4, 4). The chains start from exact draws; the production draws (frozen surrogate) must
reproduce the four moments within 4 standard errors (SE = sd / sqrt(ESS), numpyro's ESS).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

CHAINS, ROUNDS, STEPS, PROD = 8, 2, 100, 1000
TRACES = {"n": 0}


def banana(x):
    TRACES["n"] += 1  # counts Python traces: the jitted round must not be retraced per round
    return -0.5 * (x[0] ** 2 / 4.0 + (x[1] - 0.25 * x[0] ** 2) ** 2)


def exact(key, n):
    k0, k1 = jax.random.split(key)
    x0 = 2.0 * jax.random.normal(k0, (n,))
    return jnp.stack([x0, 0.25 * x0**2 + jax.random.normal(k1, (n,))], axis=1)


@pytest.fixture(scope="module")
def result():
    TRACES["n"] = 0
    sur = fs.samplers.mlp_surrogate(2, hidden=(16, 16))
    return fs.samplers.surrogate_mcmc(
        jax.random.key(0), banana, exact(jax.random.key(1), CHAINS), kernel_params={"scale": 1.2},
        surrogate=sur, num_rounds=ROUNDS, steps_per_round=STEPS, num_production_steps=PROD,
        train_steps=200, batch_size=128, vectorize_chains=True,
    ), TRACES["n"]


def test_production_moments_within_4_se(result):
    res, _ = result
    x = np.asarray(res.samples, float)
    assert x.shape == (CHAINS, PROD, 2)
    obs = np.concatenate([x, x**2], axis=-1)
    ess = fs.estimators.mcmc_ess(obs)
    est, se = obs.mean((0, 1)), obs.reshape(-1, 4).std(0) / np.sqrt(ess)
    z = (est - np.array([0.0, 1.0, 4.0, 4.0])) / se
    assert np.all(np.abs(z) < 4.0), (est, se, z)


def test_counts_and_learning(result):
    res, traces = result
    assert len(res.expensive_evaluations) == ROUNDS + 1
    assert res.num_expensive_evaluations == CHAINS + int(res.expensive_evaluations.sum())
    assert len(res.buffer_log_prob) == CHAINS + int(res.expensive_evaluations[:ROUNDS].sum())
    # every expensive evaluation is a stage-1 survivor: evaluations = first-stage moves
    assert np.allclose(res.expensive_evaluations, res.first_stage_acceptance * CHAINS * np.array([STEPS] * ROUNDS + [PROD]))
    # the trained surrogate predicts fresh evaluations better than the untrained envelope
    assert res.heldout_error[-1] < res.heldout_error[0]
    assert res.second_stage_acceptance[-1] > res.second_stage_acceptance[0]
    assert set(res.diagnostics) >= {"max_rhat", "min_ess_bulk"} and isinstance(res.problems, list)
    # init + one round program (+ the constructor check): not one retrace per round or chunk
    assert traces <= 3, traces
    assert len(res.timings["rounds"]) == ROUNDS and len(res.timings["production"]) == PROD // STEPS


def test_standardisation_of_coincident_starts():
    from flowsamp.samplers.surrogate_mcmc import _moments

    same = np.tile(np.array([[-0.69, 3e-3]], np.float32), (8, 1))  # float32 std of equal values is ~1e-8, not 0
    mean, scale = _moments(same + np.float32(1e-9) * np.arange(8, dtype=np.float32)[:, None])
    assert np.allclose(mean, same[0], atol=1e-6) and np.all(scale == 1.0)
    _, scale = _moments(np.random.default_rng(0).normal(size=(100, 2)) * 0.02)
    assert np.all(np.abs(scale - 0.02) < 0.005)


def test_fixed_surrogate_is_plain_delayed_acceptance(result):
    res, _ = result
    again = fs.samplers.surrogate_mcmc(
        jax.random.key(2), banana, np.asarray(res.samples[:, -1]), kernel_params={"scale": 1.2},
        surrogate=res.surrogate, surrogate_params=res.surrogate_params, num_rounds=0, steps_per_round=STEPS,
        num_production_steps=STEPS,
    )
    assert again.samples.shape == (CHAINS, STEPS, 2) and len(again.expensive_evaluations) == 1
    assert np.all(np.isfinite(again.samples))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="initial_positions"):
        fs.samplers.surrogate_mcmc(jax.random.key(0), banana, jnp.zeros(2), kernel_params={"scale": 1.0})
    with pytest.raises(TypeError, match="kernel_params"):
        fs.samplers.surrogate_mcmc(jax.random.key(0), banana, jnp.zeros((2, 2)), kernel_params=1.0)
    with pytest.raises(ValueError, match="non-finite"):
        fs.samplers.surrogate_mcmc(jax.random.key(0), banana, jnp.full((2, 2), jnp.nan), kernel_params={"scale": 1.0})
    with pytest.raises(ValueError, match="num_rounds"):
        fs.samplers.surrogate_mcmc(jax.random.key(0), banana, jnp.zeros((2, 2)), kernel_params={"scale": 1.0},
                                   num_rounds=-1)


class _Interrupt(Exception):
    pass


def _interrupt_after(monkeypatch, n):
    """Make the n-th ``fs.io.save`` of the next run raise right after writing its file."""
    save, calls = fs.io.save, []

    def failing(*args, **kwargs):
        save(*args, **kwargs)
        calls.append(1)
        if len(calls) == n:
            raise _Interrupt

    monkeypatch.setattr(fs.io, "save", failing)


RESUME_KW = dict(kernel_params={"scale": 1.2}, num_rounds=2, steps_per_round=20, num_production_steps=30,
                 train_steps=20, batch_size=32, vectorize_chains=True)
RESUME_FIELDS = ("samples", "log_prob", "expensive_evaluations", "first_stage_acceptance", "second_stage_acceptance",
                 "acceptance", "heldout_error", "num_expensive_evaluations", "surrogate_params", "buffer_positions",
                 "buffer_log_prob", "state")


def _assert_same(a, b):
    for f in RESUME_FIELDS:
        la, lb = jax.tree.leaves(getattr(a, f)), jax.tree.leaves(getattr(b, f))
        assert len(la) == len(lb), f
        for x, y in zip(la, lb):
            x, y = np.asarray(x), np.asarray(y)
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), f


@pytest.mark.filterwarnings("ignore::flowsamp.NotConvergedWarning")  # far too short on purpose
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    sur = fs.samplers.mlp_surrogate(2, hidden=(8,))
    x0 = exact(jax.random.key(1), 4)
    run = lambda key=jax.random.key(0), **kw: fs.samplers.surrogate_mcmc(  # noqa: E731
        key, banana, x0, surrogate=sur, **{**RESUME_KW, **kw})
    plain = run()
    ck = tmp_path / "surrogate.msgpack"
    # 2 rounds + 2 production chunks = 4 units: stop after round 1, resume and stop after chunk 1, resume
    _interrupt_after(monkeypatch, 1)
    with pytest.raises(_Interrupt):
        run(checkpoint_path=ck, checkpoint_every=1)
    assert fs.io.read_meta(ck)["num_done"] == 1
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(_Interrupt):
        run(checkpoint_path=ck, checkpoint_every=1, resume=True)
    monkeypatch.undo()
    assert fs.io.read_meta(ck)["num_done"] == 3
    resumed = run(checkpoint_path=ck, checkpoint_every=1, resume=True)
    _assert_same(resumed, plain)
    assert fs.io.read_meta(ck)["num_done"] == 4
    assert len(resumed.timings["rounds"]) == 2 and len(resumed.timings["production"]) == 2
    _assert_same(run(checkpoint_path=ck, resume=True), plain)  # a finished checkpoint: nothing is rerun
    # a checkpoint of another configuration is refused by fs.io, naming the differing entry
    with pytest.raises(ValueError, match="meta\\['key'\\]"):
        run(jax.random.key(1), checkpoint_path=ck, resume=True)
    with pytest.raises(ValueError, match="meta\\['steps_per_round'\\] is 20 in the checkpoint but 10 here"):
        run(checkpoint_path=ck, resume=True, steps_per_round=10)
    with pytest.raises(ValueError, match="checkpoint_every"):
        run(checkpoint_path=ck, checkpoint_every=0)
    with pytest.raises(ValueError, match="needs checkpoint_path"):
        run(resume=True)
