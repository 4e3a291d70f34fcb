"""Flax conditioner networks for the flows; every last layer is zero-initialised.

A zero last layer makes every conditioner output exactly 0 at initialisation, which the
transforms in :mod:`flowsamp.flows.transforms` map to the identity.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.types import Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
}


def get_activation(name: str | Callable[[Array], Array]) -> Callable[[Array], Array]:
    """Return the activation function for ``name`` (a key of ``ACTIVATIONS`` or a callable)."""
    if callable(name):
        return name
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Dense network ``(..., d_in) -> (..., num_out, num_params)`` with a zero last layer."""

    hidden: Sequence[int]
    num_out: int
    num_params: int
    activation: Callable[[Array], Array] = jax.nn.relu

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = x
        for width in self.hidden:
            h = self.activation(nn.Dense(width)(h))
        out = nn.Dense(
            self.num_out * self.num_params,
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.zeros,
        )(h)
        return out.reshape(x.shape[:-1] + (self.num_out, self.num_params))


class ConvNet(nn.Module):
    """Convolutional network on a periodic lattice, ``(..., dim) -> (..., dim, num_params)``.

    The flat input is reshaped row-major to ``(..., *lattice_shape, 1)``; every convolution
    uses circular (periodic) padding, kernel size ``kernel_size`` along each lattice axis.
    """

    hidden: Sequence[int]
    lattice_shape: tuple[int, ...]
    num_params: int
    kernel_size: int = 3
    activation: Callable[[Array], Array] = jax.nn.relu

    @nn.compact
    def __call__(self, x: Array) -> Array:
        batch = x.shape[:-1]
        kernel = (self.kernel_size,) * len(self.lattice_shape)
        h = x.reshape(batch + tuple(self.lattice_shape) + (1,))
        for channels in self.hidden:
            h = self.activation(nn.Conv(channels, kernel, padding="CIRCULAR")(h))
        out = nn.Conv(
            self.num_params,
            kernel,
            padding="CIRCULAR",
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.zeros,
        )(h)
        return out.reshape(batch + (x.shape[-1], self.num_params))


def made_masks(dim: int, hidden: Sequence[int]) -> list[np.ndarray]:
    """Connectivity masks of MADE (Germain et al. 2015, arXiv:1502.03509) for input order 1..dim.

    Hidden unit k of each layer has degree ``1 + k % max(dim - 1, 1)``; a hidden unit sees the
    inputs with degree <= its own, output i sees hidden units with degree < i. So output i
    depends on inputs ``x_1 .. x_{i-1}`` only (for ``dim == 1`` the output is a constant).
    Returns one ``(fan_in, fan_out)`` float mask per layer, the last one per output dimension.
    """
    in_deg = np.arange(1, dim + 1)
    masks = []
    prev = in_deg
    for width in hidden:
        deg = 1 + np.arange(width) % max(dim - 1, 1)
        masks.append((deg[None, :] >= prev[:, None]).astype(np.float64))
        prev = deg
    masks.append((in_deg[None, :] > prev[:, None]).astype(np.float64))
    return masks


class MADE(nn.Module):
    """Masked autoencoder ``(..., dim) -> (..., dim, num_params)``; output i sees ``x_{<i}``."""

    dim: int
    hidden: Sequence[int]
    num_params: int
    activation: Callable[[Array], Array] = jax.nn.relu

    @nn.compact
    def __call__(self, x: Array) -> Array:
        masks = made_masks(self.dim, self.hidden)
        h = x
        for i, (width, mask) in enumerate(zip(self.hidden, masks[:-1])):
            w = self.param(f"kernel_{i}", nn.initializers.lecun_normal(), mask.shape)
            b = self.param(f"bias_{i}", nn.initializers.zeros, (width,))
            h = self.activation(h @ (w * jnp.asarray(mask, w.dtype)) + b)
        out_mask = np.repeat(masks[-1], self.num_params, axis=1)  # unit j*P + p -> dim j
        w = self.param("kernel_out", nn.initializers.zeros, out_mask.shape)
        b = self.param("bias_out", nn.initializers.zeros, (out_mask.shape[1],))
        out = h @ (w * jnp.asarray(out_mask, w.dtype)) + b
        return out.reshape(x.shape[:-1] + (self.dim, self.num_params))
