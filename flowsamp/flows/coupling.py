r"""Lean coupling layers: the conditioner emits parameters for the transformed part only.

A coupling layer splits x into a conditioning part :math:`x_A` (left unchanged) and a
transformed part :math:`x_B`:

.. math:: y_A = x_A,\qquad y_B = \tau(x_B;\ \text{NN}(x_A)),\qquad
          \log|\det \partial y/\partial x| = \sum_{i\in B} \log \tau'(x_i).

Unlike distrax ``MaskedCoupling`` (which evaluates the transform on every dimension and
masks half of it away) the transform runs on :math:`x_B` only; contiguous halves are sliced
and concatenated without gathers. When A is empty (``dim == 1``, or a partition with one
side empty) the parameters are a learned constant: an unconditional elementwise transform.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from flowsamp.flows.layers import Layer
from flowsamp.flows.nets import MLP, ConvNet
from flowsamp.flows.transforms import Transform
from flowsamp.types import Array, Params, PRNGKey

MASKS = ("alternating", "checkerboard")
CONDITIONERS = ("mlp", "conv")


def partitions(
    dim: int, num_layers: int, mask: str = "alternating", lattice_shape: Sequence[int] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer, the ``(conditioning, transformed)`` index arrays (0-based, sorted).

    ``"alternating"``: the first ``dim // 2`` and the last ``dim - dim // 2`` components,
    swapping roles each layer. ``"checkerboard"``: sites of even / odd parity of the sum of
    lattice coordinates of a row-major flattened lattice ``lattice_shape`` (a 1-D chain when
    ``lattice_shape`` is None), swapping each layer. For ``dim == 1`` every layer transforms
    the single component unconditionally.
    """
    if mask not in MASKS:
        raise ValueError(f"unknown mask {mask!r}; expected one of {MASKS}")
    idx = np.arange(dim)
    if dim == 1:
        return [(idx[:0], idx)] * num_layers
    if mask == "alternating":
        first = np.arange(dim) < dim // 2
    else:
        shape = (dim,) if lattice_shape is None else tuple(lattice_shape)
        if int(np.prod(shape)) != dim:
            raise ValueError(f"lattice_shape {shape} does not have {dim} sites")
        first = (np.indices(shape).sum(axis=0).reshape(-1) % 2) == 0
    out = []
    for k in range(num_layers):
        trans = first if k % 2 == 0 else ~first
        out.append((idx[~trans], idx[trans]))
    return out


def _contiguous(idx: np.ndarray) -> slice | None:
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        return slice(int(idx[0]), int(idx[0]) + idx.size)
    return None


def _gather(x: Array, idx: np.ndarray) -> Array:
    s = _contiguous(idx)
    return x[..., s] if s is not None else jnp.take(x, idx, axis=-1)


def _merger(dim: int, cond: np.ndarray, trans: np.ndarray) -> Callable[[Array, Array], Array]:
    """``merge(x_A, y_B) -> y`` reassembling the two parts in their original order."""
    if cond.size == 0:
        return lambda xa, yb: yb
    if cond[-1] < trans[0] and _contiguous(cond) and _contiguous(trans):
        return lambda xa, yb: jnp.concatenate([xa, yb], axis=-1)
    if trans[-1] < cond[0] and _contiguous(cond) and _contiguous(trans):
        return lambda xa, yb: jnp.concatenate([yb, xa], axis=-1)
    inv = np.argsort(np.concatenate([cond, trans]))
    return lambda xa, yb: jnp.take(jnp.concatenate([xa, yb], axis=-1), inv, axis=-1)


def coupling_layer(
    dim: int,
    cond: np.ndarray,
    trans: np.ndarray,
    transform: Transform,
    hidden: Sequence[int],
    conditioner: str = "mlp",
    lattice_shape: Sequence[int] | None = None,
    activation: Callable[[Array], Array] = nn.relu,
) -> Layer:
    """A lean coupling layer transforming ``x[trans]`` conditioned on ``x[cond]``.

    ``conditioner="mlp"`` feeds ``x[cond]`` to a dense net; ``"conv"`` feeds the whole
    lattice with the transformed sites zeroed to a periodic convolutional net and reads its
    output at the transformed sites. Both have a zero last layer (identity at init).
    Params: ``{"net": flax params}`` or ``{"const": (len(trans), num_params)}`` when
    ``cond`` is empty.
    """
    if conditioner not in CONDITIONERS:
        raise ValueError(f"unknown conditioner {conditioner!r}; expected one of {CONDITIONERS}")
    num_p = transform.num_params
    n_b = trans.size
    merge = _merger(dim, cond, trans)

    if cond.size == 0:

        def init(key: PRNGKey) -> Params:
            del key
            return {"const": jnp.zeros((n_b, num_p))}

        def params_of(p: Params, x: Array) -> Array:
            return jnp.broadcast_to(p["const"].astype(x.dtype), x.shape[:-1] + (n_b, num_p))

    elif conditioner == "mlp":
        net = MLP(tuple(hidden), n_b, num_p, activation)

        def init(key: PRNGKey) -> Params:
            return {"net": net.init(key, jnp.zeros((1, cond.size)))["params"]}

        def params_of(p: Params, x: Array) -> Array:
            return net.apply({"params": p["net"]}, _gather(x, cond))

    else:
        if lattice_shape is None:
            raise ValueError("conditioner='conv' needs lattice_shape")
        shape = tuple(int(s) for s in lattice_shape)
        if int(np.prod(shape)) != dim:
            raise ValueError(f"lattice_shape {shape} does not have {dim} sites")
        net = ConvNet(tuple(hidden), shape, num_p, activation=activation)
        keep = np.zeros(dim)
        keep[cond] = 1.0

        def init(key: PRNGKey) -> Params:
            return {"net": net.init(key, jnp.zeros((1, dim)))["params"]}

        def params_of(p: Params, x: Array) -> Array:
            out = net.apply({"params": p["net"]}, x * jnp.asarray(keep, x.dtype))
            return jnp.take(out, trans, axis=-2)

    def forward(p: Params, x: Array) -> tuple[Array, Array]:
        raw = params_of(p, x)
        yb, log_det = transform.forward(raw, _gather(x, trans))
        return merge(_gather(x, cond), yb), log_det

    def inverse(p: Params, y: Array) -> tuple[Array, Array]:
        raw = params_of(p, y)
        xb, log_det = transform.inverse(raw, _gather(y, trans))
        return merge(_gather(y, cond), xb), log_det

    return Layer(init, forward, inverse)


def check_common(
    dim: Any, num_layers: Any, hidden: Any, base: Any, conditioner: str, lattice_shape: Any
) -> tuple[int, int, tuple[int, ...]]:
    """Validate the arguments shared by the flow constructors; return normalised values."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)):
        raise TypeError(f"num_layers must be an int, got {type(num_layers).__name__}")
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    hidden = tuple(int(h) for h in hidden)
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden sizes must be positive, got {hidden}")
    if base is not None and getattr(base, "dim", None) != dim:
        raise ValueError(f"base has dim {getattr(base, 'dim', None)}, flow has dim {dim}")
    if conditioner == "conv" and lattice_shape is None:
        raise ValueError("conditioner='conv' needs lattice_shape")
    return int(dim), int(num_layers), hidden
