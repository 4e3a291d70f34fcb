"""Type aliases shared across flowsamp."""

from __future__ import annotations

from typing import Any, Callable

import jax

Array = jax.Array
PRNGKey = jax.Array
PyTree = Any
Params = Any
#: ``log_prob(x) -> scalar``: an unnormalized log-density on one point ``x`` of shape ``(dim,)``.
LogProbFn = Callable[[Array], Array]
