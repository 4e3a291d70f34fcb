r"""One run summary for every sampler result: the numbers a user reads, with one set of names.

:func:`summarize` is used by ``flowsamp run`` (its ``results.json``), by the samplers' reports
and by the benchmarks. It reads a result by its fields (no sampler is imported, so this
module stays in the estimators layer) and returns a flat, JSON-ready ``dict``:

=========================  ==========================================================
``sampler``                result type (``"draws"`` for a raw ``(chains, draws, dim)`` array)
``num_chains``             chains (MCMC) or 1 (IS / SMC)
``num_draws``              kept draws per chain (particles / samples for IS / SMC)
``num_samples``            ``num_chains * num_draws``
``wall_s``                 wall time, compilation included (when known)
``acceptance``             mean local acceptance
``global_acceptance``      mean flow (global) acceptance (flow samplers)
``training_loops``         flow training loops (adaptive flow MCMC)
``max_rhat``               rank-normalised split R-hat, max over coordinates
``min_ess_bulk``           bulk ESS, min over coordinates (``min_ess_tail`` likewise)
``min_ess_bulk_per_s``     ``min_ess_bulk / wall_s``
``num_divergent``          divergent proposals (``num_nonfinite``: non-finite ones)
``ess``, ``k_hat``         Kish ESS and Pareto k-hat (importance sampling; ``ess`` for SMC)
``log_Z``, ``log_Z_se``    evidence estimate (IS / SMC); ``exact_log_Z`` from the target
``mode_weights``           mode weights (``mode_weights_se``: between-chain SE for MCMC)
``exact_mode_weights``     ``target.mode_weights``
``mode_weights_z``         ``|w - exact| / SE`` per mode; ``max_z``, ``max_abs_error``
``converged``, ``problems``  the verdict (the result's own, else computed here)
=========================  ==========================================================

Keys that do not apply to a result are absent.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from flowsamp.estimators.modes import mode_weights as _mode_weights
from flowsamp.estimators.verdict import Thresholds, mcmc_verdict
from flowsamp.estimators.weights import ess as _kish_ess

__all__ = ["summarize"]


def _f(x: Any) -> float:
    return float(np.asarray(x))


def _labels(target: Any, x: np.ndarray) -> np.ndarray | None:
    """``target.mode_of`` on points ``(..., dim)``, labels of shape ``x.shape[:-1]``."""
    mode_of = getattr(target, "mode_of", None)
    if mode_of is None:
        return None
    try:
        labels = np.asarray(mode_of(jnp.asarray(x.reshape(-1, x.shape[-1]))))
    except NotImplementedError:  # a target that defines no modes
        return None
    return labels.reshape(x.shape[:-1]).astype(np.int32)


def _num_modes(target: Any) -> int | None:
    exact = getattr(target, "mode_weights", None)
    k = getattr(target, "num_modes", None)
    if k is None and exact is not None:
        k = len(np.asarray(exact))
    return None if k is None else int(k)


def _modes(res: dict, labels: np.ndarray, target: Any, log_w: Any = None) -> None:
    k = _num_modes(target)
    if k is None or k < 2:
        return
    w, se = _mode_weights(jnp.asarray(labels), k, None if log_w is None else jnp.asarray(log_w))
    w, se = np.asarray(w, np.float64), np.asarray(se, np.float64)
    res["mode_weights"], res["mode_weights_se"] = w.tolist(), se.tolist()
    exact = getattr(target, "mode_weights", None)
    if exact is not None:
        exact = np.asarray(exact, np.float64)
        err = np.abs(w - exact)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(err == 0, 0.0, err / se)
        res.update(exact_mode_weights=exact.tolist(), mode_weights_z=z.tolist(),
                   max_abs_error=float(err.max()), max_z=float(np.max(z)))


def _from_diagnostics(res: dict, d: dict) -> None:
    for key in ("max_rhat", "min_ess_bulk", "min_ess_tail", "num_divergent", "num_nonfinite", "acceptance",
                "global_acceptance"):
        v = d.get(key)
        if v is not None and np.ndim(v) == 0 and key not in res:
            res[key] = v.item() if hasattr(v, "item") else v


def summarize(
    result: Any,
    target: Any = None,
    *,
    wall_s: float | None = None,
    acceptance: float | None = None,
    num_divergent: int | None = None,
    num_nonfinite: int | None = None,
    thresholds: Thresholds | None = None,
) -> dict:
    r"""The run summary of a sampler result (keys in the module docstring).

    Parameters
    ----------
    result
        A sampler result: :func:`flowsamp.sample`'s ``Trace``, ``AdaptiveFlowOutput``,
        ``ISResult``, ``TemperedSMCOutput`` (anything with ``positions`` ``(chains, draws,
        dim)``, ``particles`` ``(N, dim)`` or ``log_weights``), or a raw array of draws
        ``(chains, draws, dim)`` (e.g. another library's, for a benchmark).
    target
        Optional target: ``mode_of`` / ``mode_weights`` / ``num_modes`` give the mode weights
        (between-chain SE for MCMC, binomial for SMC particles, self-normalised for IS) against
        the exact ones, ``log_Z`` the exact evidence.
    wall_s
        Wall time, when the result does not carry ``wall_s``.
    acceptance, num_divergent, num_nonfinite
        Run statistics for a raw array of draws (the result's own fields otherwise).
    thresholds
        :class:`flowsamp.estimators.Thresholds` for a verdict computed here (a result that
        carries ``converged`` / ``problems`` keeps its own).

    Returns
    -------
    dict of Python scalars and lists (``json.dumps``-ready, NaN allowed).
    """
    raw = isinstance(result, np.ndarray) or (hasattr(result, "__array__") and not hasattr(result, "_fields"))
    res: dict[str, Any] = {"sampler": "draws" if raw else type(result).__name__}
    wall = getattr(result, "wall_s", None) if wall_s is None else wall_s
    if wall is not None:
        res["wall_s"] = float(wall)
    own = hasattr(result, "converged") and hasattr(result, "problems")
    positions = result if raw else getattr(result, "positions", None)
    diag = getattr(result, "diagnostics", None) or {}

    if getattr(result, "particles", None) is not None:  # SMC / AIS (weighted particles)
        x = np.asarray(result.particles)
        lw = getattr(result, "log_weights", None)
        res.update(num_chains=1, num_draws=int(x.shape[0]), num_samples=int(x.shape[0]),
                   log_Z=_f(result.log_Z), num_steps=int(np.max(np.asarray(result.num_steps))))
        if getattr(result, "log_Z_se", None) is not None:
            res["log_Z_se"] = _f(result.log_Z_se)
        if "final_ess" in diag:
            res["ess"] = float(diag["final_ess"])
        if "min_acceptance" in diag:
            res["min_acceptance"] = float(diag["min_acceptance"])
        if "ess" not in res and lw is not None:
            res["ess"] = _f(_kish_ess(jnp.asarray(lw)))
        if target is not None:
            labels = _labels(target, x)
            if labels is not None:
                _modes(res, labels, target, lw)
    elif getattr(result, "log_weights", None) is not None:  # importance sampling
        lw = np.asarray(result.log_weights)
        res.update(num_chains=1, num_draws=int(lw.shape[0]), num_samples=int(lw.shape[0]),
                   log_Z=_f(result.log_Z), log_Z_se=_f(result.log_Z_se), ess=_f(result.ess),
                   k_hat=_f(result.pareto_k))
        samples = getattr(result, "samples", None)
        if samples is not None and target is not None:
            labels = _labels(target, np.asarray(samples))
            if labels is not None:
                _modes(res, labels, target, lw)
    elif positions is not None:  # MCMC
        x = np.asarray(positions)
        x = x.reshape(x.shape[0], x.shape[1], -1)
        c, n = x.shape[:2]
        res.update(num_chains=int(c), num_draws=int(n), num_samples=int(c * n))
        acc = acceptance
        if acc is None:
            acc = getattr(result, "local_acceptance", None)
        if acc is None and getattr(result, "acceptance_rate", None) is not None:
            acc = np.mean(np.asarray(result.acceptance_rate))
        if acc is not None:
            res["acceptance"] = float(np.mean(np.asarray(acc)))
        glob = getattr(result, "global_acceptance", None)
        if glob is not None:
            res["global_acceptance"] = float(glob)
        if getattr(result, "num_training_loops", None) is not None:
            res["training_loops"] = int(result.num_training_loops)
        labels = _labels(target, x) if target is not None and x.shape[-1] == getattr(target, "dim", -1) else None
        if labels is not None:
            _modes(res, labels, target)
        if "max_rhat" in diag:
            _from_diagnostics(res, diag)
        elif n < 4 and not own:
            res["converged"], res["problems"] = False, [f"only {n} draws per chain: convergence cannot be assessed"]
        elif n >= 4:
            nn = num_nonfinite
            if nn is None and getattr(result, "num_nonfinite", None) is not None:
                nn = int(np.sum(np.asarray(result.num_nonfinite)))
            v = mcmc_verdict(x, num_nonfinite=nn if num_divergent is None else None, num_divergent=num_divergent,
                             acceptance=res.get("acceptance"), global_acceptance=glob,
                             mode_labels=labels, num_modes=_num_modes(target) if labels is not None else None,
                             thresholds=thresholds)
            _from_diagnostics(res, v.diagnostics)
            if not own:
                res["converged"], res["problems"] = bool(v.converged), list(v.problems)
        if "min_ess_bulk" in res and "wall_s" in res and res["wall_s"] > 0:
            res["min_ess_bulk_per_s"] = float(res["min_ess_bulk"]) / res["wall_s"]
    elif "num_chains" in diag:  # fs.sample with keep="summary": no draws, the trace's own verdict
        res.update(num_chains=int(diag["num_chains"]), num_draws=int(diag["num_draws"]),
                   num_samples=int(diag["num_chains"] * diag["num_draws"]))
        _from_diagnostics(res, diag)
    else:
        raise TypeError(f"summarize: cannot read draws from a {type(result).__name__}")

    exact_log_z = getattr(target, "log_Z", None) if target is not None else None
    if exact_log_z is not None:
        res["exact_log_Z"] = float(exact_log_z)
    if own:
        res["converged"], res["problems"] = bool(result.converged), list(result.problems)
    return res
