"""``fit``: optimise flow parameters with optax in one jitted ``lax.scan`` per chunk of steps.

Design
------
* One compiled program runs ``chunk_size`` optimisation steps as a ``lax.scan``; it is
  reused for every chunk (and across ``fit`` calls with the same ``loss``, ``optimizer``
  and ``chunk_size``). The number of steps is a traced argument: steps past ``num_steps``
  in the last chunk are skipped by ``lax.cond``, so no second program is compiled.
* Host work (progress bar, user callback) happens only between chunks.
* The step key is ``fold_in(key, step)``: the result does not depend on ``chunk_size``.
* The step counter is passed to the loss (``loss(params, key, step)``) when its signature
  accepts a third positional argument, so schedules such as the inverse temperature of
  :func:`flowsamp.train.annealed_reverse_kl` are pure functions of the step.
* Skip-on-non-finite (the guarantee of ``optax.apply_if_finite`` without its
  ``max_consecutive_errors`` escape hatch): when the loss, a gradient or an update is not
  finite, the parameters and optimiser state are left unchanged for that step and the
  step is recorded in ``history.is_finite``. A NaN batch never destroys a trained flow.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from flowsamp._progress import ProgressBar
from flowsamp.base import Flow, as_key
from flowsamp.types import Array, PRNGKey

__all__ = ["FitHistory", "fit", "fit_steps", "guarded_step"]

#: Scalar figures of a loss's aux the progress bar shows beside the loss, when the loss returns them:
#: ESS/N of the reverse-KL weights, and the annealed inverse temperature and free energy of a VAN.
_SHOWN_AUX = ("ess", "beta_t", "free_energy")


class FitHistory(NamedTuple):
    """Per-step training record, numpy arrays of length ``num_steps`` (fewer if stopped).

    ``loss``: the loss value; ``ess``: ``aux["ess"]`` of the loss (normalised ESS/N of the
    importance weights p/q_theta on the step's batch; NaN if the loss reports none);
    ``grad_norm``: global L2 norm of the gradient; ``is_finite``: whether the update was
    applied (False = skipped because loss/gradient/update was not finite); ``aux``: every
    entry of the loss's aux dict, stacked.
    """

    loss: np.ndarray
    ess: np.ndarray
    grad_norm: np.ndarray
    is_finite: np.ndarray
    aux: dict[str, np.ndarray]


def _takes_step(loss: Callable) -> bool:
    """Whether ``loss`` can be called as ``loss(params, key, step)``."""
    try:
        sig = inspect.signature(loss)
    except (TypeError, ValueError):  # builtins / C callables: assume the 2-argument form
        return False
    try:
        sig.bind(None, None, None)
    except TypeError:
        pass
    else:
        return True
    try:
        sig.bind(None, None)
    except TypeError as err:
        raise TypeError(
            "fit: `loss` must be callable as loss(params, key) or loss(params, key, step)"
        ) from err
    return False


def _all_finite(tree: Any) -> jax.Array:
    """Whether every entry of every leaf is finite: one test on the leaves raveled into a vector
    (one program op, where a test per leaf made a flow's training step compile ~1 s slower)."""
    if not jax.tree.leaves(tree):
        return jnp.asarray(True)
    return jnp.all(jnp.isfinite(ravel_pytree(tree)[0]))


def guarded_step(
    loss: Callable,
    optimizer: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    key: PRNGKey,
    step: Array | int,
    *,
    takes_step: bool | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    r"""One optimiser step that is skipped when it is not finite (jittable).

    .. math::

        g = \nabla_\theta L(\theta; k, t), \quad
        \theta' = \theta + \mathrm{update}(g), \qquad
        (\theta, s) \leftarrow \begin{cases} (\theta', s') & L, g, \theta' \text{ finite} \\
        (\theta, s) & \text{otherwise} \end{cases}

    with :math:`k = \mathrm{fold\_in}(key, t)`. This is the one guarded step of flowsamp:
    :func:`fit`, :func:`fit_steps` and the flow training inside
    :func:`flowsamp.samplers.adaptive_flow_mcmc` all call it.

    Parameters
    ----------
    loss
        ``loss(params, key[, step]) -> (scalar, aux dict)``.
    optimizer
        Any ``optax.GradientTransformation``.
    params, opt_state
        Current parameters and optimiser state.
    key
        PRNG key of the run; the step's key is ``fold_in(key, step)``.
    step
        Step counter ``t`` (traced or concrete int).
    takes_step
        Whether ``loss`` takes the step as a third argument (``None``: read its signature).

    Returns
    -------
    params, opt_state
        Updated, or unchanged when the step was not finite.
    record
        ``{"loss", "grad_norm", "is_finite", "aux"}`` of the step.
    """
    if takes_step is None:
        takes_step = _takes_step(loss)

    def loss_of(p):
        k = jax.random.fold_in(key, step)
        return loss(p, k, step) if takes_step else loss(p, k)

    (value, aux), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    if not isinstance(aux, dict):
        raise TypeError(f"fit: the loss must return (scalar, dict), got aux {type(aux).__name__}")
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    ok = jnp.isfinite(value) & _all_finite(grads) & _all_finite(new_params)
    # a branch, not a select per leaf: the same values, one op instead of one per leaf of the
    # parameters and the optimiser state (a third of the step's compile time for a small flow)
    params, opt_state = jax.lax.cond(ok, lambda: (new_params, new_opt_state), lambda: (params, opt_state))
    record = {
        "loss": value,
        "grad_norm": optax.global_norm(grads),
        "is_finite": ok,
        "aux": aux,
    }
    return params, opt_state, record


def fit_steps(
    loss: Callable,
    optimizer: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    key: PRNGKey,
    num_steps: int,
    start: Array | int = 0,
) -> tuple[Any, Any, dict[str, Any]]:
    """``num_steps`` :func:`guarded_step` calls as one ``lax.scan`` (jittable; ``num_steps`` static).

    Steps are numbered ``start, start + 1, ...`` (keys ``fold_in(key, step)``). Returns the
    final ``(params, opt_state)`` and the per-step records stacked along a leading axis.
    """
    takes_step = _takes_step(loss)
    steps = jnp.asarray(start, jnp.int32) + jnp.arange(num_steps, dtype=jnp.int32)

    def body(carry, step):
        p, s, rec = guarded_step(loss, optimizer, *carry, key, step, takes_step=takes_step)
        return (p, s), rec

    (params, opt_state), records = jax.lax.scan(body, (params, opt_state), steps)
    return params, opt_state, records


def _one_step(loss, optimizer, takes_step, key, carry, step):
    params, opt_state, record = guarded_step(loss, optimizer, *carry, key, step, takes_step=takes_step)
    return (params, opt_state), record


def _chunk_impl(params, opt_state, key, start, num_steps, *, loss, optimizer, takes_step, chunk_size):
    steps = start + jnp.arange(chunk_size, dtype=jnp.int32)

    def body(carry, step):
        active = step < num_steps
        out_shape = jax.eval_shape(lambda c: _one_step(loss, optimizer, takes_step, key, c, step), carry)
        _, rec_shape = out_shape

        def run(c):
            return _one_step(loss, optimizer, takes_step, key, c, step)

        def skip(c):
            return c, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), rec_shape)

        return jax.lax.cond(active, run, skip, carry)

    (params, opt_state), records = jax.lax.scan(body, (params, opt_state), steps)
    return params, opt_state, records


_run_chunk = jax.jit(
    _chunk_impl, static_argnames=("loss", "optimizer", "takes_step", "chunk_size")
)


def _check_params(flow: Flow | None, params: Any, key: PRNGKey) -> None:
    if flow is None:
        return
    if not isinstance(flow, Flow):
        raise TypeError(f"fit: `flow` must be a flowsamp.base.Flow or None, got {type(flow).__name__}")
    expected = jax.eval_shape(flow.init, key)
    s_exp, s_got = jax.tree.structure(expected), jax.tree.structure(params)
    if s_exp != s_got:
        raise ValueError(f"fit: `params` do not match `flow.init`: tree {s_got} != {s_exp}")
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(params)):
        if tuple(e.shape) != tuple(jnp.shape(g)):
            raise ValueError(f"fit: `params` leaf shape {jnp.shape(g)} != expected {e.shape}")


def fit(
    key: PRNGKey,
    flow: Flow | None,
    params: Any,
    loss: Callable,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    *,
    chunk_size: int = 100,
    progress: bool = True,
    callback: Callable[[int, Any, FitHistory], bool | None] | None = None,
) -> tuple[Any, FitHistory]:
    r"""Minimise ``loss`` over flow parameters with an optax optimiser.

    Runs :math:`\theta_{t+1} = \theta_t + \mathrm{update}(\nabla_\theta L(\theta_t; k_t, t))`
    for :math:`t = 0..\texttt{num\_steps}-1` with :math:`k_t = \mathrm{fold\_in}(key, t)`,
    skipping (leaving θ and the optimiser state unchanged) every step whose loss,
    gradient or updated parameters are not finite.

    Parameters
    ----------
    key
        PRNG key (typed key of any ``impl``, or a raw uint32 key).
    flow
        The flow whose ``params`` are trained; used to check that ``params`` match
        ``flow.init`` (tree and shapes). ``None`` trains an arbitrary pytree.
    params
        Initial parameters.
    loss
        ``loss(params, key[, step]) -> (scalar, aux dict)``, e.g. :func:`reverse_kl`.
    optimizer
        Any ``optax.GradientTransformation``.
    num_steps
        Number of optimisation steps.
    chunk_size
        Steps per compiled ``lax.scan``; the progress bar and ``callback`` run between chunks.
    progress
        Show a tqdm progress bar (process 0 only) with the latest loss and, where the loss
        reports them, ESS/N (``ess``), the annealed β (``beta_t``) and ``free_energy``.
    callback
        ``callback(step, params, history) -> stop`` called after each chunk with the number
        of steps done, the current parameters and the history so far; returning ``True``
        stops training (the history is then shorter than ``num_steps``).

    Returns
    -------
    params
        The trained parameters.
    history
        :class:`FitHistory` with per-step ``loss``, ``ess``, ``grad_norm``, ``is_finite``, ``aux``.
    """
    key = as_key(key)
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 0:
        raise ValueError(f"fit: `num_steps` must be a non-negative int, got {num_steps!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"fit: `chunk_size` must be a positive int, got {chunk_size!r}")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"fit: `optimizer` must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    if not callable(loss):
        raise TypeError("fit: `loss` must be callable")
    num_steps, chunk_size = int(num_steps), int(chunk_size)
    _check_params(flow, params, key)
    takes_step = _takes_step(loss)
    params = jax.tree.map(jnp.asarray, params)
    opt_state = optimizer.init(params)
    num_chunks = math.ceil(num_steps / chunk_size)

    bar = ProgressBar(progress and num_chunks > 0, num_steps, "fit", "step", leave=False)
    records = []
    done = 0
    try:
        for c in range(num_chunks):
            start = c * chunk_size
            params, opt_state, rec = _run_chunk(
                params, opt_state, key, jnp.int32(start), jnp.int32(num_steps),
                loss=loss, optimizer=optimizer, takes_step=takes_step, chunk_size=chunk_size,
            )
            n = min(chunk_size, num_steps - start)
            rec = jax.tree.map(lambda a: np.asarray(a)[:n], jax.device_get(rec))
            records.append(rec)
            done = start + n
            if bar:
                bar.update(n, loss=rec["loss"][-1],
                           **{k: rec["aux"][k][-1] for k in _SHOWN_AUX if k in rec["aux"]})
            if callback is not None and callback(done, params, _stack(records)):
                break
    finally:
        bar.close()
    return params, _stack(records)


def _stack(records: list) -> FitHistory:
    if not records:
        empty = np.zeros((0,), np.float32)
        return FitHistory(empty, empty, empty, np.zeros((0,), bool), {})
    rec = jax.tree.map(lambda *a: np.concatenate(a), *records)
    aux = dict(rec["aux"])
    ess = aux.get("ess")
    if ess is None:
        ess = np.full_like(rec["loss"], np.nan)
    return FitHistory(rec["loss"], np.asarray(ess), rec["grad_norm"], rec["is_finite"].astype(bool), aux)
