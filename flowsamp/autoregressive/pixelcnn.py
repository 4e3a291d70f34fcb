r"""PixelCNN-style masked convolutions for lattice spins (VAN, Wu, Wang & Zhang 2019).

The first layer is a type-A masked convolution (kernel ``2k+1``, sees only the sites before the
centre in raster order), the next ``depth - 1`` are type-B masked convolutions (centre included)
with residual connections, and a 1x1 convolution gives the q logits of every site:

.. math::

    h^{(1)} = \sigma(W^{(1)}_A * x), \quad h^{(l)} = h^{(l-1)} + \sigma(W^{(l)}_B * h^{(l-1)}),
    \quad \ell = V h^{(D)} + c .

Zero padding (not periodic) keeps the network causal; ``q(s)`` is still exact and normalised.
Sampling runs one forward pass per site (O(N) passes): correct, not cached.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.autoregressive.base import AutoregressiveNet, check_spin_values, make_net
from flowsamp.types import Array, PRNGKey

__all__ = ["pixelcnn", "conv_mask"]


def conv_mask(half: int, exclusive: bool) -> np.ndarray:
    """Raster-order mask ``(2h+1, 2h+1)``: rows above the centre, and the centre row left of it
    (and the centre itself unless ``exclusive``)."""
    k = 2 * half + 1
    mask = np.zeros((k, k), bool)
    mask[:half] = True
    mask[half, :half] = True
    if not exclusive:
        mask[half, half] = True
    return mask


def pixelcnn(
    L: int,
    spin_values: Any = (-1, 1),
    *,
    channels: int = 32,
    depth: int = 3,
    half_kernel: int = 2,
    activation=jax.nn.silu,
) -> AutoregressiveNet:
    """Masked-convolution autoregressive network over ``L x L`` spins.

    Parameters
    ----------
    L : int
        Linear lattice size.
    spin_values : sequence of int
        Allowed spin values, ascending (``target.spin_values``).
    channels, depth, half_kernel : int
        Hidden channels, number of masked conv layers (>= 1), kernel size ``2 * half_kernel + 1``.
    activation : callable
        Hidden nonlinearity.
    """
    L, values = check_spin_values(L, spin_values)
    for name, v, lo in (("channels", channels, 1), ("depth", depth, 1), ("half_kernel", half_kernel, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    N, q, C, k = L * L, int(values.size), int(channels), 2 * int(half_kernel) + 1
    mask_a = jnp.asarray(conv_mask(half_kernel, True))[:, :, None, None]
    mask_b = jnp.asarray(conv_mask(half_kernel, False))[:, :, None, None]

    def init(key: PRNGKey) -> dict:
        dtype = jnp.result_type(float)
        keys = jax.random.split(key, depth)
        n_a = float(conv_mask(half_kernel, True).sum())
        n_b = float(conv_mask(half_kernel, False).sum())
        return {
            "conv": [jax.random.normal(keys[0], (k, k, q, C), dtype) / np.sqrt(n_a)]
            + [jax.random.normal(keys[i], (k, k, C, C), dtype) / np.sqrt(n_b * C) for i in range(1, depth)],
            "bias": [jnp.zeros((C,), dtype) for _ in range(depth)],
            "out": jnp.zeros((C, q), dtype),
            "bias_out": jnp.zeros((N, q), dtype),
        }

    def conv(h, W):
        return jax.lax.conv_general_dilated(h, W, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def logits(params: dict, x: Array) -> Array:
        n = x.shape[0]
        oh = jax.nn.one_hot(x.reshape(n, L, L), q, dtype=params["out"].dtype)
        h = activation(conv(oh, params["conv"][0] * mask_a) + params["bias"][0])
        for W, c in zip(params["conv"][1:], params["bias"][1:]):
            h = h + activation(conv(h, W * mask_b) + c)
        return (h @ params["out"]).reshape(n, N, q) + params["bias_out"]

    return make_net(init, logits, None, L, values,
                    f"pixelcnn(L={L}, q={q}, channels={C}, depth={depth}, kernel={k})")
