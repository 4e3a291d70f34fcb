r"""Annealed importance sampling: the SMC engine without resampling.

Each particle carries the weight

.. math:: \log w_i = \sum_{t} \big[\log\pi_{\beta_{t+1}}(x_i^{(t)}) - \log\pi_{\beta_t}(x_i^{(t)})\big],

with :math:`x_i^{(t)}` moved by MCMC transitions invariant for :math:`\pi_{\beta_{t+1}}`
(Neal 2001, "Annealed importance sampling", arXiv:physics/9803008), and
:math:`\hat Z = \frac1N\sum_i w_i`. The schedule is adapted by the conditional ESS
(Zhou, Johansen & Aston 2016, arXiv:1303.3123), which, unlike the plain ESS, keeps measuring
each step's weight degeneracy when the weights are never reset. Everything else (moves, islands,
SE, verdict) is :func:`flowsamp.samplers.smc`'s.
"""

from __future__ import annotations

from typing import Any

from flowsamp.samplers.smc import SMCOutput, smc
from flowsamp.types import LogProbFn, PRNGKey

__all__ = ["ais"]


def ais(key: PRNGKey, log_prob: LogProbFn, base: Any, num_particles: int, *, target_ess: float = 0.95,
        progress: bool = False, **kwargs: Any) -> SMCOutput:
    """:func:`flowsamp.samplers.smc` with ``resample_threshold=0`` (never resample).

    ``target_ess``: conditional ESS per step, 0.95 by default (Zhou et al. use 0.9-0.99 for
    AIS-like samplers: without resampling, a step's loss of ESS is never recovered).
    ``progress``: a tqdm bar of β with the ESS/N and acceptance of every step (smc's). Other
    keyword arguments are :func:`~flowsamp.samplers.smc`'s.
    """
    if "resample_threshold" in kwargs:
        raise TypeError("ais never resamples; use fs.samplers.smc for resample_threshold=")
    return smc(key, log_prob, base, num_particles, target_ess=target_ess, resample_threshold=0.0,
               progress=progress, _what="ais", **kwargs)
