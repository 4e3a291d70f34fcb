"""Shared report of an importance-sampling run for the continuous-flow benchmarks."""

from __future__ import annotations

import jax
import numpy as np


def is_report(res, log_Z, target=None, num_modes=None):
    out = {
        "log_Z": float(res.log_Z), "log_Z_se": float(res.log_Z_se),
        "z_score": float((res.log_Z - log_Z) / res.log_Z_se),
        "ess_over_n": float(res.ess) / int(res.log_weights.shape[0]),
    }
    if target is not None and target.mode_weights is not None:
        labels = np.asarray(jax.vmap(target.mode_of)(res.samples))
        w = np.exp(np.asarray(res.log_weights) - np.max(res.log_weights))
        w = w / w.sum()
        est = np.array([w[labels == k].sum() for k in range(num_modes)])
        exact = np.asarray(target.mode_weights)
        # delta-method SE of a self-normalised IS estimate of a mode weight
        se = np.array([np.sqrt(np.sum(w**2 * ((labels == k) - est[k]) ** 2)) for k in range(num_modes)])
        out.update(mode_weights=est.tolist(), mode_weight_se=se.tolist(),
                   max_mode_weight_error=float(np.max(np.abs(est - exact))),
                   max_mode_z=float(np.max(np.abs(est - exact) / np.maximum(se, 1e-12))))
    return out
