"""Core contracts: the kernel contract (blackjax style) and small shared helpers.

A kernel module ``foo`` exposes

* ``init(position, log_prob_fn, ...) -> FooState``;
* ``build_kernel(**static) -> kernel(key, state, log_prob_fn, **params) -> (FooState, FooInfo)``;
* ``foo(log_prob_fn, **params) -> SamplingAlgorithm(init, step)`` with ``step(key, state)``.

The public ``foo`` is a :class:`KernelAPI` (blackjax's ``GenerateSamplingAPI`` pattern): calling
it builds the kernel, and it carries the module's parts (``foo.init``, ``foo.build_kernel``,
``foo.transition``, ``foo.FooState`` ...), so the constructor never hides its module.

States and infos are NamedTuples; keys are the first argument and are never stored.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import functools

import jax
import jax.numpy as jnp

from flowsamp.types import Array, PRNGKey


class SamplingAlgorithm(NamedTuple):
    """A Markov kernel as a pair of pure functions.

    ``init(position) -> state`` caches what the next step needs;
    ``step(key, state) -> (state, info)`` performs one transition that leaves
    the target invariant.
    """

    init: Callable[[Any], Any]
    step: Callable[[PRNGKey, Any], tuple[Any, Any]]


class KernelAPI:
    """A kernel constructor that carries its module's public parts.

    ``KernelAPI(constructor, namespace, names)`` is called exactly like ``constructor``
    (``fs.kernels.mala(log_prob, step_size=0.1) -> SamplingAlgorithm``) and has as attributes
    the objects ``namespace[name]`` for every ``name`` in ``names`` other than the
    constructor's own: ``init``, ``build_kernel``, ``transition`` where the module has one,
    and its State/Info NamedTuples. This is blackjax's ``GenerateSamplingAPI``
    (``blackjax/__init__.py``): the top-level name is an object, not a function shadowing its
    module, so ``fs.kernels.hmc.transition`` and ``from flowsamp.kernels.hmc import
    transition`` name the same function and the module is never out of reach. ``__name__``,
    ``__doc__`` and the signature are the constructor's.
    """

    def __init__(self, constructor: Callable[..., SamplingAlgorithm], namespace: dict, names: Any) -> None:
        functools.update_wrapper(self, constructor)
        self._constructor = constructor
        self.parts = tuple(n for n in names if n != constructor.__name__)
        for name in self.parts:
            setattr(self, name, namespace[name])

    def __call__(self, *args: Any, **kwargs: Any) -> SamplingAlgorithm:
        return self._constructor(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<flowsamp kernel {self.__module__}.{self.__name__} ({', '.join(self.parts)})>"

    def __reduce__(self) -> tuple:
        # pickled by reference: the module attribute of this name is this object
        return (_kernel_api, (self.__module__, self.__name__))


def _kernel_api(module: str, name: str) -> KernelAPI:
    return getattr(__import__(module, fromlist=[name]), name)


def as_key(key: Any) -> PRNGKey:
    """Return ``key`` as a typed JAX key of any ``impl`` (raw uint32 keys are wrapped)."""
    if isinstance(key, int):
        return jax.random.key(key)
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def acceptance_probability(log_ratio: Array) -> Array:
    """NaN-safe Metropolis-Hastings acceptance probability :math:`\\min(1, e^{\\log r})`, elementwise;
    0 where ``log_ratio`` is not finite (a non-finite proposal is a rejection).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> [round(float(a), 4) for a in acceptance_probability(jnp.array([0.5, -1.0, jnp.nan]))]
    [1.0, 0.3679, 0.0]
    """
    safe = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
    return jnp.exp(jnp.minimum(safe, 0.0))


def metropolis_test(log_u: Array, log_ratio: Array) -> tuple[Array, Array, Array]:
    """NaN-safe Metropolis-Hastings test against a given ``log_u = log U``, ``U ~ Uniform(0, 1)``.

    Elementwise (works on a batch of chains). Returns ``(is_accepted, acceptance_rate,
    is_finite)`` with ``acceptance_rate = min(1, exp(log_ratio))``; a non-finite
    ``log_ratio`` (NaN or +/-inf from a non-finite proposed log-density) is a rejection with
    acceptance rate 0. Use it when the uniforms are drawn in bulk; otherwise
    :func:`metropolis_accept` draws one.
    """
    is_finite = jnp.isfinite(log_ratio)
    safe = jnp.where(is_finite, log_ratio, -jnp.inf)
    return is_finite & (log_u < safe), acceptance_probability(log_ratio), is_finite


def metropolis_accept(key: PRNGKey, log_ratio: Array) -> tuple[Array, Array, Array]:
    """NaN-safe Metropolis-Hastings test drawing its own uniform from ``key``.

    Returns ``(is_accepted, acceptance_rate, is_finite)``, see :func:`metropolis_test`.
    """
    dtype = jnp.result_type(log_ratio, float)
    log_u = jnp.log(jax.random.uniform(key, jnp.shape(log_ratio), dtype=dtype))
    return metropolis_test(log_u, log_ratio)


def select(pred: Array, on_true: Any, on_false: Any) -> Any:
    """Tree-wise ``jnp.where(pred, on_true, on_false)``.

    ``pred`` is a scalar or a batch of chains (shape ``(C,)``): it is broadcast over each
    leaf's trailing axes, so ``select(is_accepted, proposal, state)`` works for one chain
    and for a batch alike.
    """

    def pick(a: Array, b: Array) -> Array:
        p = jnp.reshape(pred, jnp.shape(pred) + (1,) * (jnp.ndim(a) - jnp.ndim(pred)))
        return jnp.where(p, a, b)

    return jax.tree.map(pick, on_true, on_false)


def check_finite_positions(positions: Any, what: str = "initial position") -> None:
    """Raise ``ValueError`` naming the first chain whose position is not finite.

    ``positions`` has chains on its leading axis (or is one position when 1-D).
    Only works on concrete (non-traced) arrays; it is a host-side input check.
    """
    import numpy as np

    leaves = jax.tree.leaves(positions)
    for leaf in leaves:
        arr = np.asarray(leaf)
        if not np.issubdtype(arr.dtype, np.floating):
            continue
        if arr.ndim <= 1:
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"non-finite {what}: {arr}")
            continue
        bad = ~np.all(np.isfinite(arr.reshape(arr.shape[0], -1)), axis=1)
        if bad.any():
            idx = int(np.argmax(bad))
            raise ValueError(
                f"non-finite {what} for chain {idx} (of {arr.shape[0]}; {int(bad.sum())} bad chains)"
            )


class Flow(NamedTuple):
    """A normalizing flow q_theta as pure functions over an explicit ``params`` pytree.

    * ``init(key) -> params`` (identity map at initialisation: q_theta is the base);
    * ``sample_and_log_prob(params, key, n) -> (x, log_q)`` with shapes ``(n, dim)``, ``(n,)``;
    * ``log_prob(params, x) -> log_q`` for ``x`` of shape ``(..., dim)``;
    * ``forward(params, z) -> (x, log_det)``: base (latent) z to data x, log|det dx/dz|;
    * ``inverse(params, x) -> (z, log_det)``: data x to latent z, log|det dz/dx|.
    ``dim`` is the event dimension.
    """

    init: Callable[[PRNGKey], Any]
    sample_and_log_prob: Callable[[Any, PRNGKey, int], tuple[Array, Array]]
    log_prob: Callable[[Any, Array], Array]
    forward: Callable[[Any, Array], tuple[Array, Array]]
    inverse: Callable[[Any, Array], tuple[Array, Array]]
    dim: int


class Proposal(NamedTuple):
    """A stateless independence proposal q for Metropolis-Hastings / importance sampling.

    ``sample_and_log_prob(key) -> (x, log_q)`` draws one point ``x`` (shape ``(dim,)``);
    ``log_prob(x) -> log_q`` evaluates log q at one point. Built from a flow by
    ``fs.flows.proposal(flow, params)``; any object with these two functions works.
    """

    sample_and_log_prob: Callable[[PRNGKey], tuple[Array, Array]]
    log_prob: Callable[[Array], Array]
