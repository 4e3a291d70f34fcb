"""Checkpoints of :func:`flowsamp.samplers.parallel_tempering` (``checkpoint_path=`` / ``resume=``).

The file holds the replicas' carry, the ladder, the production records written so far and the
counters (scans of warm-up done, the next round's length, production scans done). Its ``meta``
carries the run's options, key and fingerprints of the starts and of the target and reference
at the starts, so :func:`flowsamp.io.load` refuses a checkpoint of another run naming the key.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from flowsamp import io as _io
from flowsamp.samplers._pt_scan import PTCarry

__all__ = ["PTCheckpoint"]

_COUNTERS = ("done", "length", "prod_done", "warm_nonfinite")


class PTCheckpoint:
    """Save / load the state of one parallel-tempering run at ``path`` every ``every`` scans."""

    def __init__(self, path: str | os.PathLike, every: int, meta: dict) -> None:
        self.path, self.every, self.meta = path, int(every), meta

    def save(self, carry: PTCarry, lstate: Any, bufs: dict | None, *, elapsed: float, **counters: int) -> None:
        tree = {"carry": carry, "betas": np.asarray(lstate.betas, np.float64),
                "barrier": np.asarray(lstate.barrier, np.float64)}
        if bufs is not None:
            tree["bufs"] = bufs
        _io.save(self.path, tree, meta={**self.meta, **{k: int(counters[k]) for k in _COUNTERS},
                                        "num_rungs": int(carry.x.shape[1]), "production": bufs is not None,
                                        "elapsed": float(elapsed)})

    def load(self, carry: PTCarry, empty_records: Callable[[PTCarry, np.ndarray], dict]) -> dict:
        """The saved state: ``carry``, ``betas``, ``barrier``, ``bufs`` (None in warm-up), counters, ``elapsed``."""
        path = os.fspath(self.path)
        stored = _io.read_meta(path, self.meta)
        bad = [k for k in (*_COUNTERS, "num_rungs") if isinstance(stored.get(k), bool)
               or not isinstance(stored.get(k), int) or stored[k] < 0]
        if bad or not isinstance(stored.get("production"), bool) or stored["num_rungs"] < 2:
            raise ValueError(f"parallel_tempering: {path!r} has no valid counters in its meta "
                             f"({', '.join(bad) or 'production / num_rungs'})")
        n = stored["num_rungs"]
        like_carry = PTCarry(*(jnp.zeros((a.shape[0], n) + a.shape[2:], a.dtype) if a.ndim >= 2 else
                               jnp.zeros(a.shape, a.dtype) for a in carry))
        like = {"carry": like_carry, "betas": np.zeros((n,), np.float64), "barrier": np.zeros((), np.float64)}
        if stored["production"]:
            like["bufs"] = empty_records(like_carry, np.zeros((n,)))
        tree = _io.load(path, like, meta=self.meta)
        out = {k: stored[k] for k in _COUNTERS}
        out.update(carry=tree["carry"], betas=np.asarray(tree["betas"]), barrier=float(tree["barrier"]),
                   bufs=tree.get("bufs"), elapsed=float(stored.get("elapsed", 0.0)))
        return out
