"""Job configs: defaults, TOML parsing, and errors that name the bad field."""

import pytest

from flowsamp.cli.config import ConfigError, JobConfig, from_dict, load


def test_defaults_are_the_embedded_job():
    cfg = from_dict({})
    assert cfg == JobConfig()
    assert cfg.target.name == "four_mode_mixture" and cfg.target.options == {"dim": 2}
    assert cfg.sampler.kernel == "adaptive_flow_mcmc" and cfg.run.init_center == (5.0, 5.0)


def test_toml_round_trip(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text(
        '[target]\nname = "gaussian"\nmean = [0.0, 1.0]\ncov = [[1.0, 0.0], [0.0, 2.0]]\n'
        '[sampler]\nkernel = "hmc"\nstep_size = 0.3\n[run]\nchains = 8\nsteps = 100\nseed = 3\n'
    )
    cfg = load(path)
    assert cfg.target.name == "gaussian"
    assert cfg.target.options == {"mean": [0.0, 1.0], "cov": [[1.0, 0.0], [0.0, 2.0]]}
    assert cfg.sampler.kernel == "hmc" and cfg.sampler.step_size == 0.3
    assert (cfg.run.chains, cfg.run.steps, cfg.run.seed) == (8, 100, 3)


@pytest.mark.parametrize(
    "data, field",
    [
        ({"run": {"chains": -3}}, "run.chains"),
        ({"run": {"chains": 2.5}}, "run.chains"),
        ({"run": {"steps": 0}}, "run.steps"),
        ({"run": {"stpes": 10}}, "run.stpes"),
        ({"sampler": {"kernel": "nutz"}}, "sampler.kernel"),
        ({"sampler": {"kernel": "wang_landau"}}, "target.name"),
        ({"target": {"name": "ising", "L": 4, "beta": 0.4}, "sampler": {"kernel": "mala"}}, "sampler.kernel"),
        ({"sampler": {"base_scale": 0.0}}, "sampler.base_scale"),
        ({"sampler": {"step_size": -1.0}}, "sampler.step_size"),
        ({"sampler": {"target_acceptance": 1.5}}, "sampler.target_acceptance"),
        ({"output": {"plot": "yes"}}, "output.plot"),
        ({"target": {"name": 3}}, "target.name"),
        ({"chains": 3}, "[chains]"),
        ({"sampler": {"flow": "glow"}}, "sampler.flow"),
        ({"sampler": {"symmetries": ["rotate:0"]}}, "sampler.symmetries"),
        ({"run": {"init_center": ["a"]}}, "run.init_center"),
    ],
)
def test_bad_field_is_named(data, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        from_dict(data)


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nchains = 3")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load(bad)


def test_every_example_config_in_scripts_parses():
    from pathlib import Path

    from flowsamp.cli.config import FAMILIES

    paths = sorted((Path(__file__).parents[2] / "scripts").glob("*.toml"))
    kinds = {load(p).sampler.kernel for p in paths}
    assert len(paths) >= 10 and kinds >= set(FAMILIES) - {"ais"}  # ais: kernel = "ais" in mixture_smc.toml
