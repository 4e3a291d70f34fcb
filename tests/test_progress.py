"""Progress bars of every sampler family (``flowsamp._progress``).

Each sampler runs twice on a tiny problem, with ``progress=False`` and ``progress=True``: the
results must be equal bit for bit (the bar is host-side between compiled calls; where it makes
the run compile in pieces, the pieces must not change a number), and the bar written to stderr
must carry the figures that sampler's users watch (acceptance and ESS, β, swap acceptance,
ln f and flatness). Wall-clock fields are left out of the comparison.
"""

from __future__ import annotations

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowsamp as fs
from flowsamp import autoregressive as ar
from flowsamp._progress import ProgressBar, min_bulk_ess

TIMING = ("wall_s", "elapsed", "timings", "cpu_seconds", "diagnostics", "problems")
ISING = fs.targets.ising(3, 0.4)
GAUSS = lambda x: -0.5 * jnp.sum((x - 1.0) ** 2)  # noqa: E731
BASE = fs.targets.gaussian(jnp.zeros(2), 4.0 * jnp.eye(2))


def _sample(progress):
    kernel = _KERNEL
    return fs.sample(0, kernel, jnp.zeros((4, 2)), 40, warn=False, progress=progress)


_KERNEL = fs.kernels.mala(GAUSS, 0.5)


def _smc(progress):
    return fs.samplers.smc(jax.random.key(1), GAUSS, BASE, 128, num_islands=2, num_mcmc_steps=2, max_mcmc_steps=2,
                           warn=False, progress=progress)


def _pt(progress):
    x0 = np.random.default_rng(0).normal(size=(4, 2)) * 2.0
    return fs.samplers.parallel_tempering(jax.random.key(8), GAUSS, x0, num_steps=40, num_warmup=30,
                                          num_temperatures=5, warn=False, progress=progress)


def _wl(progress):
    return fs.samplers.wang_landau(0, ISING, num_walkers=2, check_every=10, max_sweeps=60, progress=progress)


def _muca(progress):
    return fs.samplers.multicanonical(jax.random.key(6), ISING, num_walkers=2, num_iterations=2,
                                      sweeps_per_iteration=40, num_production_sweeps=40, chunk=20, progress=progress)


def _rewl(progress):
    return fs.samplers.replica_exchange_wang_landau(jax.random.key(0), ISING, num_windows=2, walkers_per_window=2,
                                                    max_sweeps=40, check_every=20, exchange_every=10,
                                                    progress=progress)


def _nwl(progress):
    return fs.samplers.neural_wang_landau(jax.random.key(0), ISING, ar.made(3, depth=1, width=2), batch_size=16,
                                          max_iterations=20, check_every=10, progress=progress)


def _van(progress):
    return fs.samplers.van(jax.random.key(0), ISING, ar.made(3, depth=1, width=2), num_steps=10, batch_size=16,
                           num_samples=64, progress=progress)


def _craft(progress):
    return fs.samplers.craft(jax.random.key(10), GAUSS, BASE, fs.flows.realnvp(2, num_layers=1, hidden=(8,)), 64,
                             num_temps=3, num_iterations=3, num_eval_runs=3, num_mcmc_steps=2, warn=False,
                             progress=progress)


def _fab(progress):
    return fs.samplers.fab(jax.random.key(9), GAUSS, fs.flows.realnvp(2, num_layers=2, hidden=(8,)), num_iterations=4,
                           batch_size=32, buffer_min_batches=4, buffer_max_batches=8, updates_per_iteration=2,
                           chunk_size=2, num_eval_samples=256, num_intermediate=2, num_leapfrog=2, warn=False,
                           progress=progress)


def _surrogate(progress):
    x0 = jnp.asarray(np.random.default_rng(0).normal(size=(4, 2)), jnp.float32)
    return fs.samplers.surrogate_mcmc(jax.random.key(0), GAUSS, x0, kernel_params={"scale": 1.0},
                                      surrogate=fs.samplers.mlp_surrogate(2, hidden=(8,)), num_rounds=2,
                                      steps_per_round=10, num_production_steps=20, train_steps=5, batch_size=16,
                                      vectorize_chains=True, progress=progress)


def _adaptive(progress):
    flow = fs.flows.rq_spline(2, num_layers=1, hidden=(8,), num_bins=4)
    particles = np.random.default_rng(0).normal(size=(256, 2)).astype(np.float32)
    return fs.samplers.adaptive_flow_mcmc(
        jax.random.key(7), GAUSS, flow, jnp.linspace(-1.0, 1.0, 32).reshape(16, 2), num_local_steps=8,
        num_global_steps=8, max_training_loops=3, early_stop=False, num_production_loops=2, target_ess=None,
        explore_particles=particles, explore_fit_steps=20, num_epochs=2, batch_size=64, progress=progress)


#: sampler -> (run, the figures its bar must show)
CASES = {
    "sample": (_sample, ("acc=", "min_ess=")),
    "smc": (_smc, ("beta=", "ess=", "acc=")),
    "parallel_tempering": (_pt, ("swap=", "acc=", "trips=", "pt production")),
    "wang_landau": (_wl, ("ln_f=", "flat=", "err=")),
    "multicanonical": (_muca, ("flat=", "visited=", "production")),
    "replica_exchange_wang_landau": (_rewl, ("ln_f=", "flat=", "exchange=")),
    "neural_wang_landau": (_nwl, ("ln_f=", "acc=", "flat=")),
    "van": (_van, ("loss=", "beta_t=", "ess=")),
    "craft": (_craft, ("log_Z=", "loss=", "ess=")),
    "fab": (_fab, ("loss=", "ais_ess=", "acc=")),
    "surrogate_mcmc": (_surrogate, ("acc=", "first=", "min_ess=")),
    "adaptive_flow_mcmc": (_adaptive, ("local=", "glob=", "min_ess=")),
}
HEAVY = {"craft", "fab", "surrogate_mcmc", "adaptive_flow_mcmc", "neural_wang_landau", "van"}


def _leaves(result) -> dict:
    items = result._asdict().items() if hasattr(result, "_asdict") else enumerate(result)
    out = {}
    for name, value in items:
        if name in TIMING or callable(value) or isinstance(value, fs.base.Flow):
            continue
        try:
            flat, _ = jax.tree_util.tree_flatten_with_path(value)
        except TypeError:
            continue
        for path, x in flat:
            if any(t in jax.tree_util.keystr(path) for t in TIMING):
                continue
            if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                x = jax.random.key_data(x)
            if isinstance(x, (str, type(None))) or callable(x):
                continue
            out[f"{name}{jax.tree_util.keystr(path)}"] = np.asarray(x)
    return out


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in CASES])
def test_progress_on_equals_off_and_shows_figures(name, capsys):
    run, figures = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        off = _leaves(run(False))
        capsys.readouterr()
        on = _leaves(run(True))
    err = capsys.readouterr().err
    assert off.keys() == on.keys() and off, name
    for k in off:
        np.testing.assert_array_equal(on[k], off[k], err_msg=f"{name}: {k}")
    for f in figures:
        assert f in err, f"{name}: {f!r} not in the bar: {err[-500:]!r}"


def test_fit_progress_on_equals_off(capsys):
    flow = fs.flows.realnvp(2, num_layers=1, hidden=(4,))
    key = jax.random.key(0)
    loss = fs.train.reverse_kl(flow, GAUSS, 32)
    runs = [fs.train.fit(key, flow, flow.init(key), loss, optax.adam(1e-2), 6, chunk_size=2, progress=p)
            for p in (False, True)]
    err = capsys.readouterr().err
    for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert "loss=" in err and "ess=" in err


def test_every_sampler_family_takes_progress():
    for name in (*CASES, "ais", "tempered_smc"):
        fn = getattr(fs.samplers, name) if hasattr(fs.samplers, name) else getattr(fs, name)
        assert "progress" in inspect.signature(fn).parameters, name


def test_only_process_0_draws(monkeypatch, capsys):
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    bar = ProgressBar(True, 10, "other process")
    assert not bar
    bar.update(3, acc=0.5)
    bar.close()
    monkeypatch.undo()
    with ProgressBar(True, 10, "process zero") as bar:
        assert bar
        bar.update(3, acc=0.51234, n=7, note="x", nan=float("nan"), skip=None)
    err = capsys.readouterr().err
    assert "other process" not in err
    assert "process zero" in err and "acc=0.512" in err and "n=7" in err and "note=x" in err and "skip" not in err


def test_min_bulk_ess_matches_rank_diagnostics():
    x = np.random.default_rng(0).normal(size=(4, 50, 3))
    expect = float(np.min(fs.estimators.rank_diagnostics(x)["ess_bulk"]))
    assert min_bulk_ess(x) == expect
    assert min_bulk_ess(x[:, :3]) is None
