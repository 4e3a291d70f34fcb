"""flowsamp.train: losses for normalizing flows and ``fit`` (optax in a jitted scan).

A loss is ``loss_fn(params, key, step=0) -> (scalar, aux dict)``; ``fit`` passes the step
counter so that schedules (annealing) are pure functions of it.
"""

from flowsamp.train.early_stopping import EarlyStopping, early_stopping
from flowsamp.train.replay_buffer import BufferState, PrioritisedBuffer, prioritised_buffer
from flowsamp.train.flow_matching import flow_matching
from flowsamp.train.fit import FitHistory, fit, fit_steps, guarded_step
from flowsamp.train.score_matching import score_matching
from flowsamp.train.alpha_divergence import fab_buffer_loss
from flowsamp.train.losses import annealed_reverse_kl, combined, ess_fraction, forward_kl, reverse_kl

__all__ = [
    "BufferState",
    "EarlyStopping",
    "FitHistory",
    "PrioritisedBuffer",
    "annealed_reverse_kl",
    "combined",
    "early_stopping",
    "fab_buffer_loss",
    "ess_fraction",
    "fit",
    "flow_matching",
    "fit_steps",
    "forward_kl",
    "guarded_step",
    "prioritised_buffer",
    "reverse_kl",
    "score_matching",
]
