"""Adaptive global-local flow MCMC (Gabrié, Rotskoff & Vanden-Eijnden, PNAS 2022; flowMC).

``C`` parallel chains alternate *local* steps (MALA or HMC, step size adapted) with
*global* independent-MH steps proposed by a normalizing flow :math:`q_\\theta`, and the
flow is trained by forward KL (maximum likelihood) on the chains' recent samples:

.. math::

    \\theta \\leftarrow \\theta - \\eta\\, \\nabla_\\theta \\Big[-\\frac{1}{|B|}
    \\sum_{x \\in B} \\log q_\\theta(x)\\Big], \\qquad
    \\alpha(x \\to x') = \\min\\Big(1, \\frac{p(x')\\,q_\\theta(x)}{p(x)\\,q_\\theta(x')}\\Big),

with ``B`` a bounded buffer of the last ``buffer_loops`` loops' samples. A *training*
phase (flow and step size adapted; stopped early once the global acceptance plateaus;
the best flow seen, by measured global acceptance, replaces the last one when the last is
clearly worse, so training never loses a good proposal) is followed by a *production* phase with everything frozen, whose samples are exact
MCMC draws from ``p``. The sampler is a composition of the library's parts
(:mod:`flowsamp.samplers._flow_mcmc_loop`): :func:`flowsamp.kernels.mala.transition` /
:func:`flowsamp.kernels.hmc.transition` for the local moves,
:func:`flowsamp.kernels.flow_imh.imh_test` for the global ones,
:func:`flowsamp.kernels.adaptation.robbins_monro` for the step size and
:func:`flowsamp.train.fit_steps` on :func:`flowsamp.train.forward_kl` for the flow; its
state nests their states. One jitted program serves every loop of both phases; host work
(progress, callback, checkpoint) happens only between loops.

Optional ``symmetries``: volume-preserving involutions :math:`g` (e.g. ``lambda x: -x``)
under which the *support* of ``p`` maps to itself. The global proposal is then the
symmetrised :math:`q_G(x) = \\frac{1}{|G|}\\sum_{g \\in G} q_\\theta(g(x))`
(:func:`flowsamp.flows.symmetrize`), which lets chains started in one mode jump to its
images (the MH test keeps the chain exact even when ``p`` is not symmetric).

References: arXiv:2105.12603 (PNAS 119, e2109420119); flowMC, arXiv:2211.06397.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.base import Flow, as_key, check_finite_positions
from flowsamp.estimators.verdict import Thresholds, mcmc_verdict, rank_diagnostics, warn_if_not_converged
from flowsamp.flows.preconditioning import Affine, preconditioned
from flowsamp.flows.symmetrize import symmetrize
from flowsamp.kernels.adaptation import RobbinsMonroState
from flowsamp.kernels.flow_imh import FlowIMHState
from flowsamp.samplers import _flow_mcmc_stopping as stopping
from flowsamp.samplers._flow_mcmc_config import AdaptiveFlowConfig, make_config
from flowsamp.samplers._flow_mcmc_explore import (
    Exploration,
    default_step_size,
    explore,
    imh_acceptance_estimate,
)
from flowsamp.samplers._flow_mcmc_loop import LoopStats, build_loop, init_adaptation, local_init
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = [
    "AdaptiveFlowConfig",
    "AdaptiveFlowOutput",
    "AdaptiveFlowState",
    "LoopStats",
    "adaptive_flow_mcmc",
    "init_state",
]


class AdaptiveFlowState(NamedTuple):
    """Everything the next loop needs (checkpointable with ``fs.io.save``).

    ``local``: the batched local-kernel state (:class:`~flowsamp.kernels.mala.MALAState` or
    :class:`~flowsamp.kernels.hmc.HMCState`: position ``(C, d)``, ``log_prob`` ``(C,)``,
    ``grad`` ``(C, d)``), where the next local phase starts; ``flow_imh``: the batched
    :class:`~flowsamp.kernels.flow_imh.FlowIMHState` at the end of the last global phase
    (the same chains with the cached :math:`\\log q_\\theta(x)` under ``params``);
    ``adaptation``: the step-size state
    (:class:`~flowsamp.kernels.adaptation.RobbinsMonroState`, ``log_step_size``);
    ``params``/``opt_state``: the flow's parameters and optimiser state; ``buffer``
    ``(L, n, d)``: the last ``L`` loops' training samples with ``buffer_filled`` ``(L,)``;
    ``loop``: the number of loops run; ``training_done``: whether training has stopped.
    """

    local: Any
    flow_imh: FlowIMHState
    adaptation: RobbinsMonroState
    params: Any
    opt_state: Any
    buffer: Array
    buffer_filled: Array
    loop: Array
    training_done: Array

    @property
    def position(self) -> Array:
        """Chain positions ``(C, d)``."""
        return self.local.position

    @property
    def log_prob(self) -> Array:
        """:math:`\\log p` at the chain positions ``(C,)``."""
        return self.local.log_prob

    @property
    def log_step_size(self) -> Array:
        """Log of the local step size."""
        return self.adaptation.log_step_size


class AdaptiveFlowOutput(NamedTuple):
    """Result of :func:`adaptive_flow_mcmc`.

    ``positions`` (C, S, d) and ``log_prob`` (C, S): production samples (thinned);
    ``local_acceptance`` / ``global_acceptance``: mean acceptance rates in production;
    ``params``: the flow parameters production used: the last trained ones, or the best
    ones seen in training (by measured global acceptance, the exploration's flow included)
    when the last are worse by more than the noise (``diagnostics["used_best_flow"]``); ``state``: the final
    :class:`AdaptiveFlowState` (resume with ``initial_state=``); ``history``: per-loop
    numpy arrays (``phase`` 0 = training / 1 = production, every :class:`LoopStats` field,
    ``positions`` (loops, C, d) at the end of each loop, ``wall_s`` since the start);
    ``num_training_loops``; ``wall_s`` total wall time (compilation included).
    ``diagnostics`` / ``converged`` / ``problems``: the verdict of the production draws
    (:func:`flowsamp.estimators.mcmc_verdict`, with mode diagnostics when ``mode_of`` is given)
    plus ``training_stopped_by`` (``"converged"`` or ``"max_training_loops"``),
    ``num_production_steps``, ``target_ess`` and, after exploration, ``explore_smc_steps`` and
    ``explore_wall_s``; ``flow``: the flow the chains used (the affine-preconditioned one after
    exploration: evaluate ``out.flow.log_prob(out.params, x)``, resume with
    ``flow=out.flow``); ``exploration``: the :class:`Exploration` (``None`` without one).
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
    diagnostics: dict
    converged: bool
    problems: list
    flow: Flow
    exploration: Exploration | None


def _check_positions(initial_positions: Array, dim: int) -> Array:
    x = jnp.asarray(initial_positions)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"initial_positions must have shape (chains, {dim}), got {tuple(x.shape)}")
    check_finite_positions(x)
    return x


def _build_init(cfg: AdaptiveFlowConfig, log_prob: LogProbFn, flow: Flow, q: Flow) -> Callable:
    """One jitted program ``(key, x, params) -> AdaptiveFlowState`` (``params=None``: ``flow.init``)."""
    n = min(cfg.buffer_points_per_chain, cfg.num_local_steps)

    def init(key, x, params):
        if params is None:
            params = flow.init(key)
        local = local_init(cfg.local, log_prob, x)
        imh = FlowIMHState(x, local.log_prob, q.log_prob(params, x).astype(x.dtype))
        return AdaptiveFlowState(
            local=local,
            flow_imh=imh,
            adaptation=init_adaptation(cfg, x.dtype),
            params=params,
            opt_state=cfg.optimizer.init(params),
            buffer=jnp.zeros((cfg.buffer_loops, x.shape[0] * n, x.shape[1]), x.dtype),
            buffer_filled=jnp.zeros((cfg.buffer_loops,), bool),
            loop=jnp.zeros((), jnp.int32),
            training_done=jnp.zeros((), bool),
        )

    return jax.jit(init)


def init_state(
    key: PRNGKey,
    log_prob: LogProbFn,
    flow: Flow,
    initial_positions: Array,
    config: AdaptiveFlowConfig,
    params: Any = None,
) -> AdaptiveFlowState:
    """Return the state before the first loop (flow at ``params`` or ``flow.init(key)``)."""
    x = _check_positions(initial_positions, flow.dim)
    q = symmetrize(flow, config.symmetries)
    state = _build_init(config, log_prob, flow, q)(as_key(key), x, params)
    bad = ~np.isfinite(np.asarray(state.local.log_prob))
    if bad.any():
        raise ValueError(f"log_prob is not finite at the initial position of chain {int(np.argmax(bad))}")
    return state


def _place(state: AdaptiveFlowState, devices) -> AdaptiveFlowState:
    """Shard the chain axis over ``devices`` (a ``"chain"`` mesh); the rest is replicated."""
    from jax.sharding import NamedSharding, PartitionSpec

    from flowsamp.parallel import chain_mesh, check_divisible

    mesh = chain_mesh(devices)
    check_divisible(state.position.shape[0], mesh)
    chains = NamedSharding(mesh, PartitionSpec("chain"))
    repl = NamedSharding(mesh, PartitionSpec())
    put = lambda tree, s: jax.tree.map(lambda a: jax.device_put(a, s), tree)  # noqa: E731
    return AdaptiveFlowState(
        *(put(getattr(state, f), chains if f in ("local", "flow_imh") else repl) for f in state._fields)
    )


def _done(state: AdaptiveFlowState, sharded: bool) -> AdaptiveFlowState:
    """``state`` with ``training_done`` set, placed like ``loop`` when ``sharded`` (a host-side
    constant: no compiled program, and no new sharding that would recompile the loop)."""
    flag = np.ones((), bool)
    return state._replace(training_done=jax.device_put(flag, state.loop.sharding) if sharded else flag)


_EXPLORE_STREAM = 0x7FFFFFFF  # fold_in data of the exploration's key (loops use 0, 1, 2, ...)


def _explore(key: PRNGKey, log_prob: LogProbFn, flow: Flow, x: Array, params: Any, cfg: AdaptiveFlowConfig) -> Exploration:
    """The tempered-SMC warm start (:mod:`flowsamp.samplers._flow_mcmc_explore`)."""
    ep = cfg.explore_particles
    own = None if ep is None or isinstance(ep, (int, np.integer)) else ep
    return explore(
        jax.random.fold_in(key, _EXPLORE_STREAM), log_prob, flow, x, params,
        num_particles=None if ep is None else (int(ep) if own is None else 4), base_scale=cfg.explore_scale, particles=own,
        precondition=cfg.precondition, num_fit_steps=cfg.explore_fit_steps, learning_rate=cfg.learning_rate,
    )


def _prefill(state: AdaptiveFlowState, particles: Array) -> AdaptiveFlowState:
    """Fill the training buffer with exploration particles, so that the first training loops
    learn from draws spread over every mode found, not only from the chains' first steps."""
    buf = state.buffer
    n_slot = buf.shape[1]
    k = min(buf.shape[0], particles.shape[0] // n_slot)
    if k == 0:
        return state
    rows = jnp.asarray(particles[: k * n_slot], buf.dtype).reshape(k, n_slot, buf.shape[2])
    return state._replace(buffer=buf.at[:k].set(rows), buffer_filled=state.buffer_filled.at[:k].set(True))


_BASELINE_STREAM = 0x7FFFFFFE  # fold_in data of the baseline acceptance estimate


def _keep_best(best: tuple | None, acc: float, params: Any) -> tuple:
    """``(acceptance, params)`` of the better of ``best`` and the new measurement."""
    if not np.isfinite(acc):
        return best
    return (acc, params) if best is None or acc > best[0] else best


def _worse_beyond_noise(best_acc: float, last_acc: float, num_chains: int) -> bool:
    r"""Whether the last flow's global acceptance is below the best one by more than the noise.

    The noise is taken conservatively as :math:`2\sqrt{a(1-a)/C}` with :math:`a` the best
    acceptance and :math:`C` the chains (each chain one effective trial per loop: IMH steps
    of one chain are correlated), so a swap happens only on a clear loss.
    """
    a = min(max(best_acc, 0.0), 1.0)
    return bool(best_acc - last_acc > 2.0 * math.sqrt(a * (1.0 - a) / max(num_chains, 1)))


def _labels(cfg: AdaptiveFlowConfig, positions: Array) -> np.ndarray | None:
    if cfg.mode_of is None:
        return None
    return np.asarray(cfg.mode_of(positions)).astype(np.int64)


def _ess_and_rhat(traj: list) -> tuple[float, float]:
    """Smallest bulk ESS and largest rank R-hat over the coordinates of the draws so far."""
    x = np.concatenate([np.asarray(a) for a in traj], axis=1)
    if x.shape[1] < 4:
        return float("nan"), float("nan")
    rd = rank_diagnostics(x)
    ess, rhat = rd["ess_bulk"], rd["rhat"]
    min_ess = float(np.nanmin(ess)) if not np.all(np.isnan(ess)) else float("nan")
    return min_ess, float(np.nanmax(rhat)) if not np.all(np.isnan(rhat)) else float("nan")


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
    """Run the adaptive global-local flow sampler: explore, train until it mixes, produce until
    ``target_ess``.

    Parameters
    ----------
    key
        PRNG key (any ``impl``; ``jax.random.key(0, impl="rbg")`` draws faster on CPU).
        The flow is initialised with ``key``; loop ``t`` draws from ``fold_in(key, t)``.
    log_prob
        Unnormalized, differentiable log-density :math:`\\log p(x)` of one point ``(dim,)``.
    flow
        A :class:`flowsamp.base.Flow` of ``flow.dim == dim`` (e.g. ``fs.flows.rq_spline``).
        After exploration it is wrapped by the fitted affine map (``out.flow``).
    initial_positions
        ``(chains, dim)`` starting points (must have finite ``log_prob``). With exploration
        (default) they centre the over-dispersed base and the chains start from SMC
        particles instead.
    params
        Initial flow parameters (default ``flow.init(key)``).
    initial_state
        Resume from a previous :class:`AdaptiveFlowState` (``out.state`` or a checkpoint
        loaded with ``fs.io.load(path, like=state)``) with ``flow=out.flow``; no exploration
        is run and ``initial_positions`` then only fixes the shape.
    devices
        ``None`` runs all chains on the default device; a list of devices (or a ``"chain"``
        mesh) shards the chain axis over them (chains must divide evenly).
    callback
        ``callback(loop, phase, stats, state)`` called on the host after every loop
        (``phase`` is ``"training"`` or ``"production"``, ``stats`` a dict of the
        :class:`LoopStats` fields as floats).
    progress
        Show a tqdm progress bar.
    checkpoint_path
        If given, the state is saved there (msgpack, ``fs.io.save``) after every loop.
    **options
        Options of :class:`AdaptiveFlowConfig` (unknown names raise ``TypeError``). Schedule:
        ``num_local_steps``, ``num_global_steps``, ``max_training_loops``,
        ``min_training_loops``, ``num_production_loops``, ``num_epochs``, ``learning_rate``,
        ``optimizer``, ``buffer_loops``, ``buffer_points_per_chain``, ``local`` (``"mala"`` |
        ``"hmc"``), ``step_size``, ``num_integration_steps``, ``adapt_rate``, ``thinning``,
        ``early_stop``, ``plateau_tol``, ``patience``, ``min_global_acceptance``,
        ``symmetries``. Stopping: ``target_ess`` (default 1000 bulk ESS on every coordinate;
        ``None``: exactly ``num_production_loops``), ``max_steps`` (production steps per chain,
        default 10 000), ``mode_of`` (``x -> int`` mode labels), ``num_modes``,
        ``thresholds``. Exploration: ``explore`` (default ``True``), ``explore_scale``,
        ``explore_particles``, ``explore_fit_steps``, ``precondition``.

    Returns
    -------
    AdaptiveFlowOutput
        Production samples ``positions`` (C, S, d), exact MCMC draws from
        :math:`p(x)/Z`, with acceptance rates, trained ``params`` of ``out.flow``, final
        ``state``, per-loop ``history`` and the verdict (``diagnostics``, ``converged``,
        ``problems``); a :class:`~flowsamp.estimators.NotConvergedWarning` is issued when
        not converged.
    """
    t0 = time.perf_counter()
    cfg = make_config(**options)
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a flowsamp Flow, got {type(flow).__name__}")
    if not callable(log_prob):
        raise TypeError(f"log_prob must be callable, got {type(log_prob).__name__}")
    th = cfg.thresholds if cfg.thresholds is not None else Thresholds()
    key = as_key(key)
    exploration, x_init = None, None
    if initial_state is None:
        x_init = _check_positions(initial_positions, flow.dim)
        x_start = x_init
        affine = None
        if cfg.explore:
            exploration = _explore(key, log_prob, flow, x_init, params, cfg)
            flow, params, x_start = exploration.flow, exploration.params, exploration.seeds
            affine = exploration.affine
        elif isinstance(cfg.precondition, Affine):
            flow = preconditioned(flow, cfg.precondition)
            affine = cfg.precondition
        if cfg.step_size is None:
            cfg = dataclasses.replace(cfg, step_size=default_step_size(affine, flow.dim, cfg.local))
        state = init_state(key, log_prob, flow, x_start, cfg, params)
        if exploration is not None:
            state = _prefill(state, exploration.train)
    else:
        if not isinstance(initial_state, AdaptiveFlowState):
            raise TypeError("initial_state must be an AdaptiveFlowState")
        state = initial_state
    if devices is not None:
        state = _place(state, devices)
    q_sym = symmetrize(flow, cfg.symmetries)
    loop = build_loop(cfg, log_prob, q_sym)
    on, off = np.ones((), bool), np.zeros((), bool)

    fields = ("phase", *LoopStats._fields, "positions", "wall_s")
    hist: dict[str, list] = {k: [] for k in fields}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_training_loops + cfg.num_production_loops, desc="training")

    def record(phase: str, stats: LoopStats, st: AdaptiveFlowState) -> dict:
        host = {k: float(v) for k, v in zip(LoopStats._fields, jax.device_get(tuple(stats)))}
        hist["phase"].append(0 if phase == "training" else 1)
        for k, v in host.items():
            hist[k].append(v)
        hist["positions"].append(np.asarray(st.position))
        hist["wall_s"].append(time.perf_counter() - t0)
        if bar is not None:
            bar.set_postfix(local=f"{host['local_acceptance']:.2f}", glob=f"{host['global_acceptance']:.2f}")
            bar.update(1)
        if callback is not None:
            callback(len(hist["phase"]) - 1, phase, host, st)
        if checkpoint_path is not None:
            from flowsamp import io as _io

            _io.save(checkpoint_path, st)
        return host

    # training: until the flow's acceptance plateaus AND the chains mix (or max_training_loops).
    # The best flow so far by measured global acceptance is kept (baseline: the exploration's
    # warm-started affine flow, estimated on held-out particles): training on slowly moving
    # chains can make the flow worse, and production must never use a worse proposal.
    num_train, stopped_by = 0, "max_training_loops"
    best = None
    if exploration is not None and not bool(state.training_done):
        base_acc = imh_acceptance_estimate(
            jax.random.fold_in(key, _BASELINE_STREAM), log_prob, q_sym, state.params, exploration.validation
        )
        best = (base_acc, state.params)
    global_acc: list[float] = []
    window_lp: list = []
    window_x: list = []
    while not bool(state.training_done) and int(state.loop) < cfg.max_training_loops:
        state, stats, tx, tlp = loop(state, key, on)
        num_train += 1
        global_acc.append(float(stats.global_acceptance))
        best = _keep_best(best, global_acc[-1], state.params)
        window_lp = (window_lp + [tlp])[-cfg.patience :]
        if cfg.mode_of is not None:
            window_x = (window_x + [tx])[-cfg.patience :]
        done = False
        if cfg.early_stop and num_train >= cfg.min_training_loops and stopping.plateaued(
            global_acc, patience=cfg.patience, tol=cfg.plateau_tol, min_acceptance=cfg.min_global_acceptance
        ):
            lp_w = np.concatenate([np.asarray(a) for a in window_lp], axis=1)
            labels = _labels(cfg, jnp.concatenate(window_x, axis=1)) if cfg.mode_of is not None else None
            done = stopping.mixing(lp_w, labels, cfg.num_modes, th, rhat=stopping.TRAINING_RHAT).ok
            if done:
                stopped_by = "converged"
        if done or int(state.loop) >= cfg.max_training_loops:
            state = _done(state, devices is not None)
        record("training", stats, state)
    if not bool(state.training_done):
        state = _done(state, devices is not None)
    last_acc = global_acc[-1] if global_acc else (best[0] if best is not None else float("nan"))
    swapped = best is not None and _worse_beyond_noise(best[0], last_acc, state.position.shape[0])
    if swapped:
        state = state._replace(
            params=best[1],
            flow_imh=state.flow_imh._replace(
                log_q=jax.jit(q_sym.log_prob)(best[1], state.flow_imh.position).astype(state.flow_imh.log_q.dtype)
            ),
        )
    if bar is not None:
        bar.total = num_train + cfg.num_production_loops
        bar.set_description("production")

    # production: at least num_production_loops, then until min bulk ESS >= target_ess and
    # max R-hat <= thresholds.rhat, or max_steps
    steps_per_loop = cfg.num_local_steps + cfg.num_global_steps
    traj, traj_lp, loc_acc, glob_acc = [], [], [], []
    steps, check_at, num_bad, by_budget = 0, 0, 0, False
    while True:
        if len(traj) >= cfg.num_production_loops:
            if cfg.target_ess is None:
                break
            if steps >= cfg.max_steps:
                by_budget = True
                break
            if steps >= check_at and traj:
                min_ess, max_rhat = _ess_and_rhat(traj)
                if stopping.production_done(min_ess, steps, target_ess=cfg.target_ess, max_steps=cfg.max_steps) and (
                    max_rhat <= th.rhat
                ):
                    break
                check_at = stopping.next_check(steps, steps_per_loop, min_ess, cfg.target_ess)
        elif cfg.target_ess is not None and steps >= cfg.max_steps:
            by_budget = True
            break
        state, stats, tx, tlp = loop(state, key, off)
        traj.append(tx)
        traj_lp.append(tlp)
        steps += steps_per_loop
        host = record("production", stats, state)
        loc_acc.append(host["local_acceptance"])
        glob_acc.append(host["global_acceptance"])
        num_bad += int(host["num_local_nonfinite"] + host["num_global_nonfinite"])
    if bar is not None:
        bar.close()
    if traj:
        positions, log_probs = jnp.concatenate(traj, axis=1), jnp.concatenate(traj_lp, axis=1)
    else:
        positions = np.zeros((state.position.shape[0], 0, flow.dim), state.position.dtype)
        log_probs = np.zeros(positions.shape[:2], positions.dtype)
    jax.block_until_ready(positions)
    history = {k: np.asarray(v) for k, v in hist.items()}
    local_acc = float(np.mean(loc_acc)) if loc_acc else float("nan")
    global_acc_prod = float(np.mean(glob_acc)) if glob_acc else float("nan")

    # the verdict, with what only this sampler knows
    x_host = np.asarray(positions)
    if x_host.shape[1] >= 4:
        verdict = mcmc_verdict(
            x_host, num_nonfinite=num_bad, acceptance=local_acc, global_acceptance=global_acc_prod,
            mode_labels=_labels(cfg, positions), num_modes=cfg.num_modes, thresholds=th,
        )
        diagnostics, problems = dict(verdict.diagnostics), list(verdict.problems)
    else:
        diagnostics, problems = {}, [f"only {x_host.shape[1]} production draws per chain: no verdict"]
    if by_budget and not diagnostics.get("min_ess_bulk", 0.0) >= cfg.target_ess:
        problems.append(stopping.budget_problem(diagnostics.get("min_ess_bulk", float("nan")), cfg.target_ess, cfg.max_steps))
    if exploration is None and x_init is not None and x_host.shape[1] >= 2:
        clustered = stopping.clustered_start_problem(np.asarray(x_init), x_host.reshape(-1, x_host.shape[-1]).std(0))
        if clustered is not None:
            problems.append(clustered)
    diagnostics.update(
        training_stopped_by=stopped_by, num_production_steps=steps,
        best_training_global_acceptance=None if best is None else float(best[0]), used_best_flow=bool(swapped), target_ess=cfg.target_ess,
        explore_smc_steps=None if exploration is None or exploration.smc is None else exploration.smc.num_steps,
        explore_wall_s=None if exploration is None else exploration.wall_s,
    )
    converged = not problems
    production_requested = cfg.num_production_loops > 0 or cfg.target_ess is not None
    if not converged and production_requested:
        from flowsamp.estimators.verdict import Verdict

        warn_if_not_converged(Verdict(diagnostics, converged, problems), "adaptive_flow_mcmc")
    return AdaptiveFlowOutput(
        positions=positions,
        log_prob=log_probs,
        local_acceptance=local_acc,
        global_acceptance=global_acc_prod,
        params=state.params,
        state=state,
        history=history,
        num_training_loops=num_train,
        wall_s=time.perf_counter() - t0,
        diagnostics=diagnostics,
        converged=converged,
        problems=problems,
        flow=flow,
        exploration=exploration,
    )
