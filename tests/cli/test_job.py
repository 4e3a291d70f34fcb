"""``flowsamp run`` end to end on a small job: it runs, reports, writes results and a plot."""

import contextlib
import io
import json

import numpy as np
import pytest

from flowsamp.cli.config import ConfigError, from_dict
from flowsamp.cli.job import make_target
from flowsamp.cli.main import main


@pytest.fixture(scope="module")
def job_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("job")
    cfg = out / "job.toml"
    cfg.write_text(
        '[target]\nname = "gaussian_mixture"\nmeans = [[-2.0, 0.0], [2.0, 0.0]]\ncovs = 0.25\n'
        "weights = [0.3, 0.7]\n"
        '[sampler]\nkernel = "mala"\nstep_size = 0.1\n'
        "[run]\nchains = 16\nsteps = 400\nwarmup = 100\n"
        f'[output]\ndir = "{out}"\n'
    )
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = main(["run", str(cfg), "--quiet"])
    (out / "stdout.txt").write_text(buf.getvalue())
    return status, out


def test_job_writes_results_and_plot(job_output, capsys):
    status, out = job_output
    assert status == 0
    result = json.loads((out / "results.json").read_text())
    assert result["num_chains"] == 16 and result["num_draws"] == 400
    assert 0.2 < result["acceptance"] <= 1.0
    assert np.isfinite(result["max_rhat"]) and np.isfinite(result["min_ess_bulk"])
    assert len(result["mode_weights"]) == 2 and result["exact_mode_weights"] == [0.3, 0.7]
    png = (out / "samples.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_config_exits_2_naming_field(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[run]\nchains = 0\n")
    assert main(["run", str(cfg), "--quiet"]) == 2
    assert "run.chains" in capsys.readouterr().err


def test_unknown_target_is_named():
    with pytest.raises(ConfigError, match="unknown target 'nope'"):
        make_target("nope", {})
    with pytest.raises(ConfigError, match="target"):
        make_target("gaussian", {"mean": [0.0], "sigma": 3})
    assert from_dict({"target": {"name": "funnel"}}).target.options == {}


def test_job_prints_and_writes_the_verdict(job_output):
    _, out = job_output
    result = json.loads((out / "results.json").read_text())
    assert isinstance(result["converged"], bool) and isinstance(result["problems"], list)
    assert result["converged"] == (result["problems"] == [])
    # the verdict agrees with the numbers it is made of
    bad = result["max_rhat"] > 1.01 or result["min_ess_bulk"] < 400 or result["min_ess_tail"] < 400
    assert result["converged"] != bad
    text = (out / "stdout.txt").read_text()
    assert ("verdict: converged" in text) == result["converged"]
    for p in result["problems"]:
        assert p in text
