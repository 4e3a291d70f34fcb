"""Any flowsamp kernel as a :class:`numpyro.infer.mcmc.MCMCKernel`.

``numpyro.infer.MCMC(fs.numpyro.Kernel(model), ...)`` runs a flowsamp kernel (default
:func:`flowsamp.kernels.nuts`) on the model's flattened unconstrained latent vector (the same
vector as :func:`flowsamp.numpyro.target`), with numpyro's own transforms, init strategy
and post-processing, under every ``chain_method`` (``sequential``, ``parallel``,
``vectorized``). During numpyro's warm-up, per chain and as in Stan and numpyro's NUTS, the
kernel's step size (when it has one) is found by a doubling heuristic and then tuned by dual
averaging (:func:`flowsamp.kernels.adaptation.dual_averaging`, Hoffman & Gelman 2014) towards
``target_accept_prob``, and its inverse mass matrix (when it takes one) is adapted in Stan's
windows (:mod:`flowsamp.kernels.windowed`); both are frozen when warm-up ends.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import initialize_model
from numpyro.util import identity, is_prng_key, not_jax_tracer

import inspect

import numpy as np

from flowsamp.base import as_key
from flowsamp.kernels.adaptation import TARGET_ACCEPTANCE, heuristic_step_size
from flowsamp.kernels.windowed import window_init, window_schedule, window_update
from flowsamp.numpyro.target import check_model_sites
from flowsamp.types import Array

__all__ = ["Kernel", "KernelState", "DEFAULT_NUM_INTEGRATION_STEPS"]

#: Leapfrog steps per HMC transition when ``kernel=fs.kernels.hmc`` is given none (after the
#: mass matrix is adapted the step size is ~1 in whitened units, so ~10 steps make a
#: trajectory of a few radians; NUTS, the default kernel, chooses its own length).
DEFAULT_NUM_INTEGRATION_STEPS = 10


class KernelState(NamedTuple):
    """State of :class:`Kernel` for one chain (a leading chain axis when vectorized).

    ``z`` is the unconstrained latent pytree (numpyro's sample field), ``inner`` the
    flowsamp kernel's own state on the flat vector, ``step_size`` the current step size
    (NaN for kernels without one), ``adapt_state`` the warm-up state
    (:class:`flowsamp.kernels.windowed.WindowState`: dual averaging and the inverse mass),
    ``accept_prob`` / ``is_accepted`` the last transition's MH statistics,
    ``potential_energy`` :math:`U(z) = -\\log \\pi(z)` and ``mean_accept_prob`` the running
    mean of ``accept_prob`` (reset when sampling starts).
    """

    i: Array
    z: Any
    inner: Any
    step_size: Array
    adapt_state: Any
    accept_prob: Array
    is_accepted: Array
    mean_accept_prob: Array
    potential_energy: Array
    rng_key: Any


def _default_kernel() -> Callable:
    from flowsamp.kernels.nuts import nuts

    return nuts


def _parameters(constructor: Callable) -> dict:
    try:
        return dict(inspect.signature(constructor).parameters)
    except (TypeError, ValueError):
        return {}


class Kernel(MCMCKernel):
    """Run a flowsamp kernel inside :class:`numpyro.infer.MCMC`.

    Parameters
    ----------
    model : callable, optional
        A numpyro model (exactly one of ``model`` and ``potential_fn``).
    kernel : callable
        A flowsamp kernel constructor ``kernel(log_prob_fn, **kernel_options) ->
        SamplingAlgorithm(init, step)`` acting on flat vectors (default
        ``flowsamp.kernels.nuts``, everything adapted). ``fs.kernels.hmc`` without
        ``num_integration_steps`` uses :data:`DEFAULT_NUM_INTEGRATION_STEPS`. Flow kernels (``flow_imh``, ``neutra``) take their
        trained flow/proposal in ``kernel_options``; its space is the flat unconstrained
        vector of :func:`flowsamp.numpyro.target` for the same model.
    potential_fn : callable, optional
        ``U(z)`` of a pytree ``z`` (then ``init_params`` must be passed to ``MCMC.run``).
    init_strategy : callable
        numpyro init strategy (default ``init_to_uniform``).
    adapt_step_size : bool
        Tune the step size (``step_size``, or ``scale`` for rwmh) during warm-up by dual
        averaging, on the kernel's ``acceptance_rate`` (on ``local_acceptance_rate`` for
        :func:`flowsamp.kernels.global_local`, whose step size is the local move's). Without
        an initial ``step_size`` one is found per chain by doubling/halving from 1.
    adapt_mass_matrix : bool
        Adapt ``inverse_mass`` (kernels that take one: nuts, hmc, mala) in Stan's windows,
        unless ``inverse_mass`` is given. Needs ``num_warmup >= 20``.
    dense_mass : bool
        Adapt a dense inverse mass instead of its diagonal.
    target_accept_prob : float, optional
        Dual-averaging target (default
        :data:`flowsamp.kernels.adaptation.TARGET_ACCEPTANCE` of the kernel, else 0.65).
    **kernel_options
        Passed to ``kernel``; ``step_size`` is the initial value when adapted.

    Adaptive global-local flow MCMC
    -------------------------------
    With ``kernel=flowsamp.samplers.adaptive_flow_mcmc`` and ``flow=`` (a flowsamp Flow of
    the latent dimension) the flow is trained when numpyro initialises the chains, i.e. in
    its warm-up: the sampler's training phase (local steps + forward-KL fits + flow moves)
    runs on all ``vectorized`` chains together (a ``sequential`` chain trains with
    ``num_training_chains`` chains, default 64; ``parallel`` is refused). Options other than
    ``flow``, ``params`` and ``num_training_chains`` go to the sampler (``local``,
    ``num_local_steps``, ``max_training_loops``, ...). Every numpyro iteration then applies
    one flow independent-MH move and one local move with the trained flow and step size
    (:func:`flowsamp.kernels.global_local`); ``accept_prob`` is the flow
    move's. The training output is kept as ``kernel.flow_training_output``.

    The flow learns only what its chains have visited. For a posterior with many narrow,
    well separated modes (the radial-velocity period aliases) fit the flow instead to the
    particles of one :func:`flowsamp.samplers.tempered_smc` run, early-stopped on a second
    (:func:`flowsamp.train.early_stopping`), and pass it with ``kernel=global_local,
    flow=flow, params=params, num_candidates=64`` (i-SIR flow moves); never start the chains
    from the particles the flow was fitted to (see ``notebooks/05_numpyro.ipynb``).

    Notes
    -----
    The collected state fields by default are ``z`` (post-processed into constrained
    sites by ``MCMC.get_samples``), ``accept_prob``, ``is_accepted`` and
    ``potential_energy``; ``mcmc.get_extra_fields()`` returns the last three, and
    ``arviz.from_numpyro`` turns them into ``acceptance_rate``, ``is_accepted`` and ``lp``.
    """

    def __init__(
        self,
        model: Callable | None = None,
        kernel: Callable | None = None,
        *,
        potential_fn: Callable | None = None,
        init_strategy: Callable = init_to_uniform,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        dense_mass: bool = False,
        target_accept_prob: float | None = None,
        **kernel_options: Any,
    ) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError("pass exactly one of `model` and `potential_fn`")
        if model is not None and not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        self._model = model
        self._potential_fn = potential_fn
        self._kernel = _default_kernel() if kernel is None else kernel
        if not callable(self._kernel):
            raise TypeError(f"kernel must be a flowsamp kernel constructor, got {self._kernel!r}")
        self._options = dict(kernel_options)
        self._init_strategy = init_strategy
        self._sampling_kernel = self._kernel
        self._flow_training = None
        if getattr(self._kernel, "__name__", "") == "adaptive_flow_mcmc":
            if "flow" not in self._options:
                raise ValueError("kernel=adaptive_flow_mcmc needs flow= (a flowsamp Flow over the latent vector)")
            if model is None:
                raise ValueError("kernel=adaptive_flow_mcmc needs a model (not potential_fn)")
            self._flow_training = self._options
            self._options = {}
            adapt_step_size = False  # the sampler adapts its own step size while training
        # the tuned scale is called step_size (mala, hmc, nuts) or scale (rwmh)
        takes = {} if self._flow_training is not None else _parameters(self._kernel)
        self._step_name = next((k for k in ("step_size", "scale") if k in self._options or k in takes), None)
        self._adapt = bool(adapt_step_size) and self._step_name is not None
        if self._step_name is not None and self._step_name not in self._options and not self._adapt:
            raise ValueError(f"pass {self._step_name}= or adapt_step_size=True")
        self._adapt_mass = (
            bool(adapt_mass_matrix) and self._adapt and "inverse_mass" in takes and "inverse_mass" not in self._options
        )
        self._dense = bool(dense_mass)
        steps = takes.get("num_integration_steps")
        if steps is not None and steps.default is inspect.Parameter.empty and "num_integration_steps" not in self._options:
            self._options["num_integration_steps"] = DEFAULT_NUM_INTEGRATION_STEPS
        if target_accept_prob is None:
            name = getattr(self._kernel, "__name__", "")
            if name == "global_local":  # the step size is the local move's
                name = self._options.get("local", "mala")
            target_accept_prob = TARGET_ACCEPTANCE.get(name, 0.65)
        if not 0.0 < float(target_accept_prob) < 1.0:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}")
        self._target_accept = float(target_accept_prob)
        self._num_warmup = 0
        self._schedule = (np.zeros(1, bool), np.zeros(1, bool))
        self._potential_fn_gen = None
        self._postprocess_fn_gen = None
        self._unravel = None
        self._batched = False

    # -- numpyro's MCMCKernel interface -------------------------------------------------
    @property
    def model(self) -> Callable | None:
        return self._model

    @property
    def sample_field(self) -> str:
        return "z"

    @property
    def default_fields(self) -> tuple[str, ...]:
        return ("z", "accept_prob", "is_accepted", "potential_energy")

    def get_diagnostics_str(self, state: KernelState) -> str:
        return "step size {:.2e}. acc. prob={:.2f}".format(
            float(jnp.mean(state.step_size)), float(jnp.mean(state.mean_accept_prob))
        )

    def postprocess_fn(self, model_args: tuple, model_kwargs: dict | None) -> Callable:
        if self._postprocess_fn_gen is None:
            return identity
        return self._postprocess_fn_gen(*model_args, **(model_kwargs or {}))

    def wrap_model(self, wrapper: Callable) -> "Kernel":
        new = copy.copy(self)
        new._model = wrapper(self._model)
        new._potential_fn_gen = new._postprocess_fn_gen = new._unravel = None
        return new

    # -- building blocks ----------------------------------------------------------------
    def _potential(self, model_args: tuple, model_kwargs: dict | None) -> Callable:
        if self._model is None:
            return self._potential_fn
        return self._potential_fn_gen(*model_args, **(model_kwargs or {}))

    def _algorithm(self, potential: Callable, step_size: Array | None, inverse_mass: Array | None = None) -> Any:
        unravel = self._unravel

        def log_prob(x: Array) -> Array:
            return -potential(unravel(x))

        options = dict(self._options)
        if step_size is not None:
            options[self._step_name] = step_size
        if inverse_mass is not None and self._adapt_mass:
            options["inverse_mass"] = inverse_mass
        return self._sampling_kernel(log_prob, **options)

    def _init_one(self, rng_key: Any, flat: Array, potential: Callable) -> KernelState:
        dtype = flat.dtype
        rng_key, key_find = jax.random.split(rng_key)
        if self._step_name is not None and self._step_name in self._options:
            step_size = jnp.asarray(self._options[self._step_name], dtype)
        elif self._adapt:  # no initial value: double / halve from 1 on this chain
            alg0 = self._algorithm(potential, jnp.ones((), dtype))
            states = jax.tree.map(lambda a: a[None], alg0.init(flat))
            factory = lambda e: self._algorithm(potential, e)  # noqa: E731
            step_size = heuristic_step_size(
                as_key(key_find)[None], factory, states, jnp.ones((), dtype), self._target_accept
            ).astype(dtype)
        else:
            step_size = jnp.asarray(jnp.nan, dtype)
        adapt_state = window_init(step_size, flat.shape[0], dtype, self._dense, self._target_accept)
        alg = self._algorithm(potential, step_size if self._adapt else None)
        inner = alg.init(flat)
        z = self._unravel(flat)
        zero = jnp.zeros((), dtype)
        return KernelState(
            jnp.array(0),
            z,
            inner,
            step_size,
            adapt_state,
            zero,
            jnp.array(False),
            zero,
            jnp.asarray(potential(z), dtype),
            rng_key,
        )

    def init(
        self,
        rng_key: Any,
        num_warmup: int,
        init_params: Any,
        model_args: tuple,
        model_kwargs: dict | None,
    ) -> KernelState:
        self._num_warmup = int(num_warmup)
        if self._adapt_mass and self._num_warmup >= 20:
            self._schedule = window_schedule(self._num_warmup)
        else:
            self._schedule = (np.zeros(max(self._num_warmup, 1), bool), np.zeros(max(self._num_warmup, 1), bool))
        self._batched = not is_prng_key(rng_key)
        model_kwargs = {} if model_kwargs is None else model_kwargs
        rng_key, key_init = (
            jax.vmap(jax.random.split, out_axes=1)(rng_key) if self._batched else jax.random.split(rng_key)
        )
        if self._model is not None:
            check_model_sites(self._model, model_args, model_kwargs)
            info = initialize_model(
                key_init,
                self._model,
                init_strategy=self._init_strategy,
                dynamic_args=True,
                model_args=model_args,
                model_kwargs=model_kwargs,
            )
            self._potential_fn_gen = info.potential_fn
            self._postprocess_fn_gen = info.postprocess_fn
            if init_params is None:
                init_params = info.param_info.z
        elif init_params is None:
            raise ValueError("init_params must be passed to MCMC.run when using potential_fn")
        one = jax.tree.map(lambda a: a[0], init_params) if self._batched else init_params
        self._unravel = ravel_pytree(one)[1]
        potential = self._potential(model_args, model_kwargs)
        ravel = lambda p: ravel_pytree(p)[0]  # noqa: E731
        flat = jax.vmap(ravel)(init_params) if self._batched else ravel(init_params)
        if self._flow_training is not None:
            flat = self._train_flow(key_init, flat, potential, model_args, model_kwargs)
        if self._batched:
            return jax.vmap(lambda k, x: self._init_one(k, x, potential))(rng_key, flat)
        return self._init_one(rng_key, flat, potential)

    def _train_flow(self, key: Any, flat: Array, potential: Callable, model_args: tuple, model_kwargs: dict) -> Array:
        """Train the flow of the adaptive global-local sampler (numpyro's warm-up).

        Vectorized chains train together (their positions seed the sampler's chains);
        a single chain trains with ``num_training_chains`` chains from the init strategy
        and starts from the first. Returns the trained chains' positions.
        """
        from flowsamp.kernels.global_local import global_local

        if not (not_jax_tracer(flat) and not_jax_tracer(key)):
            raise ValueError(
                "kernel=adaptive_flow_mcmc trains its flow on the host and cannot run under "
                "chain_method='parallel'; use chain_method='vectorized' (recommended) or 'sequential'"
            )
        opts = dict(self._flow_training)
        flow = opts.pop("flow")
        params = opts.pop("params", None)
        num_training_chains = opts.pop("num_training_chains", 64)
        unravel = self._unravel
        log_prob = lambda x: -potential(unravel(x))  # noqa: E731
        key = key[0] if self._batched else key
        key_chains, key_train = jax.random.split(key)
        if self._batched:
            positions = flat
        else:
            keys = jax.random.split(key_chains, int(num_training_chains))
            info = initialize_model(keys, self._model, init_strategy=self._init_strategy,
                                    model_args=model_args, model_kwargs=model_kwargs)
            positions = jax.vmap(lambda z: ravel_pytree(z)[0])(info.param_info.z)
            positions = positions.at[0].set(flat)
        # numpyro's handler stack is global: no second thread may trace the potential
        out = self._kernel(key_train, log_prob, flow, positions, params=params, num_production_loops=0,
                          precompile=False, **{"target_ess": None, **opts})
        self.flow_training_output = out
        step_size = float(jnp.exp(out.state.log_step_size))
        local = opts.get("local", "mala")
        steps = opts.get("num_integration_steps", 8)

        def sampling_kernel(lp: Callable, **_: Any) -> Any:
            return global_local(lp, out.flow, out.params, step_size, local=local, num_integration_steps=steps)

        self._sampling_kernel = sampling_kernel
        return out.state.position if self._batched else out.state.position[0]

    def _sample_one(self, state: KernelState, potential: Callable) -> KernelState:
        rng_key, key_step = jax.random.split(state.rng_key)
        ws = state.adapt_state
        alg = self._algorithm(potential, state.step_size if self._adapt else None, ws.inverse_mass)
        inner, info = alg.step(as_key(key_step), state.inner)
        accept_prob = jnp.asarray(info.acceptance_rate, state.accept_prob.dtype)
        step_size = state.step_size
        in_warmup = state.i < self._num_warmup
        if self._adapt:
            # the step size is the local move's: a global-local kernel (flow move + MALA/HMC)
            # reports the flow move as acceptance_rate and the local one separately
            local_rate = getattr(info, "local_acceptance_rate", info.acceptance_rate)
            local_rate = jnp.asarray(local_rate, state.accept_prob.dtype)
            t = jnp.clip(state.i, 0, len(self._schedule[0]) - 1)
            in_slow, ends = jnp.asarray(self._schedule[0])[t], jnp.asarray(self._schedule[1])[t]
            flat = ravel_pytree(inner.position)[0]
            new_ws = window_update(ws, flat[None], local_rate, in_slow, ends, self._dense, self._target_accept)
            last = state.i == self._num_warmup - 1
            log_step = jnp.where(last, new_ws.da.log_step_size_avg, new_ws.da.log_step_size)
            step_size = jnp.where(in_warmup, jnp.exp(log_step).astype(step_size.dtype), step_size)
            ws = jax.tree.map(lambda a, b: jnp.where(in_warmup, a, b), new_ws, ws)
        itr = state.i + 1
        n = jnp.where(in_warmup, itr, itr - self._num_warmup)
        mean_accept = state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / n
        position = inner.position
        log_prob = getattr(inner, "log_prob", None)
        potential_energy = -log_prob if log_prob is not None else potential(self._unravel(position))
        return KernelState(
            itr,
            self._unravel(position),
            inner,
            step_size,
            ws,
            accept_prob,
            jnp.asarray(info.is_accepted),
            mean_accept,
            jnp.asarray(potential_energy, state.potential_energy.dtype),
            rng_key,
        )

    def sample(self, state: KernelState, model_args: tuple, model_kwargs: dict | None) -> KernelState:
        potential = self._potential(model_args, model_kwargs)
        if self._batched:
            return jax.vmap(lambda s: self._sample_one(s, potential))(state)
        return self._sample_one(state, potential)

    def __getstate__(self) -> dict:
        return self.__dict__.copy()
