"""``flowsamp run`` for every sampler family at small sizes: results.json + samples.nc
(ArviZ InferenceData with chain/draw dimensions), ``--resume`` after an interruption equals
the uninterrupted run, and a folder of another job is refused naming the field."""

import json

import arviz as az
import numpy as np
import pytest

from flowsamp import io as fio
from flowsamp.cli.config import ConfigError, from_dict
from flowsamp.cli.job import run_job
from flowsamp.cli.main import main

MIX = {"name": "gaussian_mixture", "means": [[-2.0, 0.0], [2.0, 0.0]], "covs": 0.25, "weights": [0.3, 0.7]}
ISING = {"name": "ising", "L": 3, "beta": 0.4}
pytestmark = pytest.mark.filterwarnings("ignore::flowsamp.NotConvergedWarning")  # tiny runs on purpose

JOBS = {
    "importance": ({"target": MIX, "sampler": {"kernel": "importance"}, "run": {"steps": 2048}}, False),
    "wang_landau": ({"target": ISING, "sampler": {"kernel": "wang_landau", "options": {"check_every": 20}},
                     "run": {"chains": 2, "steps": 100}}, False),
    "multicanonical": ({"target": ISING, "sampler": {"kernel": "multicanonical",
                                                     "options": {"num_iterations": 1, "sweeps_per_iteration": 40,
                                                                 "chunk": 20}},
                        "run": {"chains": 2, "steps": 40}}, True),
    "tempered_smc": ({"target": MIX, "sampler": {"kernel": "tempered_smc", "options": {"num_mcmc_steps": 5}},
                      "run": {"chains": 256}}, True),
    "smc": ({"target": MIX, "sampler": {"kernel": "smc", "options": {"num_mcmc_steps": 5}}, "run": {"chains": 256}},
            True),
    "ais": ({"target": MIX, "sampler": {"kernel": "ais", "options": {"num_mcmc_steps": 5}}, "run": {"chains": 256}},
            True),
    "parallel_tempering": ({"target": MIX, "sampler": {"kernel": "parallel_tempering"},
                            "run": {"chains": 4, "steps": 100, "warmup": 100}}, True),
    "nuts": ({"target": MIX, "sampler": {"kernel": "nuts"}, "run": {"chains": 4, "steps": 100, "warmup": 100}}, True),
    "hmc": ({"target": MIX, "sampler": {"kernel": "hmc", "num_integration_steps": 5},
             "run": {"chains": 4, "steps": 100, "warmup": 100}}, True),
    "rwmh": ({"target": MIX, "sampler": {"kernel": "rwmh", "step_size": 0.5},
              "run": {"chains": 4, "steps": 100, "warmup": 100}}, True),
    "adaptive_flow_mcmc": ({"target": MIX, "sampler": {"kernel": "adaptive_flow_mcmc", "flow": "realnvp",
                                                       "flow_layers": 2, "flow_hidden": [8], "symmetries": [],
                                                       "options": {"max_training_loops": 2, "min_training_loops": 1,
                                                                   "num_production_loops": 2, "target_ess": None}},
                            "run": {"chains": 8}}, True),
}


def _run(data, out, resume=False):
    return run_job(from_dict({**data, "output": {"dir": str(out), "plot": False}}), progress=False,
                   echo=lambda *a: None, resume=resume)


@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=pytest.mark.slow) if slow else f for f, (_, slow) in JOBS.items()]
)
def test_family_writes_results_and_inference_data(family, tmp_path):
    data, _ = JOBS[family]
    result = _run(data, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["kernel"] == family and isinstance(saved["converged"], bool)
    idata = az.from_netcdf(tmp_path / "samples.nc")
    assert "posterior" in idata.groups()
    sizes = dict(idata.posterior.sizes)
    assert "chain" in sizes and "draw" in sizes
    if family in ("wang_landau", "multicanonical"):
        assert np.isfinite(saved["log_g_error"]) and saved["log_g_error"] < 2.0
        assert idata.constant_data["log_g"].shape == (len(saved["energies"]),)
    elif family in ("importance", "tempered_smc", "smc", "ais"):
        assert abs(result["log_Z"]) < 1.0  # exact ln Z = 0 (normalised mixture); tiny runs
    else:
        assert sizes["chain"] == data["run"]["chains"]


class Called(Exception):
    pass


@pytest.mark.parametrize("progress", [False, True])
def test_every_family_passes_progress(monkeypatch, tmp_path, progress):
    """Each family's runner hands ``progress=`` to its sampler (when the sampler takes it): the
    sampler is replaced by a stub with its signature that records its keyword arguments."""
    import inspect

    from flowsamp import samplers
    from flowsamp.cli import families

    seen = {}
    for name in ("smc", "ais", "tempered_smc", "importance_sampling", "parallel_tempering", "wang_landau",
                 "multicanonical"):
        original = getattr(samplers, name)

        def stub(*args, _name=name, **kwargs):
            seen[_name] = kwargs
            raise Called(_name)

        stub.__signature__ = inspect.signature(original)
        stub.__name__ = name
        monkeypatch.setattr(samplers, name, stub)
    for family in families.RUNNERS:
        data, _ = JOBS[family]
        with pytest.raises(Called):
            run_job(from_dict({**data, "output": {"dir": str(tmp_path / family), "plot": False}}), progress=progress,
                    echo=lambda *a: None)
    assert len(seen) == 7, seen  # every stubbed sampler was reached by its family
    for n in seen:
        if n == "importance_sampling":  # one compiled call: it has no bar
            assert "progress" not in seen[n]
        else:
            assert seen[n].get("progress") is progress, (n, seen[n])


LOCAL = {"target": MIX, "sampler": {"kernel": "mala", "step_size": 0.3},
         "run": {"chains": 4, "steps": 80, "warmup": 40, "thin": 2}}


class Interrupt(Exception):
    pass


def test_cli_resume_after_interruption_equals_uninterrupted_run(tmp_path, monkeypatch):
    _run(LOCAL, tmp_path / "plain")
    save, calls = fio.save, []

    def failing(*args, **kwargs):  # the warm-up save, then production checkpoints every 4 steps
        save(*args, **kwargs)
        calls.append(args[0])
        if len(calls) == 5:
            raise Interrupt

    monkeypatch.setattr(fio, "save", failing)
    with pytest.raises(Interrupt):
        _run(LOCAL, tmp_path / "killed")
    monkeypatch.undo()
    done = fio.read_meta(tmp_path / "killed" / "checkpoint.msgpack")["done"]
    assert 0 < done < 80
    assert main(["run", "--quiet", "--resume", "--out", str(tmp_path / "killed"), _toml(tmp_path, LOCAL)]) == 0
    a = az.from_netcdf(tmp_path / "plain" / "samples.nc")
    b = az.from_netcdf(tmp_path / "killed" / "samples.nc")
    for group in ("posterior", "sample_stats"):
        for name in a[group].data_vars:
            assert np.array_equal(a[group][name].values, b[group][name].values), (group, name)
    # the folder now holds this job: resuming another config there is refused, naming the field
    other = {**LOCAL, "run": {**LOCAL["run"], "seed": 1}}
    with pytest.raises(ConfigError, match="run.seed: 0 in the folder's job, 1 now"):
        _run(other, tmp_path / "killed", resume=True)


def _toml(tmp_path, data):
    path = tmp_path / "job.toml"
    lines = ['[target]', 'name = "gaussian_mixture"', 'means = [[-2.0, 0.0], [2.0, 0.0]]', 'covs = 0.25',
             'weights = [0.3, 0.7]', '[sampler]', 'kernel = "mala"', 'step_size = 0.3', '[run]']
    lines += [f"{k} = {v}" for k, v in data["run"].items()] + ["[output]", "plot = false"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)
