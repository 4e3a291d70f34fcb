"""ln f schedule (halving while every level is visited, then 1/t) shared by the neural and
replica-exchange Wang-Landau samplers: :func:`schedule_step` (jittable, after every iteration
inside a scan) and :func:`one_over_t_schedule` (the same program called between jitted chunks).
Both are the classic engine's :func:`flowsamp.samplers._wl_engine.schedule`."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.samplers._wl_engine import schedule
from flowsamp.samplers.wang_landau import WangLandauState
from flowsamp.types import Array


def one_over_t_schedule(state: WangLandauState, masks: np.ndarray, log_f_final: float
                        ) -> tuple[WangLandauState, np.ndarray]:
    """Per group: halve ln f once every level of its window was visited since the last change,
    switch to ln f = 1/t (t = ln g updates / levels) once ln f < 1/t, stop when 1/t < ``log_f_final``
    (:func:`schedule_step`, called between jitted chunks).

    Returns the updated state and the effective ln f per group.
    """
    state = _schedule_jit(state, jnp.asarray(masks), float(log_f_final))
    return state, effective_log_f(state, masks)


def schedule_step(state: WangLandauState, masks: Array, log_f_final: float) -> WangLandauState:
    """Jittable :func:`one_over_t_schedule` (same rule), applied once per iteration on device:
    the classic engine's :func:`flowsamp.samplers._wl_engine.schedule` with flatness 0 (every level
    visited) and the 1/t stage.

    Checking after every iteration rather than every ``check_every`` iterations lets ln f fall
    as soon as the levels have been visited: with many walkers a host-side check lets ln f = 1
    run for a whole chunk and leaves ln g errors the 1/t stage must then wash out.
    """
    return schedule(state, jnp.asarray(masks), 0.0, True, log_f_final)


def effective_log_f(state: WangLandauState, masks: np.ndarray) -> np.ndarray:
    """ln f in use per group (1/t in the 1/t stage), on the host."""
    n_upd = np.asarray(state.num_updates.hi, np.float64) + np.asarray(state.num_updates.lo, np.float64)
    inv_t = np.asarray(masks).sum(axis=1) / np.maximum(n_upd, 1.0)
    return np.where(np.asarray(state.one_over_t), inv_t, np.asarray(state.log_f, np.float64))


@partial(jax.jit, static_argnums=2)
def _schedule_jit(state: WangLandauState, masks: Array, log_f_final: float) -> WangLandauState:
    return schedule_step(state, masks, log_f_final)
