r"""Umbrella windows on a collective variable, run with any ``fs.kernels`` kernel, combined by MBAR.

Window :math:`l` samples the biased density

.. math::

    \pi_l(x) \propto \pi(x)\, e^{-b_l(x)}, \qquad b_l(x) = \tfrac12 k\,(\xi(x) - u_l)^2,

on a ladder :math:`u_0 < \dots < u_{L-1}` of a collective variable :math:`\xi` (the committor
in :func:`flowsamp.rare.committor`). The pooled draws :math:`x_n` (:math:`N_l` from window
:math:`l`) are reweighted to :math:`\pi` by MBAR (Shirts & Chodera 2008): the normalisers
:math:`Z_l = \int \pi e^{-b_l}` solve

.. math::

    Z_l = \sum_n \frac{e^{-b_l(x_n)}}{\sum_j N_j e^{-b_j(x_n)} / Z_j},
    \qquad w_n \propto \Big(\sum_j N_j e^{-b_j(x_n)} / Z_j\Big)^{-1},

and :math:`\mathbb E_\pi f \approx \sum_n w_n f(x_n) / \sum_n w_n`. With :math:`k = 0` every
window is :math:`\pi` itself and the weights are uniform (plain sampling). The bias is in
log-density units (:math:`\beta` absorbed into :math:`k`).

References
----------
M. R. Shirts and J. D. Chodera, J. Chem. Phys. 129, 124105 (2008), arXiv:0801.1426.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from flowsamp.base import metropolis_test
from flowsamp.kernels.adaptation import TARGET_ACCEPTANCE
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["UmbrellaSamples", "mbar", "run_windows", "step_parameter"]

_STEP_NAMES = {"rwmh": "scale"}


def step_parameter(kernel: Any) -> tuple[str, float]:
    """Name of ``kernel``'s step parameter (``scale`` for rwmh, ``step_size`` otherwise) and its
    target acceptance from :data:`flowsamp.kernels.TARGET_ACCEPTANCE`."""
    name = getattr(kernel, "__name__", "")
    if name not in TARGET_ACCEPTANCE:
        raise ValueError(f"kernel must be one of fs.kernels.{sorted(TARGET_ACCEPTANCE)}, got {name!r}")
    return _STEP_NAMES.get(name, "step_size"), TARGET_ACCEPTANCE[name]


class UmbrellaSamples(NamedTuple):
    """Draws of a window run: ``positions`` (L, C, T, dim), final ``last`` (L, C, dim), mean
    ``acceptance`` per window (L,), ``num_nonfinite`` proposals, mean ``swap_acceptance`` of the
    replica exchanges between windows ``l`` and ``l + 1`` (L - 1,) (zeros without exchange)."""

    positions: Array
    last: Array
    acceptance: Array
    num_nonfinite: Array
    swap_acceptance: Array


@functools.partial(jax.jit, static_argnums=(2,))
def mbar(
    bias: Array, counts: Array, num_iterations: int = 500, log_Z_init: Array | None = None
) -> tuple[Array, Array, Array]:
    r"""Solve the MBAR equations: a few fixed-point sweeps, then BFGS on the convex MBAR objective.

    .. math::

        \min_{f,\ f_0 = 0}\ \frac1N\sum_n \log\sum_l N_l e^{f_l - b_l(x_n)} - \sum_l \frac{N_l}{N} f_l,
        \qquad f_l = -\log Z_l

    (Shirts & Chodera 2008; the plain fixed-point iteration stalls for tens of thousands of
    sweeps on poorly overlapping ladders, the objective's minimiser does not).

    Parameters
    ----------
    bias
        :math:`b_l(x_n)`, shape ``(L, N)`` (every pooled draw under every window).
    counts
        :math:`N_l`, shape ``(L,)``.
    num_iterations
        At most this many BFGS iterations (after up to 20 fixed-point sweeps).
    log_Z_init
        Warm start (e.g. the previous solution when the draws changed little).

    Returns
    -------
    log_Z
        :math:`\log Z_l - \log Z_0`, shape ``(L,)``.
    log_w
        Normalised log-weights of the draws under :math:`\pi` (``logsumexp(log_w) = 0``).
    residual
        :math:`\max_l |\Delta\log Z_l|` of the last iteration (convergence check).
    """
    log_n = jnp.log(counts.astype(bias.dtype))
    frac = counts.astype(bias.dtype) / jnp.sum(counts)

    def log_denominator(log_Z):
        return logsumexp(log_n[:, None] - bias - log_Z[:, None], axis=0)

    def objective(g):  # convex in f = -log Z (f_0 = 0 fixed); its minimiser solves the MBAR equations
        log_Z = jnp.concatenate([jnp.zeros((1,), g.dtype), g])
        return jnp.mean(log_denominator(log_Z)) + jnp.sum(frac * log_Z)

    def body(_, log_Z):
        new = logsumexp(-bias - log_denominator(log_Z)[None, :], axis=1)
        return new - new[0]

    init = jnp.zeros(bias.shape[0], bias.dtype) if log_Z_init is None else jnp.asarray(log_Z_init, bias.dtype)
    init = jax.lax.fori_loop(0, min(num_iterations, 20), body, init - init[0])
    opt = jax.scipy.optimize.minimize(objective, init[1:], method="BFGS", options={"maxiter": num_iterations})
    log_Z = jnp.concatenate([jnp.zeros((1,), bias.dtype), opt.x])
    log_Z = jnp.where(jnp.all(jnp.isfinite(log_Z)), log_Z, init)
    residual = jnp.max(jnp.abs(body(0, log_Z) - log_Z))
    log_w = -log_denominator(log_Z)
    return log_Z, log_w - logsumexp(log_w), residual


def run_windows(
    key: PRNGKey,
    kernel: Any,
    log_prob_fn: LogProbFn,
    cv: Callable[[Array], Array],
    centres: Array,
    k: Array,
    positions: Array,
    step_sizes: Array,
    num_steps: int,
    kernel_params: dict | None = None,
    thin: int = 1,
    exchange: bool = True,
) -> UmbrellaSamples:
    r"""Run ``C`` chains in each of ``L`` windows for ``num_steps`` steps (jittable), keeping
    every ``thin``-th position (``T = num_steps // thin`` draws per chain).

    ``cv(x)`` is the collective variable of one point; ``centres`` (L,) the ladder; ``k`` the
    spring constant (scalar); ``positions`` (L, C, dim) the starting points; ``step_sizes`` (L,)
    the kernel's step parameter per window; ``kernel`` a ``fs.kernels`` API (``rwmh``, ``mala``,
    ``hmc`` ...). States are initialised here, so a changed ``cv`` is always used consistently.

    With ``exchange`` (Hamiltonian replica exchange, Sugita, Kitao & Okamoto 2000), after every
    ``thin`` steps chain :math:`c` of window :math:`l` and chain :math:`c` of window :math:`l+1`
    swap configurations with probability

    .. math:: \min\{1, e^{b_l(x_l) + b_{l+1}(x_{l+1}) - b_l(x_{l+1}) - b_{l+1}(x_l)}\}

    (:math:`\log\pi` cancels), pairs :math:`(0,1),(2,3),\dots` and :math:`(1,2),(3,4),\dots`
    alternating (:func:`flowsamp.base.metropolis_test`). Each window keeps its own invariant
    density. Without it a window whose :math:`\xi`-marginal is bimodal (a window just above
    :math:`u = 0` holds the basin where :math:`\xi \approx 0` *and* the transition region, a
    barrier apart) stays in the mode its chains started in and MBAR misweighs the ladder.
    """
    step_name, _ = step_parameter(kernel)
    params = dict(kernel_params or {})
    step_fn = kernel.build_kernel()
    L, C = positions.shape[:2]

    def lp_of(u):
        def lp(x):
            return log_prob_fn(x) - 0.5 * k * (cv(x) - u) ** 2

        return lp

    def init(x):  # (L, C, dim) -> states
        return jax.vmap(lambda u, xs: jax.vmap(lambda x: kernel.init(x, lp_of(u)))(xs))(centres, x)

    def local(key, states):
        def window(key, u, step, st):
            lp = lp_of(u)

            def one(st, key):
                keys = jax.random.split(key, C)
                st, info = jax.vmap(lambda kk, s: step_fn(kk, s, lp, **{step_name: step}, **params))(keys, st)
                return st, (info.acceptance_rate, ~info.is_finite)

            st, (acc, bad) = jax.lax.scan(one, st, jax.random.split(key, thin))
            return st, acc.mean(), bad.sum()

        return jax.vmap(window)(jax.random.split(key, L), centres, step_sizes, states)

    def swap(key, x, parity):
        xi = jax.vmap(jax.vmap(cv))(x)  # (L, C)
        b = 0.5 * k * (xi[None, :, :] - centres[:, None, None]) ** 2  # b[m, l, c] = b_m(x_{l, c})
        lo, hi = jnp.arange(L - 1), jnp.arange(1, L)
        log_r = b[lo, lo] + b[hi, hi] - b[lo, hi] - b[hi, lo]  # (L - 1, C)
        ok, rate, _ = metropolis_test(jnp.log(jax.random.uniform(key, log_r.shape, log_r.dtype)), log_r)
        ok = ok & ((lo % 2) == parity)[:, None]
        lower = jnp.concatenate([ok, jnp.zeros((1, C), bool)])
        upper = jnp.concatenate([jnp.zeros((1, C), bool), ok])
        idx = jnp.arange(L)[:, None]
        src = jnp.where(lower, idx + 1, jnp.where(upper, idx - 1, idx))
        return jnp.take_along_axis(x, src[..., None], axis=0), rate.mean(axis=1)

    def body(carry, key):
        states, i = carry
        k_loc, k_swap = jax.random.split(key)
        states, acc, bad = local(k_loc, states)
        rate = jnp.zeros((L - 1,), positions.dtype)
        if exchange and L > 1:
            x, rate = swap(k_swap, states.position, i % 2)
            states = init(x)
        return (states, i + 1), (states.position, acc, bad, rate)

    num = max(1, num_steps // thin)
    (states, _), (pos, acc, bad, rate) = jax.lax.scan(body, (init(positions), jnp.int32(0)), jax.random.split(key, num))
    # pos: (T, L, C, dim) -> (L, C, T, dim)
    return UmbrellaSamples(jnp.moveaxis(pos, 0, 2), states.position, acc.mean(0), bad.sum(), rate.mean(0))
