"""The progress bar of every sampler: a tqdm bar updated on the host between compiled calls.

A sampler with ``progress=True`` makes one :class:`ProgressBar` and, after each compiled call
(a chunk of steps, a tempering step, a check of Wang-Landau sweeps), calls
:meth:`ProgressBar.update` with the figures its users watch: acceptance and bulk ESS so far
for MCMC, :math:`\\beta` and ESS for SMC, swap acceptance for parallel tempering,
:math:`\\ln f` and flatness for Wang-Landau. Nothing runs inside a jitted loop (no host
callback), so the numbers of a run are the same with the bar on or off.

Several processes (``jax.distributed``): only process 0 draws the bar. The figures come
from the sampler's results after each call, which are global there (the chain mesh
all-gathers its outputs, :func:`flowsamp.parallel.shard_chains`): the bar shows every chain,
not one process's shard. The figures are read only where the bar is drawn, so they must not
need a collective (a global array split over processes); the samplers pass gathered values.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np

from flowsamp.estimators.verdict import rank_diagnostics

__all__ = ["ProgressBar", "min_bulk_ess", "readable"]

#: At most this many kept values go into the bulk ESS shown by the bar (rank-normalising costs
#: a sort of every coordinate's draws).
MAX_ESS_VALUES = 4_000_000


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    return f"{v:.3g}" if np.isfinite(v) else str(v)


class ProgressBar:
    """A tqdm bar of ``total`` units that draws only when enabled and on process 0.

    ``bool(bar)`` says whether it draws: compute figures only then (they cost a device-to-host
    copy). ``update(n, **figures)`` advances by ``n`` units; ``set(done, **figures)`` moves to
    ``done`` units (e.g. :math:`\\beta` of an SMC run, out of 1). Figures are shown as
    ``name=value`` (floats to 3 significant digits). ``every(name, seconds, fn)`` returns ``fn()``
    at most once per ``seconds`` and the last value otherwise (an ESS so far on a growing trace);
    a ``None`` (not available yet) is not kept, so the next update tries again.
    """

    def __init__(self, enabled: bool, total: float | None, desc: str, unit: str = "it", initial: float = 0,
                 leave: bool = True) -> None:
        self._bar = None
        self._cache: dict[str, tuple[float, Any]] = {}
        if enabled and jax.process_index() == 0:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave,
                             dynamic_ncols=True)

    def __bool__(self) -> bool:
        return self._bar is not None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: float = 1, /, **figures: Any) -> None:
        if self._bar is None:
            return
        if figures:
            self._bar.set_postfix({k: _fmt(v) for k, v in figures.items() if v is not None}, refresh=False)
        self._bar.update(n)

    def set(self, done: float, /, **figures: Any) -> None:
        if self._bar is None:
            return
        self.update(done - self._bar.n, **figures)

    def every(self, name: str, seconds: float, fn: Callable[[], Any]) -> Any:
        last = self._cache.get(name)
        if last is None or time.monotonic() - last[0] >= seconds:
            value = fn()
            if value is None:  # not available yet (too few draws): try again at the next update
                return None if last is None else last[1]
            last = (time.monotonic(), value)
            self._cache[name] = last
        return last[1]

    def phase(self, desc: str, total: float | None = None) -> None:
        """Rename the bar (e.g. warm-up -> production) and optionally change its total."""
        if self._bar is None:
            return
        if total is not None:
            self._bar.total = total
        self._bar.set_description(desc, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def readable(tree: Any) -> bool:
    """Whether every leaf of ``tree`` can be read on this process without a collective.

    A global array split over several processes (``jax.distributed``) is not: reading it needs
    every process, while only process 0 computes the bar's figures.
    """
    return all(not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated
               for x in jax.tree.leaves(tree))


def min_bulk_ess(draws: Any) -> float | None:
    """Minimum over coordinates of the rank-normalised bulk ESS of ``draws`` ``(chains, draws, ...)``.

    ``None`` with fewer than 4 draws per chain or more than :data:`MAX_ESS_VALUES` values (the
    bar then shows no ESS); ``inf`` when every coordinate is constant.
    """
    x = np.asarray(draws)
    if x.ndim < 2 or x.shape[1] < 4 or x.size > MAX_ESS_VALUES:
        return None
    e = rank_diagnostics(x.reshape(x.shape[0], x.shape[1], -1))["ess_bulk"]
    return float(np.nanmin(e)) if not np.all(np.isnan(e)) else float("inf")
