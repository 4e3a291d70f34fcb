"""Summaries of an adaptive flow MCMC run: :func:`flowsamp.estimators.summary.summarize`.

There is one run summary for every sampler (one set of key names, the verdict included);
this module keeps the old import path.
"""

from flowsamp.estimators.summary import summarize

__all__ = ["summarize"]
