r"""Stan's windowed warm-up: dual-averaging step size and a diagonal or dense inverse mass.

For a batch of chains run together (one ``vmap``; the step size and :math:`M^{-1}` are shared
and adapted on statistics pooled over the chains), the warm-up of ``num_steps`` iterations is
split as in Stan (Stan Reference Manual, "HMC algorithm parameters"; Carpenter et al. 2017):

* an initial fast window of 75 steps (step size only);
* slow windows of 25, 50, 100, ... steps (doubling; the last one stretched to the end of the
  slow phase), at the end of each of which :math:`M^{-1}` is set to the regularised sample
  covariance :math:`\Sigma_n` of the window's draws, pooled over chains,

  .. math::

      M^{-1} = \frac{n}{n + 5}\,\Sigma_n + 10^{-3}\,\frac{5}{n + 5}\,I

  (its diagonal by default, the full matrix with ``dense_mass=True``), and dual averaging is
  restarted (:math:`\mu = \log 10\bar\epsilon`) from the window's averaged step size
  :math:`\bar\epsilon`; unlike Stan's ``init_stepsize`` and numpyro's
  ``find_reasonable_step_size``, the step size is not searched again by doubling under the new
  :math:`M^{-1}` (tried on the Inference Gym's banana: no change beyond the seed-to-seed spread);
* a final fast window of 50 steps (step size only).

If ``num_steps < 150`` the windows are 15% / 75% / 10% of it, as Stan does. The step size is
adapted throughout by :func:`flowsamp.kernels.adaptation.dual_averaging` (the one
implementation) toward ``TARGET_ACCEPTANCE[kernel]`` on the chain-averaged acceptance rate;
the returned step size is its final average :math:`\bar\epsilon`. Covariances are accumulated
with Chan et al.'s pairwise update (one batch of chains per step), stable in float32.

``params`` go straight back into the constructor:
``fs.kernels.hmc(log_prob, **params, num_integration_steps=10)``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp import parallel
from flowsamp.base import as_key, check_finite_positions
from flowsamp.kernels import _flat
from flowsamp.kernels.adaptation import TARGET_ACCEPTANCE, dual_averaging, find_step_size
from flowsamp.types import Array

__all__ = [
    "WindowAdaptation",
    "WindowState",
    "window_adaptation",
    "window_init",
    "window_schedule",
    "window_update",
]

INIT_BUFFER, TERM_BUFFER, BASE_WINDOW = 75, 50, 25


class WindowAdaptation(NamedTuple):
    """``run(key, initial_positions, num_steps) -> (states, params)``."""

    run: Callable[..., tuple[Any, dict]]


class _Moments(NamedTuple):
    count: Array
    mean: Array
    m2: Array  # sum of squared deviations: (dim,) or (dim, dim)


class WindowState(NamedTuple):
    """Per-step warm-up state: the dual-averaging state ``da`` (the step size to use now is
    ``exp(da.log_step_size)``, the adapted one ``exp(da.log_step_size_avg)``), the current
    ``inverse_mass`` and the running moments of the current slow window."""

    da: Any
    inverse_mass: Array
    moments: _Moments


def window_schedule(num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Return boolean arrays ``(in_slow_window, ends_slow_window)`` of length ``num_steps``.

    Step ``t`` contributes to the current covariance window when ``in_slow_window[t]``; the
    inverse mass is updated (and dual averaging restarted) after step ``t`` when
    ``ends_slow_window[t]``.
    """
    if num_steps < 20:
        raise ValueError(f"window adaptation needs num_steps >= 20, got {num_steps}")
    init, term, base = INIT_BUFFER, TERM_BUFFER, BASE_WINDOW
    if init + term + base > num_steps:
        init, term = int(0.15 * num_steps), int(0.1 * num_steps)
        base = num_steps - init - term
    in_slow = np.zeros(num_steps, bool)
    ends = np.zeros(num_steps, bool)
    last = num_steps - term
    in_slow[init:last] = True
    start, size = init, base
    while start < last:
        end = start + size
        if end + 2 * size > last:
            end = last
        ends[end - 1] = True
        start, size = end, 2 * size
    return in_slow, ends


def _accumulate(m: _Moments, x: Array, dense: bool, axis_name: str | None = None) -> _Moments:
    """Add a batch ``x`` (chains, dim) to the running moments (Chan et al. 1979).

    With ``axis_name`` (inside ``shard_map``) the batch is the union of every device's chains
    (equal numbers per device).
    """
    n_b = x.shape[0]
    mean_b = jnp.mean(x, axis=0)
    if axis_name is not None:
        mean_b = jax.lax.pmean(mean_b, axis_name)
        n_b = n_b * jax.lax.psum(1, axis_name)
    dev = x - mean_b
    m2_b = dev.T @ dev if dense else jnp.sum(dev * dev, axis=0)
    if axis_name is not None:
        m2_b = jax.lax.psum(m2_b, axis_name)
    n = m.count + n_b
    delta = mean_b - m.mean
    mean = m.mean + delta * (n_b / n)
    corr = jnp.outer(delta, delta) if dense else delta * delta
    m2 = m.m2 + m2_b + corr * (m.count * n_b / n)
    return _Moments(n, mean, m2)


def _regularised(m: _Moments, dense: bool) -> Array:
    n = m.count
    cov = m.m2 / (n - 1.0)
    eye = jnp.eye(cov.shape[0], dtype=cov.dtype) if dense else jnp.ones_like(cov)
    return (n / (n + 5.0)) * cov + 1e-3 * (5.0 / (n + 5.0)) * eye


def window_init(step_size: Array, dim: int, dtype: Any, dense: bool, target_acceptance: float) -> WindowState:
    """Warm-up state at step size ``step_size`` with the identity inverse mass."""
    inv0 = jnp.eye(dim, dtype=dtype) if dense else jnp.ones(dim, dtype)
    zero = _Moments(jnp.zeros((), dtype), jnp.zeros(dim, dtype), jnp.zeros_like(inv0))
    return WindowState(dual_averaging(target_acceptance).init(jnp.asarray(step_size, dtype)), inv0, zero)


def window_update(
    ws: WindowState,
    flat_positions: Array,
    acceptance_rate: Array,
    in_slow: Array,
    ends_slow: Array,
    dense: bool,
    target_acceptance: float,
    axis_name: str | None = None,
) -> WindowState:
    """One warm-up update after a transition.

    ``flat_positions`` (chains, dim): the chains' new flat positions (one chain: ``x[None]``);
    ``acceptance_rate``: the acceptance (averaged over the chains); ``in_slow`` / ``ends_slow``:
    this step's entries of :func:`window_schedule`; ``axis_name``: the ``shard_map`` axis
    the chains are split over (the moments are then pooled over every device). Dual averaging is updated on the
    acceptance; in a slow window the positions join the window's moments; at its end the inverse
    mass becomes their regularised covariance (kept if not finite) and dual averaging restarts
    from its averaged step size.
    """
    optimiser = dual_averaging(target_acceptance)
    da = optimiser.update(ws.da, acceptance_rate)
    moments = jax.tree.map(
        lambda a, b: jnp.where(in_slow, a, b), _accumulate(ws.moments, flat_positions, dense, axis_name), ws.moments
    )
    new_inv = _regularised(moments, dense)
    inv_mass = jnp.where(ends_slow & jnp.all(jnp.isfinite(new_inv)), new_inv, ws.inverse_mass)
    da = jax.tree.map(lambda a, b: jnp.where(ends_slow, a, b), optimiser.init(jnp.exp(da.log_step_size_avg)), da)
    moments = jax.tree.map(lambda a, b: jnp.where(ends_slow, jnp.zeros_like(a), a), moments, moments)
    return WindowState(da, inv_mass, moments)


def _takes(constructor: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(constructor).parameters
    except (TypeError, ValueError):
        return False


def window_adaptation(
    constructor: Callable,
    log_prob: Callable[[Any], Array],
    *,
    dense_mass: bool = False,
    target_acceptance: float | None = None,
    initial_step_size: float | None = None,
    **static: Any,
) -> WindowAdaptation:
    """Stan's windowed warm-up of ``constructor``'s step size and inverse mass (see module doc).

    Parameters
    ----------
    constructor
        A kernel constructor taking ``step_size`` and ``inverse_mass``: ``fs.kernels.hmc``,
        ``fs.kernels.nuts`` or ``fs.kernels.mala``.
    log_prob
        Unnormalized log-density of one position.
    dense_mass
        Adapt a dense :math:`M^{-1}` (full covariance) instead of its diagonal.
    target_acceptance
        Dual-averaging target; default ``TARGET_ACCEPTANCE[constructor.__name__]``
        (0.65 HMC, 0.8 NUTS, 0.574 MALA).
    initial_step_size
        :math:`\\epsilon_0`; default found by :func:`flowsamp.kernels.adaptation.find_step_size`
        from the initial positions with the identity mass.
    **static
        Other constructor arguments, fixed (e.g. ``num_integration_steps=10``).

    Returns
    -------
    WindowAdaptation
        ``run(key, initial_positions, num_steps, devices=None) -> (states, params)``:
        ``initial_positions`` has chains on the leading axis (``devices=jax.devices()`` splits
        them over the devices with ``shard_map``, the window statistics and the acceptance
        pooled over all of them, in one process); ``states`` are the chains' kernel states after the
        warm-up and ``params = {"step_size": ..., "inverse_mass": ...}`` (diagonal vector or
        dense matrix over the flat position).

    Examples
    --------
    >>> warm = fs.kernels.window_adaptation(fs.kernels.hmc, log_prob, num_integration_steps=10)
    >>> states, params = warm.run(key, x0, 1000)              # doctest: +SKIP
    >>> kernel = fs.kernels.hmc(log_prob, **params, num_integration_steps=10)  # doctest: +SKIP
    """
    for name in ("step_size", "inverse_mass"):
        if not _takes(constructor, name):
            raise TypeError(
                f"window_adaptation needs a constructor taking `{name}` (hmc, nuts, mala); "
                f"{getattr(constructor, '__name__', constructor)!r} does not"
            )
    name = getattr(constructor, "__name__", "")
    if name == "automala":
        raise ValueError("window_adaptation cannot tune automala's base step (its selection keeps the acceptance up "
                         "however large the base step grows); warm up fs.kernels.mala and pass its params to "
                         "fs.kernels.automala")
    if target_acceptance is None:
        if name not in TARGET_ACCEPTANCE:
            raise ValueError(f"no default target acceptance for {name!r}; pass target_acceptance=")
        target_acceptance = TARGET_ACCEPTANCE[name]
    dual_averaging(target_acceptance)  # validates it
    dense = bool(dense_mass)

    def make(step_size: Array, inverse_mass: Any) -> Any:
        return constructor(log_prob, step_size=step_size, inverse_mass=inverse_mass, **static)

    def run(key: Any, initial_positions: Any, num_steps: int, devices: Any = None) -> tuple[Any, dict]:
        if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
            raise ValueError(f"num_steps must be an int, got {num_steps!r}")
        in_slow, ends = window_schedule(int(num_steps))
        key = as_key(key)
        key_find, key_run = jax.random.split(key)
        positions = jax.tree.map(lambda a: _flat.as_float_position(jnp.asarray(a)), initial_positions)
        check_finite_positions(positions)
        if initial_step_size is None:
            eps0 = find_step_size(key_find, lambda e: make(e, None), positions, target_acceptance)
        else:
            _flat.check_positive("initial_step_size", initial_step_size)
            eps0 = jnp.asarray(initial_step_size)
        states = jax.jit(jax.vmap(make(eps0, None).init))(positions)
        num_chains = jax.tree.leaves(states.position)[0].shape[0]
        mesh = None
        if devices is not None:
            mesh = parallel.chain_mesh(devices)
            parallel.check_divisible(num_chains, mesh)
        chain_keys = jax.random.split(key_run, num_chains)
        states, step_size, inv_mass = _run(
            chain_keys, states, eps0, jnp.asarray(in_slow), jnp.asarray(ends),
            make=make, dense=dense, target=float(target_acceptance), mesh=mesh,
        )
        return states, {"step_size": step_size, "inverse_mass": inv_mass}

    return WindowAdaptation(run)


@functools.partial(jax.jit, static_argnames=("make", "dense", "target", "mesh"))
def _run(chain_keys, states, eps0, in_slow, ends, *, make, dense, target, mesh):
    axis = None if mesh is None else parallel.CHAIN_AXIS

    def warm(chain_keys, states, eps0, in_slow, ends):
        flat0 = jax.vmap(lambda p: _flat.flatten(p)[0])(states.position)
        dim = flat0.shape[1]

        def body(carry, inp):
            states, ws = carry
            t, slow, end = inp
            eps = jnp.exp(ws.da.log_step_size).astype(flat0.dtype)
            keys = jax.vmap(jax.random.fold_in, (0, None))(chain_keys, t)
            states, info = jax.vmap(make(eps, ws.inverse_mass).step)(keys, states)
            flat = jax.vmap(lambda p: _flat.flatten(p)[0])(states.position)
            rate = jnp.mean(info.acceptance_rate)
            if axis is not None:
                rate = jax.lax.pmean(rate, axis)
            ws = window_update(ws, flat, rate, slow, end, dense, target, axis)
            return (states, ws), None

        ws0 = window_init(eps0, dim, flat0.dtype, dense, target)
        steps = jnp.arange(in_slow.shape[0])
        (states, ws), _ = jax.lax.scan(body, (states, ws0), (steps, in_slow, ends))
        return states, jnp.exp(ws.da.log_step_size_avg), ws.inverse_mass

    if mesh is None:
        return warm(chain_keys, states, eps0, in_slow, ends)
    rep = parallel.REPLICATED
    sharded = jax.shard_map(
        warm,
        mesh=mesh,
        in_specs=(parallel.CHAINS, parallel.CHAINS, rep, rep, rep),
        out_specs=(parallel.CHAINS, rep, rep),
        check_vma=False,
    )
    return sharded(chain_keys, states, eps0, in_slow, ends)
