"""Job configuration for ``flowsamp run``: plain dataclasses read from TOML.

A config file has four tables; every key is optional and unknown keys are errors::

    [target]                 # any fs.targets constructor and its keyword arguments
    name = "four_mode_mixture"
    dim = 2

    [sampler]
    kernel = "adaptive_flow_mcmc"   # the sampler family, one of FAMILIES below
    step_size = 0.01         # initial step size (adapted during warm-up if adapt = true)
    adapt = true
    target_acceptance = 0.574   # default: fs.kernels.TARGET_ACCEPTANCE of the kernel
    num_integration_steps = 10   # hmc only
    flow = "rq_spline"       # adaptive_flow_mcmc: "rq_spline" | "realnvp" | "maf"
    flow_layers = 4
    flow_hidden = [32, 32]
    symmetries = ["flip:0", "flip:1", "flip:0,1"]   # optional sign-flip involutions g(x)
    base_scale = 3.0         # smc / tempered_smc / ais / importance: Gaussian base N(init_center or 0, s^2 I)

    [sampler.options]        # keyword arguments of the sampler function, e.g. for
    num_local_steps = 20     # adaptive_flow_mcmc (fs.samplers.adaptive_flow_mcmc)
    num_global_steps = 50

    [run]
    chains = 64
    steps = 4000
    warmup = 1000
    thin = 1
    seed = 0
    init_center = [5.0, 5.0] # start every chain near this point (else over-dispersed)
    init_scale = 0.1

    [output]
    dir = "flowsamp_output"
    plot = true

Families (``sampler.kernel``) and what ``[run]`` means for them:

* ``mala`` / ``hmc`` / ``rwmh`` / ``nuts``: :func:`flowsamp.sample` chains after ``warmup``
  steps of adaptation (dual averaging; Stan's window adaptation with a diagonal mass matrix
  for ``nuts``), ``steps`` kept every ``thin``;
* ``adaptive_flow_mcmc``: ``chains`` chains, schedule in ``[sampler.options]``;
* ``tempered_smc`` / ``smc`` / ``ais``: ``chains`` particles from the Gaussian base;
* ``parallel_tempering``: ``chains`` chains, ``warmup`` / ``steps`` warm-up and production;
* ``importance``: ``steps`` samples from the Gaussian proposal;
* ``wang_landau`` / ``multicanonical`` (``ising`` / ``potts`` targets): ``chains`` walkers,
  ``steps`` the sweep budget (WL ``max_sweeps``; multicanonical production sweeps).

``flowsamp run CONFIG --resume`` continues from the checkpoint in the output folder.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

KERNELS = ("mala", "hmc", "rwmh", "nuts")  # local kernels run by fs.sample
FAMILIES = KERNELS + ("adaptive_flow_mcmc", "tempered_smc", "smc", "ais", "parallel_tempering", "importance",
                      "wang_landau", "multicanonical")
LATTICE = ("wang_landau", "multicanonical")
FLOWS = ("rq_spline", "realnvp", "maf")


class ConfigError(ValueError):
    """A bad field in a job configuration; the message names the field."""


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    name: str = "four_mode_mixture"
    options: dict[str, Any] = dataclasses.field(default_factory=lambda: {"dim": 2})


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    kernel: str = "adaptive_flow_mcmc"
    step_size: float = 0.01
    adapt: bool = True
    target_acceptance: float | None = None  # default: kernels.TARGET_ACCEPTANCE of the kernel
    num_integration_steps: int = 10
    flow: str = "rq_spline"
    flow_layers: int = 4
    flow_hidden: tuple[int, ...] = (32, 32)
    symmetries: tuple[str, ...] = ("flip:0", "flip:1", "flip:0,1")
    base_scale: float = 3.0
    options: dict[str, Any] = dataclasses.field(
        default_factory=lambda: dict(
            num_local_steps=20,
            num_global_steps=50,
            max_training_loops=20,
            min_training_loops=4,
            num_production_loops=100,
            num_epochs=10,
            buffer_points_per_chain=20,
        )
    )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    chains: int = 100
    steps: int = 4000
    warmup: int = 1000
    thin: int = 1
    seed: int = 0
    init_center: tuple[float, ...] | None = None
    init_scale: float = 0.1


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    dir: str = "flowsamp_output"
    plot: bool = True


@dataclasses.dataclass(frozen=True)
class JobConfig:
    target: TargetConfig = dataclasses.field(default_factory=TargetConfig)
    sampler: SamplerConfig = dataclasses.field(default_factory=SamplerConfig)
    run: RunConfig = dataclasses.field(default_factory=lambda: RunConfig(init_center=(5.0, 5.0)))
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)


def _check_type(field: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{field} must be a number, got {value!r}")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{field} must be {name}, got {value!r}")
    return value


def parse_flip(field: str, spec: Any) -> tuple[int, ...]:
    """Parse a sign-flip symmetry ``"flip:i,j,..."`` into the flipped coordinate indices."""
    if not isinstance(spec, str) or not spec.startswith("flip:"):
        raise ConfigError(f'{field}: expected entries like "flip:0" or "flip:0,1", got {spec!r}')
    try:
        idx = tuple(int(i) for i in spec[5:].split(","))
    except ValueError as err:
        raise ConfigError(f"{field}: bad coordinate list in {spec!r}") from err
    if not idx or min(idx) < 0:
        raise ConfigError(f"{field}: bad coordinate list in {spec!r}")
    return idx


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
    sampler_table = dict(data.get("sampler", {}))
    family = sampler_table.get("kernel", SamplerConfig.kernel)
    # only the adaptive sampler has default options (its schedule); the others start empty
    defaults = SamplerConfig().options if family == "adaptive_flow_mcmc" else {}
    if "options" in sampler_table:
        _check_type("sampler.options", sampler_table["options"], dict)
        sampler_table["options"] = {**defaults, **sampler_table["options"]}
    else:
        sampler_table["options"] = defaults
    sampler = _build(SamplerConfig, sampler_table, "sampler", extra_to=None)
    if sampler.kernel not in FAMILIES:
        raise ConfigError(f"sampler.kernel must be one of {FAMILIES}, got {sampler.kernel!r}")
    if (sampler.kernel in LATTICE) != (target_cfg.name in ("ising", "potts")):
        raise ConfigError(
            f"sampler.kernel {sampler.kernel!r} and target.name {target_cfg.name!r} do not fit: "
            f"{' / '.join(LATTICE)} need an ising or potts target, and lattice targets need one of them"
        )
    _check_type("sampler.base_scale", sampler.base_scale, (int, float))
    if not sampler.base_scale > 0:
        raise ConfigError(f"sampler.base_scale must be > 0, got {sampler.base_scale}")
    _check_type("sampler.step_size", sampler.step_size, (int, float))
    if not sampler.step_size > 0:
        raise ConfigError(f"sampler.step_size must be > 0, got {sampler.step_size}")
    _check_type("sampler.adapt", sampler.adapt, bool)
    if sampler.target_acceptance is not None:
        _check_type("sampler.target_acceptance", sampler.target_acceptance, (int, float))
    if sampler.target_acceptance is not None and not 0 < sampler.target_acceptance < 1:
        raise ConfigError(f"sampler.target_acceptance must be in (0, 1), got {sampler.target_acceptance}")
    _positive_int("sampler.num_integration_steps", sampler.num_integration_steps)
    if sampler.flow not in FLOWS:
        raise ConfigError(f"sampler.flow must be one of {FLOWS}, got {sampler.flow!r}")
    _positive_int("sampler.flow_layers", sampler.flow_layers)
    _check_type("sampler.flow_hidden", sampler.flow_hidden, (list, tuple))
    for h in sampler.flow_hidden:
        _positive_int("sampler.flow_hidden", h)
    _check_type("sampler.symmetries", sampler.symmetries, (list, tuple))
    for sym in sampler.symmetries:
        parse_flip("sampler.symmetries", sym)
    _check_type("sampler.options", sampler.options, dict)
    sampler = dataclasses.replace(
        sampler, flow_hidden=tuple(sampler.flow_hidden), symmetries=tuple(sampler.symmetries)
    )
    run = _build(RunConfig, data["run"], "run") if "run" in data else JobConfig().run
    _positive_int("run.chains", run.chains)
    _positive_int("run.steps", run.steps)
    _positive_int("run.warmup", run.warmup, allow_zero=True)
    _positive_int("run.thin", run.thin)
    _check_type("run.seed", run.seed, int)
    if run.init_center is not None:
        _check_type("run.init_center", run.init_center, (list, tuple))
        for c in run.init_center:
            _check_type("run.init_center", c, (int, float))
        run = dataclasses.replace(run, init_center=tuple(float(c) for c in run.init_center))
    _check_type("run.init_scale", run.init_scale, (int, float))
    if not run.init_scale > 0:
        raise ConfigError(f"run.init_scale must be > 0, got {run.init_scale}")
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
