"""parallel_tempering: exact samples stay exact (Gaussian path in closed form), ln Z within 4 SE,
float64, devices, bad input; slow: a mixture where plain MALA fails and PT recovers the weights."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.samplers._pt_ladder import initial_ladder, ladder_adaptation

D = 3
MU1, SD1 = np.array([1.0, -2.0, 0.5]), np.array([0.5, 1.0, 2.0])
MU0, SD0 = np.zeros(D), np.full(D, 3.0)
TARGET = fs.targets.gaussian(MU1, np.diag(SD1**2))
REF = fs.targets.gaussian(MU0, np.diag(SD0**2))
BETAS = np.array([0.0, 0.05, 0.2, 0.5, 1.0])
CHAINS, STEPS = 256, 12


def tempered(beta):
    """pi_beta = r^(1-beta) p^beta is Gaussian: (mean, sd) per coordinate."""
    prec = (1 - beta) / SD0**2 + beta / SD1**2
    return ((1 - beta) * MU0 / SD0**2 + beta * MU1 / SD1**2) / prec, 1 / np.sqrt(prec)


def exact_starts(key):
    z = np.asarray(jax.random.normal(key, (CHAINS, len(BETAS), D)))
    return np.stack([m + s * z[:, k] for k, (m, s) in enumerate(map(tempered, BETAS))], axis=1)


@pytest.fixture(scope="module")
def exact_run():
    x0 = exact_starts(jax.random.key(1))
    return fs.samplers.parallel_tempering(
        jax.random.key(2), TARGET.log_prob, x0, STEPS, num_warmup=0, betas=BETAS, reference=REF,
        num_blocks=1, warn=False,
    )


def test_exact_samples_stay_exact(exact_run):
    """Draws at beta = 1 after the last scan (independent over chains): mean and variance within 4 SE."""
    x = np.asarray(exact_run.positions[:, -1], np.float64)
    z_mean = (x.mean(0) - MU1) / (SD1 / np.sqrt(CHAINS))
    z_var = (x.var(0, ddof=1) - SD1**2) / (SD1**2 * np.sqrt(2 / (CHAINS - 1)))
    assert np.all(np.abs(z_mean) < 4), z_mean
    assert np.all(np.abs(z_var) < 4), z_var


def test_log_Z_within_4_se(exact_run):
    for est, se in ((exact_run.log_Z, exact_run.log_Z_se), (exact_run.log_Z_ti, exact_run.log_Z_ti_se)):
        assert np.isfinite(se) and se > 0
    z = (exact_run.log_Z - TARGET.log_Z) / exact_run.log_Z_se
    assert abs(z) < 4, (exact_run.log_Z, exact_run.log_Z_se, TARGET.log_Z)


def test_result_fields(exact_run):
    r = exact_run
    assert r.positions.shape == (CHAINS, STEPS, D)
    assert r.swap_rates.shape == (len(BETAS) - 1,) and np.all((r.swap_rates > 0) & (r.swap_rates <= 1))
    np.testing.assert_array_equal(r.betas, BETAS)
    assert r.local_acceptance.shape == (len(BETAS),)
    assert r.round_trips >= 0 and "swap_rates" in r.diagnostics and isinstance(r.problems, list)


def test_ladder_update_equalises_rejections():
    """Syed et al.: after the update the cumulative barrier is split evenly (piecewise-linear model)."""
    b = initial_ladder(6)
    rej = np.array([0.9, 0.1, 0.1, 0.1, 0.1])
    new = ladder_adaptation().update(ladder_adaptation().init(b), rej)
    cum = np.concatenate([[0], np.cumsum(rej)])
    np.testing.assert_allclose(np.interp(new.betas, b, cum), np.linspace(0, cum[-1], 6), atol=1e-12)
    assert new.betas[0] == 0 and new.betas[-1] == 1 and np.all(np.diff(new.betas) > 0)


def test_float64(x64):
    x0 = np.asarray(jax.random.normal(jax.random.key(0), (4, D))) * 3
    r = fs.samplers.parallel_tempering(0, TARGET.log_prob, x0, 4, num_warmup=4, num_temperatures=3, warn=False)
    assert r.positions.dtype == jnp.float64 and np.isfinite(r.log_Z)


def test_bad_input():
    x0 = np.asarray(jax.random.normal(jax.random.key(0), (4, D)))
    with pytest.raises(ValueError, match="shape"):
        fs.samplers.parallel_tempering(0, TARGET.log_prob, x0[0], 10)
    with pytest.raises(ValueError, match="at least 2 chains"):
        fs.samplers.parallel_tempering(0, TARGET.log_prob, x0[:1], 10)
    with pytest.raises(ValueError, match="target_acceptance"):
        fs.samplers.parallel_tempering(0, TARGET.log_prob, x0, 10, kernel=lambda lp, e: None)
    with pytest.raises(ValueError, match="flow_rungs"):
        fs.samplers.parallel_tempering(0, TARGET.log_prob, x0, 10, flow_rungs="middle")
    with pytest.raises(ValueError, match="increase"):
        fs.samplers.parallel_tempering(0, TARGET.log_prob, x0, 10, betas=[0.0, 0.7, 0.5, 1.0])
    bad = x0.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="chain 1"):
        fs.samplers.parallel_tempering(0, TARGET.log_prob, bad, 10)


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_bit_identical(tmp_path, monkeypatch):
    """Killed (an exception after the 2nd save: inside production) and resumed = uninterrupted, bit for bit;
    a checkpoint of another key or a corrupt file is refused naming the problem."""
    from flowsamp import io as fio

    x0 = np.asarray(jax.random.normal(jax.random.key(0), (4, D))) * 3
    kw = dict(num_warmup=6, num_temperatures=3, warn=False)
    plain = fs.samplers.parallel_tempering(0, TARGET.log_prob, x0, 8, **kw)
    path = tmp_path / "pt.msgpack"
    save, calls = fio.save, []

    def failing(*args, **kwargs):
        save(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # end of warm-up, then 4 production scans
            raise _Interrupt

    monkeypatch.setattr(fio, "save", failing)
    with pytest.raises(_Interrupt):
        fs.samplers.parallel_tempering(0, TARGET.log_prob, x0, 8, checkpoint_path=path, checkpoint_every=4, **kw)
    monkeypatch.setattr(fio, "save", save)
    assert fio.read_meta(path)["prod_done"] == 4
    res = fs.samplers.parallel_tempering(0, TARGET.log_prob, x0, 8, checkpoint_path=path, checkpoint_every=4,
                                         resume=True, **kw)
    for name in ("positions", "log_Z", "log_Z_se", "betas", "step_sizes", "swap_rates", "round_trips"):
        np.testing.assert_array_equal(np.asarray(getattr(res, name)), np.asarray(getattr(plain, name)), name)
    with pytest.raises(ValueError, match="'key'"):
        fs.samplers.parallel_tempering(1, TARGET.log_prob, x0, 8, checkpoint_path=path, resume=True, **kw)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        fs.samplers.parallel_tempering(0, TARGET.log_prob, x0, 8, checkpoint_path=path, resume=True, **kw)
    with pytest.raises(ValueError, match="checkpoint_path"):
        fs.samplers.parallel_tempering(0, TARGET.log_prob, x0, 8, resume=True, **kw)


DEVICES_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, numpy as np
    import flowsamp as fs
    assert len(jax.devices()) == 4
    t = fs.targets.gaussian(np.array([1.0, -1.0]), np.diag([0.5, 2.0]))
    x0 = np.asarray(jax.random.normal(jax.random.key(0), (8, 2))) * 3
    kw = dict(num_warmup=8, num_temperatures=4, warn=False)
    one = fs.samplers.parallel_tempering(0, t.log_prob, x0, 8, **kw)
    many = fs.samplers.parallel_tempering(0, t.log_prob, x0, 8, devices=jax.devices(), **kw)
    bar = fs.samplers.parallel_tempering(0, t.log_prob, x0, 8, devices=jax.devices(), progress=True, **kw)
    print(json.dumps({"same": bool(np.array_equal(np.asarray(one.positions), np.asarray(many.positions))),
                      "lz": [one.log_Z, many.log_Z],
                      "progress_same": all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
                          jax.tree.leaves((many.positions, many.swap_rates, many.step_sizes, many.log_Z)),
                          jax.tree.leaves((bar.positions, bar.swap_rates, bar.step_sizes, bar.log_Z)))),
                      "swap": float(np.min(bar.swap_rates))}))
    """
)


def test_devices_equal_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", DEVICES_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["same"], res
    np.testing.assert_allclose(*res["lz"], rtol=1e-5)
    # progress=True over the 4 devices: the same numbers; the bar's swap acceptance is over all chains
    assert res["progress_same"], res
    last = out.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert "pt production" in last and f"swap={res['swap']:.3g}" in last, out.stderr[-1000:]


def test_chains_started_near_one_point_of_one_mode_find_the_others():
    """2-D, 3 Dirichlet-weighted modes 12 sigma apart, all 16 chains started within 0.1 of one point
    of one mode: the default reference (centred there, sd 5 max(1, sd(x0)) = 5) still reaches the other
    modes, and the weights come out within 4 SE (SE from the per-chain weights). With the reference
    fitted to the starts' own spread (jitter 0.1) only the start mode was seen (weight error 0.42)."""
    t = fs.targets.mixture_benchmark(2, 3, 12.0, "dirichlet", seed=4)
    start = np.asarray(t.sample(jax.random.key(5), 1))[0]
    x0 = start + 0.1 * np.asarray(jax.random.normal(jax.random.key(6), (16, 2)))
    r = fs.samplers.parallel_tempering(3, t.log_prob, x0, 2000, mode_of=t.mode_of, num_modes=3, warn=False)
    lab = np.asarray(t.mode_of(r.positions.reshape(-1, 2))).reshape(16, -1)
    per_chain = (lab[..., None] == np.arange(3)).mean(1)
    w, se = per_chain.mean(0), per_chain.std(0, ddof=1) / 4
    assert np.all(np.abs(w - t.mode_weights) < 4 * se + 1e-3), (w, se, t.mode_weights)
    assert r.round_trips > 0


@pytest.mark.slow
def test_mixture_pt_recovers_weights_where_mala_fails():
    """4-D, 4 Dirichlet-weighted modes 10 sigma apart, chains over-dispersed: PT's weights within 4 SE
    (SE from the spread of per-chain weights) while plain MALA chains stay in their start basins."""
    t = fs.targets.mixture_benchmark(4, 4, 10.0, "dirichlet", seed=3)
    x0 = np.asarray(jax.random.normal(jax.random.key(0), (16, 4))) * 8
    r = fs.samplers.parallel_tempering(0, t.log_prob, x0, 2000, num_warmup=1000, mode_of=t.mode_of,
                                       num_modes=4, warn=False)
    lab = np.asarray(t.mode_of(r.positions.reshape(-1, 4))).reshape(16, -1)
    per_chain = (lab[..., None] == np.arange(4)).mean(1)
    w, se = per_chain.mean(0), per_chain.std(0, ddof=1) / 4
    assert np.all(np.abs(w - t.mode_weights) < 4 * se + 1e-3), (w, se, t.mode_weights)
    assert r.round_trips > 0
    mala = fs.sample(jax.random.key(1), fs.kernels.mala(t.log_prob, 0.5), x0, 3000)
    lab_m = np.asarray(t.mode_of(mala.positions[:, 1000:].reshape(-1, 4))).reshape(16, -1)
    switches = np.sum(lab_m[:, 1:] != lab_m[:, :-1])
    w_m = (lab_m[..., None] == np.arange(4)).mean((0, 1))
    assert switches == 0 and np.max(np.abs(w_m - t.mode_weights)) > np.max(np.abs(w - t.mode_weights))
