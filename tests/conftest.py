"""Shared pytest fixtures and the suite's compiler setting.

``x64``: a context in which ``jax_enable_x64`` is on (``with jax.enable_x64(True):``),
for the float64 variants of tests.

Compilation, not execution, is most of the default suite's time on CPU: its programs are
small and run briefly, but each is compiled by XLA, whose LLVM back end spends most of that
time optimising machine code. The suite therefore sets ``JAX_DISABLE_MOST_OPTIMIZATIONS=1``
(JAX's documented switch: LLVM back-end optimisation level 0, expensive passes off; the HLO
programs and their semantics are unchanged) unless the environment already sets it. It is
an environment variable, so the subprocesses of the device/multi-process tests and the
notebook kernels of ``tests/test_notebooks.py`` inherit it. Measured on 2 loaded cores
(CPU seconds, user + system): tests/numpyro/test_kernel.py + tests/kernels/test_window_adaptation.py
110 -> 81 s, tests/samplers/test_craft.py 47 -> 36 s, all passing. Run the suite on optimised
code with ``JAX_DISABLE_MOST_OPTIMIZATIONS=0 pytest``.
"""

import os

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

# jax may have been imported (by a plugin) before this file: its flag was read then.
jax.config.update("jax_disable_most_optimizations", os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] not in ("0", "false", "False", ""))


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled; restored afterwards."""
    with jax.enable_x64(True):
        yield
