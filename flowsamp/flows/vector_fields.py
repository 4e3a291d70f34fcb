"""Flax vector fields ``v(t, x)`` for continuous flows, and score networks ``s(t, x)``.

Every module maps one time ``t`` (scalar) and one point ``x`` of shape ``(dim,)`` to a vector
of shape ``(dim,)``; batch with ``jax.vmap``. Last layers are zero-initialised, so a flow built
on them is exactly its base at initialisation (:func:`flowsamp.flows.cnf`).

* :class:`TimeMLP` - dense net on ``[x, t, sin(2 pi k t), cos(2 pi k t)]`` (the default CNF field);
* :class:`AffineField` - ``v = A x + b`` (time independent; its flow map is ``e^A``, closed-form
  tests);
* :class:`LinearScore`, :class:`TwoLayerScore`, :class:`LocalScore` - lattice score networks
  on a periodic ``L x L`` field (one-layer dense linear, two-layer dense, and a local
  convolutional score with a ``kernel_size``-site receptive field; see
  ``benchmarks/score_slowing_down.py``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.flows.bases import _float_dtype
from flowsamp.flows.nets import get_activation
from flowsamp.types import Array, PRNGKey

_zeros = nn.initializers.zeros


def time_features(t: Array, num_frequencies: int) -> Array:
    r"""``[t, sin(2 pi k t), cos(2 pi k t)]`` for ``k = 1..num_frequencies`` (shape ``(1 + 2K,)``)."""
    t = jnp.reshape(jnp.asarray(t), (1,))
    k = 2.0 * np.pi * jnp.arange(1, num_frequencies + 1, dtype=t.dtype)
    return jnp.concatenate([t, jnp.sin(k * t), jnp.cos(k * t)])


class TimeMLP(nn.Module):
    """Dense vector field ``(t, x) -> v`` with Fourier time features and a zero last layer."""

    dim: int
    hidden: Sequence[int] = (64, 64)
    activation: Callable[[Array], Array] = jax.nn.silu
    num_frequencies: int = 4

    @nn.compact
    def __call__(self, t: Array, x: Array) -> Array:
        h = jnp.concatenate([x, time_features(t, self.num_frequencies).astype(x.dtype)])
        for width in self.hidden:
            h = self.activation(nn.Dense(width)(h))
        return nn.Dense(self.dim, kernel_init=_zeros, bias_init=_zeros)(h)


def field_functions(
    field: nn.Module | None,
    dim: int,
    hidden: Sequence[int] = (64, 64),
    activation: str | Callable[[Array], Array] = "silu",
    num_frequencies: int = 4,
    name: str = "field",
) -> tuple[Callable[[PRNGKey], Any], Callable[[Any, Array, Array], Array]]:
    """``(init(key) -> field_params, apply(field_params, t, x) -> (dim,))`` of a flax field on one
    point; ``field=None`` builds the default :class:`TimeMLP` from ``hidden``/``activation``."""
    if field is None:
        field = TimeMLP(dim, tuple(int(h) for h in hidden), get_activation(activation), int(num_frequencies))
    if not isinstance(field, nn.Module):
        raise TypeError(f"{name}: `field` must be a flax.linen.Module, got {type(field).__name__}")

    def init(key: PRNGKey) -> Any:
        dt = _float_dtype()
        return field.init(key, jnp.zeros((), dt), jnp.zeros((dim,), dt))

    def apply(field_params: Any, t: Array, x: Array) -> Array:
        return field.apply(field_params, jnp.asarray(t, x.dtype), x)

    return init, apply


class AffineField(nn.Module):
    r"""Time-independent affine field :math:`v(t, x) = A x + b` (zero at init).

    Its flow map over unit time is :math:`x = e^{A} z + (e^{A} - I) A^{-1} b` with
    :math:`\log|\det \partial x/\partial z| = \operatorname{tr} A`; used for closed-form tests.
    """

    dim: int

    @nn.compact
    def __call__(self, t: Array, x: Array) -> Array:
        del t
        a = self.param("A", _zeros, (self.dim, self.dim), x.dtype)
        b = self.param("b", _zeros, (self.dim,), x.dtype)
        return a @ x + b


def _periodic_conv(x: Array, kernel: Array) -> Array:
    """Circular 2-D convolution of an ``(L, L)`` field with a ``(k, k)`` kernel (odd k)."""
    k = kernel.shape[0]
    r = k // 2
    xp = jnp.pad(x, r, mode="wrap")
    return jax.lax.conv_general_dilated(
        xp[None, None], kernel[None, None].astype(x.dtype), (1, 1), "VALID"
    )[0, 0]


class LinearScore(nn.Module):
    r"""One-layer (linear) global score on an ``L x L`` lattice: :math:`s(t, x) = W(t) x`.

    :math:`W(t) = W_0 + t W_1` dense ``(d, d)`` matrices (``d = L^2``), zero at init: the
    architecture of the exact free-field score :math:`-(\alpha_t^2 K^{-1} + \sigma_t^2)^{-1} x`
    up to its time dependence, which is supplied by ``diffusion``'s noise scaling.
    """

    dim: int

    @nn.compact
    def __call__(self, t: Array, x: Array) -> Array:
        w0 = self.param("W0", _zeros, (self.dim, self.dim), x.dtype)
        w1 = self.param("W1", _zeros, (self.dim, self.dim), x.dtype)
        return (w0 + t * w1) @ x


class TwoLayerScore(nn.Module):
    r"""Two-layer linear global score :math:`s(t, x) = V(t) U x` with ``U, V`` dense ``(d, d)``.

    ``U`` starts at the identity and ``V`` at zero (a deep linear net; depth changes the
    gradient-flow dynamics, not the function class).
    """

    dim: int

    @nn.compact
    def __call__(self, t: Array, x: Array) -> Array:
        u = self.param("U", lambda k, s, d: jnp.eye(s[0], dtype=d), (self.dim, self.dim), x.dtype)
        v0 = self.param("V0", _zeros, (self.dim, self.dim), x.dtype)
        v1 = self.param("V1", _zeros, (self.dim, self.dim), x.dtype)
        return (v0 + t * v1) @ (u @ x)


class LocalScore(nn.Module):
    r"""Local linear score on a periodic ``L x L`` lattice: a ``kernel_size x kernel_size``
    circular convolution, :math:`s(t, x)_i = \sum_{|j - i|_\infty \le r} (w_0 + t w_1)_{j-i} x_j`.

    Translation equivariant with ``2 k^2`` parameters independent of ``L`` (the receptive
    field is ``k`` sites).
    """

    lattice_size: int
    kernel_size: int = 3

    @nn.compact
    def __call__(self, t: Array, x: Array) -> Array:
        if self.kernel_size % 2 != 1:
            raise ValueError(f"LocalScore: kernel_size must be odd, got {self.kernel_size}")
        k = self.kernel_size
        w0 = self.param("w0", _zeros, (k, k), x.dtype)
        w1 = self.param("w1", _zeros, (k, k), x.dtype)
        field = x.reshape(self.lattice_size, self.lattice_size)
        return _periodic_conv(field, w0 + t * w1).reshape(-1)
