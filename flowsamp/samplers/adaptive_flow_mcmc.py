"""Adaptive global-local flow MCMC (Gabrié, Rotskoff & Vanden-Eijnden, PNAS 2022; flowMC).

``C`` parallel chains alternate *local* steps (MALA or HMC, step size adapted) with
*global* independent-MH steps proposed by a normalizing flow :math:`q_\\theta`, and the
flow is trained by forward KL (maximum likelihood) on the chains' recent samples:

.. math::

    \\theta \\leftarrow \\theta - \\eta\\, \\nabla_\\theta \\Big[-\\frac{1}{|B|}
    \\sum_{x \\in B} \\log q_\\theta(x)\\Big], \\qquad
    \\alpha(x \\to x') = \\min\\Big(1, \\frac{p(x')\\,q_\\theta(x)}{p(x)\\,q_\\theta(x')}\\Big),

with ``B`` a bounded buffer of the last ``buffer_loops`` loops' samples. A *training*
phase (flow and step size adapted; stopped early once the global acceptance plateaus)
is followed by a *production* phase with everything frozen, whose samples are exact
MCMC draws from ``p``. Each phase is one jitted program reused across loops; host work
(progress, callback, checkpoint) happens only between loops.

Optional ``symmetries``: volume-preserving involutions :math:`g` (e.g. ``lambda x: -x``)
under which the *support* of ``p`` maps to itself. The global proposal is then the
symmetrised :math:`q_G(x) = \\frac{1}{|G|}\\sum_{g \\in G} q_\\theta(g(x))` with
:math:`G = \\{\\mathrm{id}\\} \\cup` ``symmetries``, which lets chains started in one mode
jump to its images (the MH test keeps the chain exact even when ``p`` is not symmetric).

References: arXiv:2105.12603 (PNAS 119, e2109420119); flowMC, arXiv:2211.06397.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowsamp.base import Flow, as_key, check_finite_positions
from flowsamp.samplers import _flow_mcmc_steps as steps
from flowsamp.samplers._flow_mcmc_config import AdaptiveFlowConfig, make_config
from flowsamp.samplers._flow_mcmc_symmetry import symmetrized
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = [
    "AdaptiveFlowConfig",
    "AdaptiveFlowOutput",
    "AdaptiveFlowState",
    "adaptive_flow_mcmc",
    "init_state",
]


class AdaptiveFlowState(NamedTuple):
    """Everything the next loop needs (checkpointable with ``fs.io.save``).

    ``position`` (C, d), ``log_prob`` (C,), ``grad`` (C, d) of the chains;
    ``log_step_size`` the local step size's log; ``params``/``opt_state`` of the flow;
    ``buffer`` (L, n, d) the last ``L`` loops' training samples with ``buffer_filled`` (L,);
    ``loop`` the number of loops run; ``training_done`` whether training has stopped.
    """

    position: Array
    log_prob: Array
    grad: Array
    log_step_size: Array
    params: Any
    opt_state: Any
    buffer: Array
    buffer_filled: Array
    loop: Array
    training_done: Array


class AdaptiveFlowOutput(NamedTuple):
    """Result of :func:`adaptive_flow_mcmc`.

    ``positions`` (C, S, d) and ``log_prob`` (C, S): production samples (thinned);
    ``local_acceptance`` / ``global_acceptance``: mean acceptance rates in production;
    ``params``: the trained flow's parameters; ``state``: the final
    :class:`AdaptiveFlowState` (resume with ``initial_state=``); ``history``: per-loop
    numpy arrays (``phase`` 0 = training / 1 = production, ``local_acceptance``,
    ``global_acceptance``, ``loss``, ``step_size``, ``positions`` (loops, C, d) at the end
    of each loop, ``wall_s`` since the start); ``num_training_loops``; ``wall_s`` total
    wall time (compilation included).
    """

    positions: Array
    log_prob: Array
    local_acceptance: float
    global_acceptance: float
    params: Any
    state: AdaptiveFlowState
    history: dict
    num_training_loops: int
    wall_s: float


def _points_per_chain(cfg: AdaptiveFlowConfig) -> int:
    return min(cfg.buffer_points_per_chain, cfg.num_local_steps)


def init_state(
    key: PRNGKey,
    log_prob: LogProbFn,
    flow: Flow,
    initial_positions: Array,
    config: AdaptiveFlowConfig,
    params: Any = None,
) -> AdaptiveFlowState:
    """Return the state before the first loop (flow at ``params`` or ``flow.init(key)``)."""
    x = jnp.asarray(initial_positions)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim != 2 or x.shape[1] != flow.dim:
        raise ValueError(
            f"initial_positions must have shape (chains, {flow.dim}), got {tuple(x.shape)}"
        )
    check_finite_positions(x)
    lp, g = jax.jit(steps.value_and_grad_batch, static_argnums=0)(log_prob, x)
    bad = ~np.isfinite(np.asarray(lp))
    if bad.any():
        raise ValueError(f"log_prob is not finite at the initial position of chain {int(np.argmax(bad))}")
    if params is None:
        params = flow.init(key)
    opt_state = config.optimizer.init(params)
    n = x.shape[0] * _points_per_chain(config)
    return AdaptiveFlowState(
        position=x,
        log_prob=lp,
        grad=g,
        log_step_size=jnp.log(jnp.asarray(config.step_size, x.dtype)),
        params=params,
        opt_state=opt_state,
        buffer=jnp.zeros((config.buffer_loops, n, x.shape[1]), x.dtype),
        buffer_filled=jnp.zeros((config.buffer_loops,), bool),
        loop=jnp.zeros((), jnp.int32),
        training_done=jnp.zeros((), bool),
    )


def _local(cfg, log_prob, key, state, adapt_rate):
    if cfg.local == "mala":
        return steps.local_mala(
            key, state.position, state.log_prob, state.grad, state.log_step_size,
            log_prob, cfg.num_local_steps, adapt_rate,
        )
    return steps.local_hmc(
        key, state.position, state.log_prob, state.grad, state.log_step_size,
        log_prob, cfg.num_local_steps, adapt_rate, cfg.num_integration_steps,
    )


def _build_programs(cfg: AdaptiveFlowConfig, log_prob: LogProbFn, flow: Flow):
    """One jitted program for a loop of either phase (compiled once, reused by all loops)."""
    sample_q, log_q = symmetrized(flow, cfg.symmetries)
    k_keep = _points_per_chain(cfg)
    keep_idx = np.linspace(0, cfg.num_local_steps - 1, k_keep).round().astype(int)

    def loop(state: AdaptiveFlowState, key: PRNGKey, training: Array):
        """One loop; ``training`` (traced bool) switches adaptation and flow training on."""
        k_loc, k_glob = jax.random.split(key)
        adapt = jnp.where(training, cfg.adapt_rate, 0.0)
        (x, lp, g, log_eps), (tx, tlp, lrate) = _local(cfg, log_prob, k_loc, state, adapt)
        fresh = jnp.swapaxes(tx[keep_idx], 0, 1).reshape(-1, x.shape[1])  # (C * k, d)
        slot = state.loop % cfg.buffer_loops

        def train(operand):
            params, opt_state, buffer, filled = operand
            buffer = buffer.at[slot].set(fresh)
            filled = filled.at[slot].set(True)
            data = buffer.reshape(-1, x.shape[1])
            mask = jnp.repeat(filled, buffer.shape[1])
            params, opt_state, losses = steps.forward_kl_epochs(
                flow, cfg.optimizer, params, opt_state, data, mask, cfg.num_epochs, log_q
            )
            return params, opt_state, buffer, filled, losses[-1]

        def frozen(operand):
            params, opt_state, buffer, filled = operand
            return params, opt_state, buffer, filled, jnp.zeros((), x.dtype)

        operand = (state.params, state.opt_state, state.buffer, state.buffer_filled)
        params, opt_state, buffer, filled, loss = jax.lax.cond(training, train, frozen, operand)
        (x, lp), (gx, glp, grate) = steps.global_imh(
            k_glob, x, lp, flow, params, log_prob, cfg.num_global_steps, sample_q, log_q
        )
        # the flow moved the chains: refresh the gradients for the next local phase
        _, g = steps.value_and_grad_batch(log_prob, x)
        new = AdaptiveFlowState(
            x, lp, g, log_eps, params, opt_state, buffer, filled, state.loop + 1, state.training_done
        )
        stats = (jnp.mean(lrate), jnp.mean(grate), loss, jnp.exp(log_eps))
        traj = jnp.concatenate([tx, gx], axis=0)[cfg.thinning - 1 :: cfg.thinning]
        traj_lp = jnp.concatenate([tlp, glp], axis=0)[cfg.thinning - 1 :: cfg.thinning]
        return new, stats, jnp.swapaxes(traj, 0, 1), jnp.swapaxes(traj_lp, 0, 1)

    return jax.jit(loop)


def _plateaued(global_acc: list[float], cfg: AdaptiveFlowConfig) -> bool:
    """Training stops when the last ``patience`` loops improved the best earlier global
    acceptance by less than ``plateau_tol`` (absolute) and it is at least ``min_global_acceptance``."""
    t = len(global_acc)
    if not cfg.early_stop or t < max(cfg.min_training_loops, cfg.patience + 1):
        return False
    recent = max(global_acc[-cfg.patience :])
    before = max(global_acc[: -cfg.patience])
    return recent >= cfg.min_global_acceptance and recent < before + cfg.plateau_tol


def _place(state: AdaptiveFlowState, devices) -> AdaptiveFlowState:
    """Shard the chain axis over ``devices`` (a ``"chain"`` mesh); the rest is replicated."""
    from jax.sharding import NamedSharding, PartitionSpec

    from flowsamp.parallel import chain_mesh, check_divisible

    mesh = chain_mesh(devices)
    check_divisible(state.position.shape[0], mesh)
    chains = NamedSharding(mesh, PartitionSpec("chain"))
    repl = NamedSharding(mesh, PartitionSpec())
    put = lambda tree, s: jax.tree.map(lambda a: jax.device_put(a, s), tree)  # noqa: E731
    return state._replace(
        position=put(state.position, chains),
        log_prob=put(state.log_prob, chains),
        grad=put(state.grad, chains),
        log_step_size=put(state.log_step_size, repl),
        params=put(state.params, repl),
        opt_state=put(state.opt_state, repl),
        buffer=put(state.buffer, repl),
        buffer_filled=put(state.buffer_filled, repl),
    )


def adaptive_flow_mcmc(
    key: PRNGKey,
    log_prob: LogProbFn,
    flow: Flow,
    initial_positions: Array,
    *,
    params: Any = None,
    initial_state: AdaptiveFlowState | None = None,
    devices: Sequence[Any] | None = None,
    callback: Callable[[int, str, dict, AdaptiveFlowState], None] | None = None,
    progress: bool = False,
    checkpoint_path: str | None = None,
    **options: Any,
) -> AdaptiveFlowOutput:
    """Run the adaptive global-local flow sampler.

    Parameters
    ----------
    key
        PRNG key (any ``impl``; ``jax.random.key(0, impl="rbg")`` draws faster on CPU).
    log_prob
        Unnormalized, differentiable log-density :math:`\\log p(x)` of one point ``(dim,)``.
    flow
        A :class:`flowsamp.base.Flow` of ``flow.dim == dim`` (e.g. ``fs.flows.rq_spline``).
    initial_positions
        ``(chains, dim)`` starting points (must have finite ``log_prob``).
    params
        Initial flow parameters (default ``flow.init(key)``).
    initial_state
        Resume from a previous :class:`AdaptiveFlowState` (``out.state`` or a checkpoint
        loaded with ``fs.io.load(path, like=state)``); ``initial_positions`` then only
        fixes the shape.
    devices
        ``None`` runs all chains on the default device; a list of devices (or a ``"chain"``
        mesh) shards the chain axis over them (chains must divide evenly).
    callback
        ``callback(loop, phase, stats, state)`` called on the host after every loop
        (``phase`` is ``"training"`` or ``"production"``).
    progress
        Show a tqdm progress bar.
    checkpoint_path
        If given, the state is saved there (msgpack, ``fs.io.save``) after every loop.
    **options
        Schedule and algorithm options, see :class:`AdaptiveFlowConfig` (unknown names raise
        ``TypeError``): ``num_local_steps``, ``num_global_steps``, ``max_training_loops``,
        ``min_training_loops``, ``num_production_loops``, ``num_epochs``, ``learning_rate``,
        ``optimizer``, ``buffer_loops``, ``buffer_points_per_chain``, ``local`` (``"mala"`` |
        ``"hmc"``), ``step_size``, ``num_integration_steps``, ``adapt_rate``, ``thinning``,
        ``early_stop``, ``plateau_tol``, ``patience``, ``min_global_acceptance``, ``symmetries``.

    Returns
    -------
    AdaptiveFlowOutput
        Production samples ``positions`` (C, S, d), exact MCMC draws from
        :math:`p(x)/Z`, with acceptance rates, trained ``params``, final ``state`` and
        per-loop ``history``.
    """
    t0 = time.perf_counter()
    cfg = make_config(**options)
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a flowsamp Flow, got {type(flow).__name__}")
    if not callable(log_prob):
        raise TypeError(f"log_prob must be callable, got {type(log_prob).__name__}")
    key = as_key(key)
    k_init, key = jax.random.split(key)
    if initial_state is None:
        state = init_state(k_init, log_prob, flow, initial_positions, cfg, params)
    else:
        if not isinstance(initial_state, AdaptiveFlowState):
            raise TypeError("initial_state must be an AdaptiveFlowState")
        state = initial_state
    if devices is not None:
        state = _place(state, devices)
    loop = _build_programs(cfg, log_prob, flow)
    on, off = jnp.ones((), bool), jnp.zeros((), bool)

    hist = {k: [] for k in ("phase", "local_acceptance", "global_acceptance", "loss", "step_size", "positions", "wall_s")}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_training_loops + cfg.num_production_loops, desc="training")

    def record(phase, stats, st):
        loc, glob, loss, eps = (float(s) for s in stats)
        hist["phase"].append(0 if phase == "training" else 1)
        hist["local_acceptance"].append(loc)
        hist["global_acceptance"].append(glob)
        hist["loss"].append(loss)
        hist["step_size"].append(eps)
        hist["positions"].append(np.asarray(st.position))
        hist["wall_s"].append(time.perf_counter() - t0)
        if bar is not None:
            bar.set_postfix(local=f"{loc:.2f}", glob=f"{glob:.2f}")
            bar.update(1)
        if callback is not None:
            callback(len(hist["phase"]) - 1, phase, {"local_acceptance": loc, "global_acceptance": glob, "loss": loss, "step_size": eps}, st)
        if checkpoint_path is not None:
            from flowsamp import io as _io

            _io.save(checkpoint_path, st)

    num_train = 0
    global_acc: list[float] = []
    while not bool(state.training_done) and int(state.loop) < cfg.max_training_loops:
        key, sub = jax.random.split(key)
        state, stats, _, _ = loop(state, sub, on)
        num_train += 1
        global_acc.append(float(stats[1]))
        done = _plateaued(global_acc, cfg) or int(state.loop) >= cfg.max_training_loops
        if done:
            state = state._replace(training_done=jnp.ones((), bool))
        record("training", stats, state)
    if not bool(state.training_done):
        state = state._replace(training_done=jnp.ones((), bool))
    if bar is not None:
        bar.total = num_train + cfg.num_production_loops
        bar.set_description("production")

    traj, traj_lp, loc_acc, glob_acc = [], [], [], []
    for _ in range(cfg.num_production_loops):
        key, sub = jax.random.split(key)
        state, stats, tx, tlp = loop(state, sub, off)
        traj.append(tx)
        traj_lp.append(tlp)
        loc_acc.append(float(stats[0]))
        glob_acc.append(float(stats[1]))
        record("production", stats, state)
    if bar is not None:
        bar.close()
    positions = jnp.concatenate(traj, axis=1) if traj else jnp.zeros((state.position.shape[0], 0, flow.dim), state.position.dtype)
    log_probs = jnp.concatenate(traj_lp, axis=1) if traj_lp else jnp.zeros(positions.shape[:2], positions.dtype)
    positions.block_until_ready()
    history = {k: np.asarray(v) for k, v in hist.items()}
    return AdaptiveFlowOutput(
        positions=positions,
        log_prob=log_probs,
        local_acceptance=float(np.mean(loc_acc)) if loc_acc else float("nan"),
        global_acceptance=float(np.mean(glob_acc)) if glob_acc else float("nan"),
        params=state.params,
        state=state,
        history=history,
        num_training_loops=num_train,
        wall_s=time.perf_counter() - t0,
    )
