"""``jit_light``: ``jax.jit`` with LLVM optimisation level 1 on CPU, for programs compiled once
per run whose compile time is on its critical path.

Used for the Wang-Landau check program, the SMC step (float32 only: see ``smc._programs``) and
the adaptive flow sampler's local, global and lost-region programs (not its training program,
whose run time grew at -O1: the 2-D mixture below took 18.9 s with it, 16.8 s without).
Measured on a 2-core CPU, compile included, same process order:

* ``fs.samplers.smc`` (2048 particles, first call / repeat call, s): many-well 32 4.45 / 0.34
  -> 3.52 / 0.36, phi^4 8x8 4.16 / 0.32 -> 3.69 / 0.35, funnel-10 5.92 / 0.28 -> 3.21 / 0.25,
  a 20-D logistic regression on 2000 points 13.3 / 9.1 -> 12.1 / 9.3;
* ``adaptive_flow_mcmc`` (``benchmarks/vs_flowmc.py``, wall s): 2-D four-mode mixture
  16.7-16.8 -> 15.2-16.4, 10-D 28.5 -> 23.5, 64-D phi^4 (a 250 s run) 253 -> 252.
"""

from __future__ import annotations

from typing import Any, Callable

import jax

__all__ = ["jit_light"]


def jit_light(fn: Callable, **kwargs: Any) -> Callable:
    """``jax.jit(fn, **kwargs)``, compiled at ``xla_backend_optimization_level`` 1 on CPU (other
    backends unchanged). The option only changes LLVM's passes, never the HLO, so results are
    those of the plain jit up to floating-point contraction."""
    if jax.default_backend() == "cpu":
        return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 1}, **kwargs)
    return jax.jit(fn, **kwargs)
