"""adaptive_flow_mcmc(checkpoint_path=, checkpoint_every=, resume=): a run SIGKILLed after a
checkpoint (in training, or in production) and resumed equals the uninterrupted run bit for bit
(the kill-and-resume harness of ``tests/test_resume.py``)."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import flowsamp as fs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_resume import assert_bit_identical, kill_and_resume  # noqa: E402


@pytest.mark.slow  # three subprocess runs with their own compilations (~2 min on an idle 2-core machine)
@pytest.mark.parametrize("mode, phase", [("adaptive_flow_mcmc", "training"),
                                         ("adaptive_flow_mcmc_production", "production")])
def test_killed_and_resumed_is_bit_identical(tmp_path, mode, phase):
    meta, resumed, plain = kill_and_resume(mode, tmp_path)
    assert meta["sampler"] == "adaptive_flow_mcmc" and meta["phase"] == phase
    assert 0 < meta["n_hist"] < 6
    assert_bit_identical(resumed, plain)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    flow = fs.flows.rq_spline(2, num_layers=1, hidden=(4,), num_bins=4)
    x0 = jnp.linspace(-1.0, 1.0, 16).reshape(8, 2)
    kw = dict(num_local_steps=4, num_global_steps=4, max_training_loops=1, min_training_loops=1, num_production_loops=1, target_ess=None,
              explore=False, num_epochs=1, batch_size=16, checkpoint_path=tmp_path / "a.msgpack")
    lp = lambda x: -0.5 * jnp.sum(x ** 2)  # noqa: E731
    with pytest.warns(fs.NotConvergedWarning):
        fs.samplers.adaptive_flow_mcmc(jax.random.key(0), lp, flow, x0, **kw)
    with pytest.raises(ValueError, match="key"):
        fs.samplers.adaptive_flow_mcmc(jax.random.key(1), lp, flow, x0, resume=True, **kw)
    with pytest.raises(ValueError, match="checkpoint_every"):
        fs.samplers.adaptive_flow_mcmc(jax.random.key(0), lp, flow, x0, checkpoint_every=2)
