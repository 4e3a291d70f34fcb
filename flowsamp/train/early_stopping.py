r"""Early stopping on a held-out negative log-likelihood, as a :func:`flowsamp.train.fit` callback.

A flow fitted by forward KL to a finite sample can overfit it: :math:`q_\theta` grows spikes
on the training points (many of them exact or near copies when the sample comes from SMC
resampling). A sampler that then proposes from :math:`q_\theta` and *starts from those same
points* sees :math:`p/q_\theta` small there and leaves them too readily, a bias that decays
only as fast as the chains mix. Two cures, both cheap: stop training where the NLL of an
independent validation sample is lowest, and start chains from points the flow never saw.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.base import Flow
from flowsamp.train.losses import _check_samples
from flowsamp.types import Array

__all__ = ["EarlyStopping", "early_stopping"]


class EarlyStopping:
    """Callback for :func:`flowsamp.train.fit` that tracks the held-out NLL.

    After each chunk it evaluates :math:`\\mathrm{NLL}_{val}(\\theta) = -\\frac1M \\sum_j
    \\log q_\\theta(y_j)` on the validation sample, keeps the parameters with the lowest value
    (``best_params``, ``best_step``, ``best_nll``) and asks ``fit`` to stop once ``patience``
    evaluations in a row have not improved it by more than ``min_delta``. ``steps`` and
    ``nll`` record every evaluation. Non-finite validation NLLs never become the best.
    """

    def __init__(self, flow: Flow, validation: Array, patience: int, min_delta: float) -> None:
        self.flow = flow
        self.validation = validation
        self.patience = patience
        self.min_delta = min_delta
        self._nll = jax.jit(lambda p, y: -jnp.mean(flow.log_prob(p, y)))
        self.best_params: Any = None
        self.best_step = -1
        self.best_nll = math.inf
        self.steps: list[int] = []
        self.nll: list[float] = []
        self._bad = 0

    def __call__(self, step: int, params: Any, history: Any = None) -> bool:
        value = float(self._nll(params, self.validation))
        self.steps.append(int(step))
        self.nll.append(value)
        if math.isfinite(value) and value < self.best_nll - self.min_delta:
            self.best_nll, self.best_step, self._bad = value, int(step), 0
            self.best_params = params  # jax arrays are immutable and fit donates no buffers
        else:
            self._bad += 1
        return self._bad >= self.patience

    def __repr__(self) -> str:
        return (f"EarlyStopping(best_step={self.best_step}, best_nll={self.best_nll:.4g}, "
                f"evaluations={len(self.nll)})")


def early_stopping(
    flow: Flow, validation: Array, *, patience: int = 3, min_delta: float = 0.0
) -> EarlyStopping:
    r"""Return a ``fit`` callback that stops at the best held-out NLL and keeps those parameters.

    Usage::

        stop = fs.train.early_stopping(flow, validation_samples, patience=3)
        _, hist = fs.train.fit(key, flow, params0, fs.train.forward_kl(flow, train_samples, 512),
                               optax.adam(1e-3), 5000, chunk_size=250, callback=stop)
        params = stop.best_params   # argmin over evaluations of -mean log q_theta(validation)

    Parameters
    ----------
    flow
        The flow being trained.
    validation
        ``(M, flow.dim)`` samples from the target that are not in the training set; for SMC
        particles, a second independent run (particles of one run share ancestors).
    patience
        Stop after this many evaluations (one per ``fit`` chunk) without improvement.
    min_delta
        Improvement in nats below which an evaluation does not count as better.
    """
    validation = _check_samples(validation, flow.dim, "early_stopping", "validation")
    if not bool(np.all(np.isfinite(np.asarray(validation)))):
        raise ValueError("early_stopping: `validation` contains non-finite values")
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1:
        raise ValueError(f"early_stopping: `patience` must be a positive int, got {patience!r}")
    if not (math.isfinite(min_delta) and min_delta >= 0):
        raise ValueError(f"early_stopping: `min_delta` must be finite and >= 0, got {min_delta!r}")
    return EarlyStopping(flow, validation, int(patience), float(min_delta))
