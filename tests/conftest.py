"""Shared pytest fixtures.

``x64``: a context in which ``jax_enable_x64`` is on (``with jax.enable_x64(True):``),
for the float64 variants of tests.
"""

import jax
import pytest


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled; restored afterwards."""
    with jax.enable_x64(True):
        yield
