"""Elementwise monotone transforms driven by unconstrained conditioner outputs.

A :class:`Transform` maps ``x`` of shape ``(..., k)`` with raw parameters of shape
``(..., k, num_params)`` to ``y`` and the summed ``log|dy/dx|`` of shape ``(...)``.
All-zero raw parameters give the exact identity (up to float rounding).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import distrax
import jax.numpy as jnp

from flowsamp.types import Array


class Transform(NamedTuple):
    """``forward(raw, x) -> (y, log_det)`` and ``inverse(raw, y) -> (x, log_det)``."""

    num_params: int
    forward: Callable[[Array, Array], tuple[Array, Array]]
    inverse: Callable[[Array, Array], tuple[Array, Array]]


def affine(max_log_scale: float = 5.0) -> Transform:
    r"""Affine transform :math:`y = x\,e^{s} + t` with :math:`s = c\tanh(\tilde s / c)`.

    ``raw[..., 0]`` is the shift t, ``raw[..., 1]`` the unconstrained log-scale
    :math:`\tilde s`; the soft bound ``c = max_log_scale`` keeps one layer's scale within
    :math:`e^{\pm c}` and has unit slope at 0. Returns ``log|dy/dx| = sum_i s_i``.
    """
    if not max_log_scale > 0:
        raise ValueError(f"max_log_scale must be positive, got {max_log_scale}")
    c = float(max_log_scale)

    def _split(raw: Array) -> tuple[Array, Array]:
        return raw[..., 0], c * jnp.tanh(raw[..., 1] / c)

    def forward(raw: Array, x: Array) -> tuple[Array, Array]:
        shift, log_scale = _split(raw)
        return x * jnp.exp(log_scale) + shift, jnp.sum(log_scale, axis=-1)

    def inverse(raw: Array, y: Array) -> tuple[Array, Array]:
        shift, log_scale = _split(raw)
        return (y - shift) * jnp.exp(-log_scale), -jnp.sum(log_scale, axis=-1)

    return Transform(2, forward, inverse)


def rational_quadratic(
    num_bins: int = 8,
    range_min: float = -10.0,
    range_max: float = 10.0,
    min_bin_size: float = 1e-3,
    min_knot_slope: float = 1e-3,
) -> Transform:
    r"""Rational-quadratic spline (Durkan et al. 2019, arXiv:1906.04032) via distrax.

    ``num_bins`` bins on ``[range_min, range_max]`` with *identity* tails: outside the
    interval the map is ``y = x`` (boundary knot slopes fixed to 1), so no mass is truncated
    however far the target reaches; only inside the interval is the map learned. The raw
    parameters per dimension are ``3 * num_bins - 1`` numbers: bin widths, bin heights and
    the ``num_bins - 1`` interior knot slopes (distrax parameterisation: zeros give uniform
    bins and unit slopes, i.e. the identity).
    """
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
    if not range_max > range_min:
        raise ValueError(f"need range_min < range_max, got [{range_min}, {range_max}]")
    k = num_bins

    def _bijector(raw: Array) -> distrax.RationalQuadraticSpline:
        pad = jnp.zeros(raw.shape[:-1] + (1,), raw.dtype)
        full = jnp.concatenate([raw[..., : 2 * k], pad, raw[..., 2 * k :], pad], axis=-1)
        return distrax.RationalQuadraticSpline(
            full,
            range_min=range_min,
            range_max=range_max,
            boundary_slopes="identity",
            min_bin_size=min_bin_size,
            min_knot_slope=min_knot_slope,
        )

    def forward(raw: Array, x: Array) -> tuple[Array, Array]:
        y, log_det = _bijector(raw).forward_and_log_det(x)
        return y, jnp.sum(log_det, axis=-1)

    def inverse(raw: Array, y: Array) -> tuple[Array, Array]:
        x, log_det = _bijector(raw).inverse_and_log_det(y)
        return x, jnp.sum(log_det, axis=-1)

    return Transform(3 * k - 1, forward, inverse)
