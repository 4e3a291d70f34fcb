"""A numpyro model as a flowsamp target over its flattened unconstrained latent sites.

The transforms, Jacobians and deterministic sites all come from numpyro itself
(:func:`numpyro.infer.util.initialize_model`); this module only flattens the latent
dictionary to one vector with :func:`jax.flatten_util.ravel_pytree` and checks up
front that every latent site is one continuous inference can handle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import numpyro
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import initialize_model

from flowsamp.base import as_key
from flowsamp.types import Array, PRNGKey

__all__ = ["NumpyroTarget", "target", "check_model_sites"]


def check_model_sites(model: Callable, model_args: tuple = (), model_kwargs: dict | None = None) -> None:
    """Trace ``model`` once (abstractly) and reject latent sites a continuous sampler cannot handle.

    Raises ``ValueError`` naming the
    site for: a discrete latent sample site (marginalise it out, e.g. with
    ``numpyro.contrib.funsor`` enumeration, before using a flowsamp kernel), a latent
    ``Delta`` site, a latent site whose support has no bijection to the reals (e.g. a
    sphere), and a subsampled ``plate`` (the potential would be a stochastic estimate).
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    sites: dict = {}

    def run(key: PRNGKey) -> int:
        with handlers.trace() as tr, handlers.seed(rng_seed=key):
            model(*model_args, **model_kwargs)
        sites.update(tr)
        return 0

    # an abstract run (no compilation, no arithmetic): only site types and supports are read
    jax.eval_shape(run, jax.random.key(0))
    _check_sites(sites)


def _check_sites(tr: dict) -> None:
    for name, site in tr.items():
        kind = site["type"]
        if kind == "plate":
            size, sub = site["args"][0], site["args"][1]
            if sub is not None and sub != size:
                raise ValueError(
                    f"plate '{name}' subsamples {sub} of {size} elements; flowsamp needs the exact "
                    "log-density, so remove `subsample_size` from this plate"
                )
        if kind != "sample" or site["is_observed"]:
            continue
        fn = site["fn"]
        support = fn.support
        if support.is_discrete:
            raise ValueError(
                f"latent site '{name}' is discrete ({type(fn).__name__}, support {support}); "
                "flowsamp.numpyro needs continuous latent sites: marginalise it out "
                "(e.g. numpyro.contrib.funsor enumeration) or observe it"
            )
        if isinstance(fn, numpyro.distributions.Delta):
            raise ValueError(
                f"latent site '{name}' has a Delta distribution; use numpyro.deterministic instead"
            )
        try:
            biject_to(support)
        except NotImplementedError:
            raise ValueError(
                f"latent site '{name}' has support {support} with no bijection to the reals; "
                "flowsamp.numpyro cannot sample it (reparametrise it, e.g. "
                "numpyro.infer.reparam)"
            ) from None


@dataclass(frozen=True)
class NumpyroTarget:
    """A numpyro model's posterior over its unconstrained latent sites, flattened.

    Attributes
    ----------
    log_prob : callable
        ``log_prob(x)`` for ``x`` of shape ``(dim,)`` (or ``(..., dim)``, mapped over the
        leading axes): the unnormalised log posterior density of the unconstrained vector,

        .. math::

            \\log \\pi(x) = \\log p(y \\mid T(x)) + \\log p(T(x)) + \\log |\\det J_T(x)|
                          = -U(x),

        with ``T`` numpy's bijection to each site's support and ``U`` numpyro's potential
        energy.
    dim : int
        Length of the flattened unconstrained vector.
    postprocess : callable
        ``postprocess(x) -> dict``: constrained values of the latent sites and the
        ``numpyro.deterministic`` sites at ``x`` (``(..., dim)`` is mapped).
    unravel : callable
        ``unravel(x) -> dict`` of unconstrained site values (shape ``(dim,)`` only).
    ravel : callable
        Inverse of ``unravel``: a dict of unconstrained site values to ``(dim,)``.
    init_positions : callable
        ``init_positions(key, n) -> (n, dim)`` unconstrained starting points drawn with the
        model's ``init_strategy``.
    site_shapes : dict
        Unconstrained shape of every latent site, in ravel order.
    """

    log_prob: Callable[[Array], Array]
    dim: int
    postprocess: Callable[[Array], dict]
    unravel: Callable[[Array], dict]
    ravel: Callable[[dict], Array]
    init_positions: Callable[[PRNGKey, int], Array]
    site_shapes: dict
    log_Z: float | None = None
    mode_weights: Any = None

    def sample(self, key: PRNGKey, n: int) -> Array:
        """Exact posterior draws are not available for a general model."""
        raise NotImplementedError("a numpyro model's posterior has no exact sampler")

    def mode_of(self, x: Array) -> Array:
        """Modes are not defined for a general model."""
        raise NotImplementedError("a numpyro model defines no modes")


def _map_leading(fn: Callable, x: Array, dim: int) -> Any:
    x = jnp.asarray(x)
    if x.shape[-1:] != (dim,):
        raise ValueError(f"expected a position with last axis of length {dim}, got shape {x.shape}")
    if x.ndim == 1:
        return fn(x)
    batch = x.shape[:-1]
    out = jax.vmap(fn)(x.reshape((-1, dim)))
    return jax.tree.map(lambda a: a.reshape(batch + a.shape[1:]), out)


def _initialize(model: Callable, init_strategy: Callable, model_args: tuple, model_kwargs: dict) -> tuple:
    """``(prototype z, potential_fn, postprocess_fn)`` from ``initialize_model``.

    ``initialize_model`` run eagerly compiles every primitive of the model separately; here
    it runs once under ``jax.jit`` (one compilation) and its potential and post-processing
    functions are kept. If those close over a traced value (models with ``param`` sites or
    value-dependent supports), or the traced call fails on a dtype mixture, the eager call is
    used instead.
    """
    captured: dict = {}

    def init(key: PRNGKey) -> Any:
        info = initialize_model(key, model, init_strategy=init_strategy, model_args=model_args,
                                model_kwargs=model_kwargs)
        captured["fns"] = (info.potential_fn, info.postprocess_fn)
        return info.param_info.z

    try:
        prototype = jax.jit(init)(jax.random.key(0))
        potential_fn, postprocess_fn = captured["fns"]
        jax.eval_shape(lambda z: (potential_fn(z), postprocess_fn(z)), prototype)
        return prototype, potential_fn, postprocess_fn
    except (jax.errors.UnexpectedTracerError, TypeError):
        # TypeError: dtype mixtures that numpyro's eager path promotes (seen under x64)
        info = initialize_model(jax.random.key(0), model, init_strategy=init_strategy,
                                model_args=model_args, model_kwargs=model_kwargs)
        return info.param_info.z, info.potential_fn, info.postprocess_fn


def target(
    model: Callable,
    *model_args: Any,
    init_strategy: Callable = init_to_uniform,
    **model_kwargs: Any,
) -> NumpyroTarget:
    """Build a flowsamp target from a numpyro model with its data bound.

    Parameters
    ----------
    model : callable
        A numpyro model; ``model(*model_args, **model_kwargs)``.
    *model_args, **model_kwargs
        Arguments bound into the model (data, sizes).
    init_strategy : callable
        numpyro init strategy used by ``init_positions`` (default ``init_to_uniform``).

    Returns
    -------
    NumpyroTarget
        ``log_prob(x) = -U(x)`` on the flattened unconstrained latent vector ``x`` (with
        the log-Jacobians of numpyro's transforms), ``dim``, ``postprocess``,
        ``init_positions`` and the ravel/unravel maps.

    Raises
    ------
    ValueError
        Naming the site, when a latent site is discrete, a Delta, has no bijection to
        the reals, or a plate is subsampled (see :func:`check_model_sites`).
    """
    check_model_sites(model, model_args, model_kwargs)
    prototype, potential_fn, postprocess_dict = _initialize(model, init_strategy, model_args, model_kwargs)
    flat0, unravel = ravel_pytree(prototype)
    dim = int(flat0.shape[0])
    site_shapes = {k: tuple(np.shape(v)) for k, v in prototype.items()}

    def log_prob_one(x: Array) -> Array:
        return -potential_fn(unravel(x))

    # jitted once here (inlined when the caller jits): eager calls stay cheap
    @jax.jit
    def log_prob(x: Array) -> Array:
        return _map_leading(log_prob_one, x, dim)

    @jax.jit
    def postprocess(x: Array) -> dict:
        return _map_leading(lambda v: postprocess_dict(unravel(v)), x, dim)

    def ravel(params: dict) -> Array:
        return ravel_pytree(params)[0]

    @jax.jit
    def _init_batch(keys: PRNGKey) -> Array:
        batch = initialize_model(
            keys,
            model,
            init_strategy=init_strategy,
            model_args=model_args,
            model_kwargs=model_kwargs,
        )
        return jax.vmap(lambda z: ravel_pytree(z)[0])(batch.param_info.z)

    def init_positions(key: PRNGKey, n: int) -> Array:
        return _init_batch(jax.random.split(as_key(key), int(n)))

    return NumpyroTarget(
        log_prob=log_prob,
        dim=dim,
        postprocess=postprocess,
        unravel=unravel,
        ravel=ravel,
        init_positions=init_positions,
        site_shapes=site_shapes,
    )


def prior_target(model: Callable, *model_args: Any, **model_kwargs: Any) -> NumpyroTarget:
    r"""The model's prior :math:`p_0(x)` on the same flattened unconstrained vector as :func:`target`.

    Every observed site (``obs=`` data and ``numpyro.factor`` terms) is hidden with
    :func:`numpyro.handlers.block`, so ``log_prob(x)`` is :math:`\ln p_0(x)` with the
    transforms' log-Jacobians, and ``init_positions(key, n)`` returns ``n`` exact prior
    draws (``init_to_sample``). With ``post = target(model, ...)`` the log-likelihood is
    ``post.log_prob(x) - prior.log_prob(x)``: what :func:`flowsamp.samplers.tempered_smc`
    takes.
    """
    from numpyro.infer.initialization import init_to_sample

    # Block the model's own observed sites by name: numpyro adds each transform's log-Jacobian
    # as an observed factor site while computing the potential, and a predicate on
    # ``is_observed`` would hide those too (the prior would then lack its Jacobians).
    with handlers.trace() as tr, handlers.seed(rng_seed=0):
        jax.eval_shape(lambda: model(*model_args, **model_kwargs) and None)
    observed = [name for name, site in tr.items() if site["type"] == "sample" and site.get("is_observed", False)]
    blocked = handlers.block(model, hide=observed)
    return target(blocked, *model_args, init_strategy=init_to_sample, **model_kwargs)
