"""Host-side ln f schedule shared by the neural and replica-exchange Wang-Landau samplers."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from flowsamp.samplers.flat_histogram import is_flat
from flowsamp.samplers.wang_landau import WangLandauState


def one_over_t_schedule(state: WangLandauState, masks: np.ndarray, log_f_final: float
                        ) -> tuple[WangLandauState, np.ndarray]:
    """Per group: halve ln f once every level of its window was visited since the last change,
    switch to ln f = 1/t (t = ln g updates / levels) once ln f < 1/t, stop when 1/t < ``log_f_final``.

    Returns the updated state and the effective ln f per group.
    """
    hist = np.array(state.histogram)
    log_f = np.asarray(state.log_f, np.float64).copy()
    one_t = np.asarray(state.one_over_t).copy()
    active = np.asarray(state.active).copy()
    n_upd = np.asarray(state.num_updates.hi, np.float64) + np.asarray(state.num_updates.lo, np.float64)
    inv_t = masks.sum(axis=1) / np.maximum(n_upd, 1.0)
    for g in range(hist.shape[0]):
        if not active[g]:
            continue
        if one_t[g]:
            active[g] = inv_t[g] >= log_f_final
        elif is_flat(hist[g], masks[g], 0.0):
            log_f[g] *= 0.5
            hist[g] = 0
            one_t[g] = log_f[g] < inv_t[g]
    state = state._replace(histogram=jnp.asarray(hist), log_f=jnp.asarray(log_f, state.log_f.dtype),
                           one_over_t=jnp.asarray(one_t), active=jnp.asarray(active))
    return state, np.where(one_t, inv_t, log_f)
