"""What ``flowsamp run`` writes: ``results.json`` (the run summary, JSON-ready), ``samples.nc``
(an ArviZ ``InferenceData`` in netCDF: ``posterior`` with ``chain`` / ``draw`` dimensions and
``sample_stats`` where the sampler has them) and ``job.json`` (the config of the run in the
folder, so ``--resume`` refuses a folder that holds another job)."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from flowsamp.cli.config import ConfigError, JobConfig

__all__ = ["jsonable", "write_results", "draws_idata", "particles_idata", "lattice_idata", "check_job"]

CHECKPOINT = "checkpoint.msgpack"


def jsonable(x: Any) -> Any:
    """``x`` with numpy arrays / scalars as lists / Python numbers, non-finite floats as ``None``."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "__array__") and not isinstance(x, (str, bytes)):
        a = np.asarray(x)
        return jsonable(a.tolist()) if a.ndim else jsonable(a.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return repr(x)


def write_results(out_dir: Path, result: dict, idata: Any = None) -> list[Path]:
    """Write ``results.json`` and, when given, ``samples.nc``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.json"]
    if idata is not None:
        idata.to_netcdf(str(out_dir / "samples.nc"))
        paths.append(out_dir / "samples.nc")
        result["samples"] = str(out_dir / "samples.nc")
    paths[0].write_text(json.dumps(jsonable(result), indent=2))
    return paths


def draws_idata(positions: Any, stats: dict | None = None, var_name: str = "x") -> Any:
    """``InferenceData`` of chains' draws ``(chains, draws, dim)`` and per-draw ``stats``."""
    import arviz

    x = np.asarray(positions)
    if x.ndim == 2:
        x = x[..., None]
    stats = {k: np.asarray(v) for k, v in (stats or {}).items() if v is not None and np.shape(v) == x.shape[:2]}
    return arviz.from_dict(posterior={var_name: x}, sample_stats=stats or None)


def particles_idata(particles: Any, log_weights: Any = None, var_name: str = "x") -> Any:
    """``InferenceData`` of weighted particles ``(n, dim)``: one chain of ``n`` draws, with the
    normalised ``log_weight`` in ``sample_stats`` (draws are not equally weighted then)."""
    import arviz

    x = np.asarray(particles)[None]
    stats = None
    if log_weights is not None:
        lw = np.asarray(log_weights, np.float64)
        finite = np.isfinite(lw)
        norm = np.log(np.sum(np.exp(lw[finite] - lw[finite].max()))) + lw[finite].max() if finite.any() else 0.0
        stats = {"log_weight": (lw - norm)[None]}
    return arviz.from_dict(posterior={var_name: x}, sample_stats=stats)


def lattice_idata(final_spins: Any, energies: Any, log_g: Any, histogram: Any) -> Any:
    """``InferenceData`` of a flat-histogram run: the walkers' final spins as ``posterior``
    (chain = walker, one draw) and ln g(E) with its energies and histogram as ``constant_data``."""
    import arviz

    spins = np.asarray(final_spins)[:, None]
    const = {"energy": np.asarray(energies), "log_g": np.asarray(log_g), "histogram": np.asarray(histogram)}
    dims = {"energy": ["level"], "log_g": ["level"], "histogram": [f"h{i}" for i in range(np.ndim(histogram) - 1)]
            + ["level"]}
    with warnings.catch_warnings():  # one draw per walker is what this holds, not a short run
        warnings.filterwarnings("ignore", message="More chains")
        return arviz.from_dict(posterior={"spins": spins}, constant_data=const, dims=dims)


def _config_dict(config: JobConfig) -> dict:
    d = jsonable(dataclasses.asdict(config))
    d.pop("output", None)  # where it is written and whether it is plotted do not change the run
    return d


def _diff(a: Any, b: Any, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
            if d:
                return d
        return None
    return None if a == b else f"{prefix}: {a!r} in the folder's job, {b!r} now"


def check_job(out_dir: Path, config: JobConfig, resume: bool) -> None:
    """Record the job in ``out_dir/job.json``; with ``resume``, a folder holding another job is a
    :class:`ConfigError` naming the first differing field."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "job.json"
    now = _config_dict(config)
    if resume and path.exists():
        try:
            before = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"--resume: {path} is not valid JSON: {err}") from err
        d = _diff(before, now)
        if d:
            raise ConfigError(f"--resume: {out_dir} holds another job ({d}); use another output folder")
    path.write_text(json.dumps(now, indent=2))
