"""NeuTra: a gradient kernel run in a flow's latent space (neural transport).

With a bijection :math:`x = f_\\theta(z)` (the flow's ``forward``), the target pulled
back to the latent space is

.. math::

    \\log \\tilde p(z) = \\log p(f_\\theta(z)) + \\log\\left|\\det \\frac{\\partial f_\\theta}{\\partial z}\\right|,

which is close to a standard normal when :math:`q_\\theta \\approx p`. An inner kernel
(MALA, HMC or NUTS) leaving :math:`\\tilde p` invariant, mapped through :math:`f_\\theta`, leaves
``p`` invariant for *any* bijection (a good flow only makes it mix faster). Positions are
reported in x space; the latent chain state rides along.

References: Hoffman et al., "NeuTra-lizing bad geometry in HMC with neural transport",
arXiv:1903.03704.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

from flowsamp.base import Flow, KernelAPI, SamplingAlgorithm
from flowsamp.kernels.mala import mala
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["NeuTraInfo", "NeuTraState", "latent_log_prob", "init", "build_kernel", "neutra"]


class NeuTraState(NamedTuple):
    """``position``: the point x in data space; ``latent``: the inner kernel's state at
    ``z = f^{-1}(x)`` (its ``log_prob`` is the pulled-back :math:`\\log\\tilde p(z)`)."""

    position: Array
    latent: Any


class NeuTraInfo(NamedTuple):
    """Diagnostics of the inner kernel's step (``inner`` is its own Info)."""

    is_accepted: Array
    acceptance_rate: Array
    is_finite: Array
    inner: Any


def _single(fn: Callable, params: Any, v: Array) -> tuple[Array, Array]:
    out, log_det = fn(params, v[None])
    return out[0], jnp.reshape(log_det, (-1,))[0]


def latent_log_prob(log_prob_fn: LogProbFn, flow: Flow, params: Any) -> LogProbFn:
    """Return :math:`z \\mapsto \\log p(f_\\theta(z)) + \\log|\\det \\partial f_\\theta/\\partial z|`."""

    def fn(z: Array) -> Array:
        x, log_det = _single(flow.forward, params, z)
        return log_prob_fn(x) + log_det.astype(x.dtype)

    return fn


def _check(log_prob_fn: Any, flow: Any, inner: Any) -> None:
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a flowsamp Flow, got {type(flow).__name__}")
    if not callable(log_prob_fn):
        raise TypeError(f"log_prob_fn must be callable, got {type(log_prob_fn).__name__}")
    if not callable(inner):
        raise TypeError(f"inner must be a kernel constructor, got {type(inner).__name__}")


def init(
    position: Array,
    log_prob_fn: LogProbFn,
    flow: Flow,
    params: Any,
    inner: Callable[..., SamplingAlgorithm] = mala,
    **inner_params: Any,
) -> NeuTraState:
    """State at ``x = position``: the inner kernel's state at :math:`z = f_\\theta^{-1}(x)`
    on the pulled-back density :math:`\\log\\tilde p(z)`."""
    _check(log_prob_fn, flow, inner)
    alg = inner(latent_log_prob(log_prob_fn, flow, params), **inner_params)
    x = jnp.asarray(position)
    z, _ = _single(flow.inverse, params, x)
    return NeuTraState(x, alg.init(z.astype(x.dtype)))


def build_kernel(inner: Callable[..., SamplingAlgorithm] = mala) -> Callable[..., tuple[NeuTraState, NeuTraInfo]]:
    """Return ``kernel(key, state, log_prob_fn, flow, params, **inner_params)``: one step of
    ``inner`` on :math:`\\log\\tilde p(z)`, then :math:`x = f_\\theta(z)` (blackjax's
    ``build_kernel`` pattern: every parameter is an argument, so one jitted kernel serves
    any flow parameters)."""

    def kernel(
        key: PRNGKey, state: NeuTraState, log_prob_fn: LogProbFn, flow: Flow, params: Any, **inner_params: Any
    ) -> tuple[NeuTraState, NeuTraInfo]:
        alg = inner(latent_log_prob(log_prob_fn, flow, params), **inner_params)
        latent, info = alg.step(key, state.latent)
        x, _ = _single(flow.forward, params, latent.position)
        info = NeuTraInfo(info.is_accepted, info.acceptance_rate, info.is_finite, info)
        return NeuTraState(x.astype(state.position.dtype), latent), info

    return kernel


def neutra(
    log_prob_fn: LogProbFn,
    flow: Flow,
    params: Any,
    inner: Callable[..., SamplingAlgorithm] = mala,
    **inner_params: Any,
) -> SamplingAlgorithm:
    """Run ``inner`` (a kernel constructor, default MALA) on the flow's latent space.

    Parameters
    ----------
    log_prob_fn
        Unnormalized log-density log p(x) of one point ``(dim,)``.
    flow, params
        A :class:`flowsamp.base.Flow` and its parameters; ``forward`` maps latent z to x.
    inner
        Kernel constructor ``inner(log_prob_fn, **inner_params) -> SamplingAlgorithm``
        (e.g. ``fs.kernels.mala``, ``fs.kernels.hmc``, ``fs.kernels.nuts``).
    **inner_params
        Passed to ``inner`` (e.g. ``step_size=0.3``, ``num_integration_steps=8``).

    Returns
    -------
    SamplingAlgorithm
        ``init(x) -> NeuTraState`` and ``step(key, state) -> (NeuTraState, NeuTraInfo)``:
        one inner step on :math:`\\log\\tilde p(z)` followed by :math:`x = f_\\theta(z)`,
        which leaves ``p`` invariant. Built from the module's :func:`init` and
        :func:`build_kernel`.
    """
    _check(log_prob_fn, flow, inner)
    kernel = build_kernel(inner)

    def init_fn(position: Array) -> NeuTraState:
        return init(position, log_prob_fn, flow, params, inner, **inner_params)

    def step_fn(key: PRNGKey, state: NeuTraState) -> tuple[NeuTraState, NeuTraInfo]:
        return kernel(key, state, log_prob_fn, flow, params, **inner_params)

    return SamplingAlgorithm(init_fn, step_fn)


neutra = KernelAPI(neutra, globals(), __all__)
