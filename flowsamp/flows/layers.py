"""Invertible layers and their composition into a :class:`flowsamp.base.Flow`.

A :class:`Layer` is ``init(key) -> params``, ``forward(params, z) -> (x, log_det)`` and
``inverse(params, x) -> (z, log_det)`` on arrays of shape ``(..., dim)`` (log-dets of shape
``(...)``). :func:`compose` stacks layers on a base distribution; its params pytree is
``{"base": base_params, "layers": [layer_params, ...]}`` (plain dicts/lists of arrays).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from flowsamp.base import Flow
from flowsamp.flows.bases import Base, _float_dtype
from flowsamp.types import Array, Params, PRNGKey


class Layer(NamedTuple):
    """One invertible map z -> x with its log-abs-Jacobian-determinant."""

    init: Callable[[PRNGKey], Params]
    forward: Callable[[Params, Array], tuple[Array, Array]]
    inverse: Callable[[Params, Array], tuple[Array, Array]]


def cast_floats(tree: Any, dtype: Any) -> Any:
    """Cast every floating leaf of ``tree`` to ``dtype``."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def global_affine(dim: int) -> Layer:
    r"""Learnable elementwise shift and scale (ActNorm-like), identity at init.

    ``params = {"shift": (dim,), "log_scale": (dim,)}``;
    :math:`x = \text{shift} + e^{\text{log\_scale}} \odot z`, ``log_det = sum(log_scale)``.
    Placed on the data side of a flow so that a target centred far from the origin, or far
    wider than the spline interval, is reachable; set ``shift``/``log_scale`` from data to
    start there.
    """

    def init(key: PRNGKey) -> Params:
        del key
        zeros = jnp.zeros((dim,), _float_dtype())
        return {"shift": zeros, "log_scale": zeros}

    def forward(params: Params, z: Array) -> tuple[Array, Array]:
        ls = params["log_scale"]
        x = params["shift"] + jnp.exp(ls) * z
        return x, jnp.broadcast_to(jnp.sum(ls), z.shape[:-1]).astype(x.dtype)

    def inverse(params: Params, x: Array) -> tuple[Array, Array]:
        ls = params["log_scale"]
        z = (x - params["shift"]) * jnp.exp(-ls)
        return z, jnp.broadcast_to(-jnp.sum(ls), x.shape[:-1]).astype(z.dtype)

    return Layer(init, forward, inverse)


def reverse() -> Layer:
    """Reverse the order of the components (a permutation: log_det = 0, no params)."""

    def init(key: PRNGKey) -> Params:
        del key
        return {}

    def apply(params: Params, x: Array) -> tuple[Array, Array]:
        del params
        return jnp.flip(x, axis=-1), jnp.zeros(x.shape[:-1], x.dtype)

    return Layer(init, apply, apply)


def compose(base: Base, layers: Sequence[Layer], jit: bool = True) -> Flow:
    r"""Flow :math:`x = f_K \circ \dots \circ f_1(z)`, :math:`z \sim p_0` (``base``).

    .. math:: \log q_\theta(x) = \log p_0(z) - \sum_k \log\left|\det \partial f_k\right| ,
              \quad z = f_1^{-1}\circ\dots\circ f_K^{-1}(x).

    ``layers[0]`` acts first on the base sample. The returned functions are jitted
    (``n`` static in ``sample_and_log_prob``) unless ``jit=False``. ``init`` creates params
    in the default float dtype (float64 under ``jax_enable_x64``).
    """
    layers = tuple(layers)
    dim = base.dim

    def _check(x: Array, name: str) -> Array:
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != dim:
            raise ValueError(f"{name} must have shape (..., {dim}), got {x.shape}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(_float_dtype())
        return x

    def init(key: PRNGKey) -> Params:
        keys = jax.random.split(key, len(layers) + 1)
        params = {
            "base": base.init(keys[0]),
            "layers": [layer.init(k) for layer, k in zip(layers, keys[1:])],
        }
        return cast_floats(params, _float_dtype())

    def forward(params: Params, z: Array) -> tuple[Array, Array]:
        x = _check(z, "z")
        log_det = jnp.zeros(x.shape[:-1], x.dtype)
        for layer, p in zip(layers, params["layers"]):
            x, ld = layer.forward(p, x)
            log_det = log_det + ld
        return x, log_det

    def inverse(params: Params, x: Array) -> tuple[Array, Array]:
        z = _check(x, "x")
        log_det = jnp.zeros(z.shape[:-1], z.dtype)
        for layer, p in zip(reversed(layers), reversed(params["layers"])):
            z, ld = layer.inverse(p, z)
            log_det = log_det + ld
        return z, log_det

    def log_prob(params: Params, x: Array) -> Array:
        z, log_det = inverse(params, x)
        return base.log_prob(params["base"], z) + log_det

    def sample_and_log_prob(params: Params, key: PRNGKey, n: int) -> tuple[Array, Array]:
        z, log_p0 = base.sample_and_log_prob(params["base"], key, n)
        x, log_det = forward(params, z)
        return x, log_p0 - log_det

    if jit:
        forward, inverse, log_prob = jax.jit(forward), jax.jit(inverse), jax.jit(log_prob)
        sample_and_log_prob = jax.jit(sample_and_log_prob, static_argnums=2)
    return Flow(init, sample_and_log_prob, log_prob, forward, inverse, dim)
