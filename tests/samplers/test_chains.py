"""fs.sample: shapes, thinning, summaries, counts, NaN safety, keys, dtypes, compilation cache."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

NUM_CHAINS, DIM, NUM_STEPS = 8, 3, 200
TRACES = {"n": 0}


def counted_log_prob(x):
    """Standard normal; counts how often JAX traces it (a Python side effect)."""
    TRACES["n"] += 1
    return -0.5 * jnp.sum(x**2)


KERNEL = fs.kernels.mala(counted_log_prob, step_size=0.5)
X0 = jnp.asarray(np.random.default_rng(0).normal(size=(NUM_CHAINS, DIM)), jnp.float32)


@pytest.fixture(scope="module")
def full():
    return fs.sample(jax.random.key(0), KERNEL, X0, NUM_STEPS)


def test_shapes_and_counts(full):
    assert full.positions.shape == (NUM_CHAINS, NUM_STEPS, DIM)
    assert full.info.is_accepted.shape == (NUM_CHAINS, NUM_STEPS)
    assert full.final_state.position.shape == (NUM_CHAINS, DIM)
    np.testing.assert_array_equal(full.positions[:, -1], full.final_state.position)
    np.testing.assert_array_equal(full.num_accepted, full.info.is_accepted.sum(1))
    np.testing.assert_array_equal(full.num_nonfinite, (~full.info.is_finite).sum(1))
    # running mean of the acceptance probability: float32 rounding over 200 terms
    np.testing.assert_allclose(full.acceptance_rate, full.info.acceptance_rate.mean(1), rtol=1e-5)
    assert 0 < int(full.num_accepted.min()) and int(full.num_accepted.max()) < NUM_STEPS


def test_same_key_same_numbers_and_no_retrace(full):
    n = TRACES["n"]
    again = fs.sample(jax.random.key(0), KERNEL, X0, NUM_STEPS)
    np.testing.assert_array_equal(again.positions, full.positions)
    other = fs.sample(jax.random.key(1), KERNEL, X0 + 1.0, NUM_STEPS)
    assert TRACES["n"] == n, "fs.sample re-traced for the same kernel and shapes"
    assert not np.array_equal(other.positions, full.positions)


def test_thinning_keeps_every_thin_th_state(full):
    thinned = fs.sample(jax.random.key(0), KERNEL, X0, NUM_STEPS, thin=5)
    assert thinned.positions.shape == (NUM_CHAINS, NUM_STEPS // 5, DIM)
    np.testing.assert_array_equal(thinned.positions, full.positions[:, 4::5])
    np.testing.assert_array_equal(thinned.num_accepted, full.num_accepted)


def test_summary_mode_matches_full_run(full):
    summ = fs.sample(jax.random.key(0), KERNEL, X0, NUM_STEPS, keep="summary")
    assert summ.positions is None and summ.info is None
    np.testing.assert_array_equal(summ.final_state.position, full.final_state.position)
    np.testing.assert_array_equal(summ.num_accepted, full.num_accepted)
    # Welford vs two-pass in float32 over 200 values: agreement to a few float32 ulps
    x = np.asarray(full.positions, np.float64)
    np.testing.assert_allclose(summ.mean, x.mean(1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(summ.variance, x.var(1), rtol=1e-4, atol=1e-5)


def test_resume_from_final_state(full):
    resumed = fs.sample(jax.random.key(5), KERNEL, full.final_state, NUM_STEPS)
    assert resumed.positions.shape == full.positions.shape
    # the first step starts at the previous end: a rejected first move stays there
    first = resumed.positions[:, 0]
    stayed = ~np.asarray(resumed.info.is_accepted[:, 0])
    np.testing.assert_array_equal(first[stayed], full.final_state.position[stayed])


def test_rbg_key():
    key = jax.random.key(0, impl="rbg")
    a = fs.sample(key, KERNEL, X0, 20)
    b = fs.sample(key, KERNEL, X0, 20)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert np.all(np.isfinite(a.positions)) and int(a.num_accepted.sum()) > 0


def test_float64_under_x64(x64):
    x0 = np.random.default_rng(1).normal(size=(4, DIM))
    trace = fs.sample(0, fs.kernels.hmc(lambda x: -0.5 * jnp.sum(x**2), 0.3, 3), x0, 10)
    assert trace.positions.dtype == jnp.float64
    assert trace.final_state.log_prob.dtype == jnp.float64
    assert trace.mean.dtype == jnp.float64


def half_space_log_prob(x):
    """Standard normal restricted to x[0] > 0; NaN on the other half of the space."""
    return jnp.where(x[0] > 0, -0.5 * jnp.sum(x**2), jnp.nan)


def test_nan_half_space_1e5_mala_steps():
    num_steps = 100_000
    x0 = jnp.ones((4, 2))
    trace = fs.sample(1, fs.kernels.mala(half_space_log_prob, 0.5), x0, num_steps, keep="summary")
    pos = np.asarray(trace.final_state.position)
    rejected = np.asarray(trace.num_nonfinite)
    print(f"\nMALA {num_steps} steps x 4 chains on a NaN half-space: non-finite proposals "
          f"rejected per chain {rejected.tolist()} (fraction {rejected.sum() / (4 * num_steps):.4f}), "
          f"acceptance {np.asarray(trace.acceptance_rate).round(3).tolist()}")
    assert np.all(np.isfinite(pos)) and np.all(pos[:, 0] > 0)
    assert np.all(np.isfinite(trace.mean)) and np.all(np.isfinite(trace.variance))
    assert np.all(np.isfinite(trace.final_state.log_prob))
    assert np.all(rejected > 0)
    assert np.all(np.asarray(trace.num_accepted) + rejected <= num_steps)


def test_non_finite_initial_position_names_the_chain():
    x0 = np.zeros((5, DIM), np.float32)
    x0[3, 1] = np.nan
    with pytest.raises(ValueError, match="chain 3"):
        fs.sample(0, KERNEL, x0, 10)


def test_non_finite_initial_log_prob_names_the_chain():
    x0 = np.ones((4, 2), np.float32)
    x0[2, 0] = -1.0  # finite position where the log-density is NaN
    with pytest.raises(ValueError, match="chain 2"):
        fs.sample(0, fs.kernels.rwmh(half_space_log_prob, 0.5), x0, 10)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"keep": "last"}, "keep"),
        ({"thin": 0}, "thin"),
        ({"thin": 3}, "multiple of thin"),
        ({"devices": []}, "empty"),
        ({"devices": ["cpu"]}, "jax.Device"),
    ],
)
def test_bad_options_raise(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fs.sample(0, KERNEL, X0, 10, **kwargs)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="chains, dim"):
        fs.sample(0, KERNEL, jnp.zeros(DIM), 10)
    with pytest.raises(TypeError, match="SamplingAlgorithm"):
        fs.sample(0, KERNEL.step, X0, 10)
    with pytest.raises(ValueError, match="num_steps"):
        fs.sample(0, KERNEL, X0, 0)


def test_params_reuse_the_compiled_program(full):
    """kernel=params -> SamplingAlgorithm with params= traced: new values do not re-trace."""
    factory = lambda step_size: fs.kernels.mala(counted_log_prob, step_size)  # noqa: E731
    a = fs.sample(jax.random.key(0), factory, X0, NUM_STEPS, params=0.5)
    n = TRACES["n"]
    b = fs.sample(jax.random.key(0), factory, X0, NUM_STEPS, params=0.2)
    assert TRACES["n"] == n, "new params re-traced the run"
    assert not np.array_equal(a.positions, b.positions)
    # same step size as the closed-over KERNEL: same accept/reject decisions, same numbers
    # up to float32 rounding (a traced step size is not constant-folded)
    np.testing.assert_array_equal(a.info.is_accepted, full.info.is_accepted)
    np.testing.assert_allclose(a.positions, full.positions, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="params"):
        fs.sample(0, KERNEL, X0, 10, params=0.5)
