"""Job configuration for ``flowsamp run``: plain dataclasses read from TOML.

A config file has four tables; every key is optional and unknown keys are errors::

    [target]                 # any fs.targets constructor and its keyword arguments
    name = "muller_brown"
    beta = 0.1

    [sampler]
    kernel = "mala"          # "mala" | "hmc" | "rwmh" | "adaptive_flow_mcmc"
    step_size = 0.01         # initial step size (adapted during warm-up if adapt = true)
    adapt = true
    target_acceptance = 0.57
    num_integration_steps = 10   # hmc only

    [run]
    chains = 64
    steps = 4000
    warmup = 1000
    thin = 1
    seed = 0

    [output]
    dir = "flowsamp_output"
    plot = true
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

KERNELS = ("mala", "hmc", "rwmh", "adaptive_flow_mcmc")


class ConfigError(ValueError):
    """A bad field in a job configuration; the message names the field."""


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    name: str = "muller_brown"
    options: dict[str, Any] = dataclasses.field(default_factory=lambda: {"beta": 0.1})


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    kernel: str = "mala"
    step_size: float = 0.01
    adapt: bool = True
    target_acceptance: float = 0.57
    num_integration_steps: int = 10
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    chains: int = 64
    steps: int = 4000
    warmup: int = 1000
    thin: int = 1
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    dir: str = "flowsamp_output"
    plot: bool = True


@dataclasses.dataclass(frozen=True)
class JobConfig:
    target: TargetConfig = dataclasses.field(default_factory=TargetConfig)
    sampler: SamplerConfig = dataclasses.field(default_factory=SamplerConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)


def _check_type(field: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{field} must be a number, got {value!r}")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{field} must be {name}, got {value!r}")
    return value


def _positive_int(field: str, value: Any, allow_zero: bool = False) -> int:
    _check_type(field, value, int)
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{field} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value}")
    return value


def _build(cls: type, table: dict[str, Any], section: str, extra_to: str | None = None) -> Any:
    """Instantiate a config dataclass from a TOML table, checking keys and types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in table.items():
        if key in fields and key != extra_to:
            kwargs[key] = value
        elif extra_to is not None:
            extra[key] = value
        else:
            allowed = ", ".join(sorted(fields))
            raise ConfigError(f"unknown field {section}.{key} (allowed: {allowed})")
    if extra_to is not None:
        kwargs[extra_to] = extra
    return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> JobConfig:
    """Build and validate a :class:`JobConfig` from a parsed TOML document."""
    if not isinstance(data, dict):
        raise ConfigError("a config must be a TOML table")
    sections = {"target", "sampler", "run", "output"}
    for key in data:
        if key not in sections:
            raise ConfigError(f"unknown section [{key}] (allowed: {', '.join(sorted(sections))})")
        if not isinstance(data[key], dict):
            raise ConfigError(f"[{key}] must be a table")
    target = dict(data.get("target", {}))
    if "name" in target:
        _check_type("target.name", target["name"], str)
    target_cfg = TargetConfig(
        name=target.pop("name", TargetConfig.name),
        options=target if ("target" in data) else TargetConfig().options,
    )
    sampler = _build(SamplerConfig, data.get("sampler", {}), "sampler", extra_to=None)
    if sampler.kernel not in KERNELS:
        raise ConfigError(f"sampler.kernel must be one of {KERNELS}, got {sampler.kernel!r}")
    _check_type("sampler.step_size", sampler.step_size, (int, float))
    if not sampler.step_size > 0:
        raise ConfigError(f"sampler.step_size must be > 0, got {sampler.step_size}")
    _check_type("sampler.adapt", sampler.adapt, bool)
    _check_type("sampler.target_acceptance", sampler.target_acceptance, (int, float))
    if not 0 < sampler.target_acceptance < 1:
        raise ConfigError(f"sampler.target_acceptance must be in (0, 1), got {sampler.target_acceptance}")
    _positive_int("sampler.num_integration_steps", sampler.num_integration_steps)
    run = _build(RunConfig, data.get("run", {}), "run")
    _positive_int("run.chains", run.chains)
    _positive_int("run.steps", run.steps)
    _positive_int("run.warmup", run.warmup, allow_zero=True)
    _positive_int("run.thin", run.thin)
    _check_type("run.seed", run.seed, int)
    if run.thin > run.steps:
        raise ConfigError(f"run.thin ({run.thin}) must not exceed run.steps ({run.steps})")
    output = _build(OutputConfig, data.get("output", {}), "output")
    _check_type("output.dir", output.dir, str)
    _check_type("output.plot", output.plot, bool)
    return JobConfig(target=target_cfg, sampler=sampler, run=run, output=output)


def load(path: str | Path) -> JobConfig:
    """Read a TOML job file; a syntax error or bad field raises :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from err
    return from_dict(data)
