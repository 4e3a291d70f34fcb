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
state nests their states. Three jitted programs (local phase, training, global phase) serve
every loop of both phases, and the exploration's forward-KL warm start and the baseline
acceptance reuse them, so the flow's programs compile once per run; host work (progress,
callback, checkpoint) happens only between loops. A checkpointed run (``checkpoint_path``)
resumes bit for bit (``resume=True``).

Optional ``symmetries``: volume-preserving involutions :math:`g` (e.g. ``lambda x: -x``)
under which the *support* of ``p`` maps to itself. The global proposal is then the
symmetrised :math:`q_G(x) = \\frac{1}{|G|}\\sum_{g \\in G} q_\\theta(g(x))`
(:func:`flowsamp.flows.symmetrize`), which lets chains started in one mode jump to its
images (the MH test keeps the chain exact even when ``p`` is not symmetric).

References: arXiv:2105.12603 (PNAS 119, e2109420119); flowMC, arXiv:2211.06397.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import threading
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp._progress import ProgressBar, min_bulk_ess, readable
from flowsamp.base import Flow, as_key, check_finite_positions
from flowsamp.estimators.verdict import Thresholds, mcmc_verdict, rank_diagnostics, warn_if_not_converged
from flowsamp.flows.cnf import ContinuousFlow, check_log_q
from flowsamp.flows.preconditioning import MAX_FULL_DIM, Affine, affine_wrapped, preconditioned
from flowsamp.flows.symmetrize import symmetrize
from flowsamp.kernels.adaptation import RobbinsMonroState
from flowsamp.kernels.flow_imh import FlowIMHState
from flowsamp import io as _io
from flowsamp.samplers import _checkpoint as _ckpt
from flowsamp.samplers import _flow_mcmc_stopping as stopping
from flowsamp.samplers._flow_mcmc_config import AdaptiveFlowConfig, make_config
from flowsamp.samplers._flow_mcmc_explore import (
    Exploration,
    default_num_particles,
    default_step_size,
    explore,
)
from flowsamp.samplers._flow_mcmc_loop import (
    LoopPrograms,
    LoopStats,
    bind_programs,
    build_local,
    build_programs,
    init_adaptation,
    local_init,
    loop_keys,
)
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
    (before the first loop ``flow_imh.log_q`` is NaN: the global phase computes it);
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
    ``num_production_steps``, ``target_ess`` and, after exploration, ``explore_smc_steps``,
    ``explore_wall_s``, ``notes`` (sentences that do not fail the verdict: how far the exploration
    searched) and the lost-region check (``coverage``, ``coverage_threshold``, ...:
    :mod:`flowsamp.samplers._flow_mcmc_coverage`: regions the exploration's particles populate
    where production put far too few draws are problems); ``flow``: the flow the chains used (the affine-preconditioned one after
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


def _build_init(cfg: AdaptiveFlowConfig, log_prob: LogProbFn, flow: Flow) -> Callable:
    """One jitted program ``(key, x, params, step_size) -> AdaptiveFlowState`` (``params=None``:
    ``flow.init``; the step size is an argument, so the program is built before it is known)."""
    n = min(cfg.buffer_points_per_chain, cfg.num_local_steps)

    def init(key, x, params, step_size):
        if params is None:
            params = flow.init(key)
        local = local_init(cfg.local, log_prob, x)
        # log q is first computed by the global phase (no flow program is compiled for init)
        imh = FlowIMHState(x, local.log_prob, jnp.full(local.log_prob.shape, jnp.nan, x.dtype))
        return AdaptiveFlowState(
            local=local,
            flow_imh=imh,
            adaptation=init_adaptation(cfg, x.dtype, step_size),
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
    return _init_with(_build_init(config, log_prob, flow), key, flow, initial_positions, config, params)


def _init_with(program: Callable, key: PRNGKey, flow: Flow, initial_positions: Array, config: AdaptiveFlowConfig,
               params: Any) -> AdaptiveFlowState:
    """:func:`init_state` on an init ``program`` of :func:`_build_init` (built once per run)."""
    x = _check_positions(initial_positions, flow.dim)
    step = np.asarray(0.1 if config.step_size is None else config.step_size, x.dtype)
    state = program(as_key(key), x, params, step)
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


def _explore(key: PRNGKey, log_prob: LogProbFn, flow: Flow, x: Array, params: Any, cfg: AdaptiveFlowConfig,
             warm_start: Callable | None = None, on_round: Callable[[int], None] | None = None) -> Exploration:
    """The tempered-SMC warm start (:mod:`flowsamp.samplers._flow_mcmc_explore`)."""
    ep = cfg.explore_particles
    own = None if ep is None or isinstance(ep, (int, np.integer)) else ep
    return explore(
        jax.random.fold_in(key, _EXPLORE_STREAM), log_prob, flow, x, params,
        num_particles=None if ep is None else (int(ep) if own is None else 4), base_scale=cfg.explore_scale, particles=own,
        precondition=cfg.precondition, num_fit_steps=cfg.explore_fit_steps, learning_rate=cfg.learning_rate,
        warm_start=warm_start, on_round=on_round,
    )


class _Programs:
    """The run's programs, each built once and reused: the init and local programs (they do not
    involve the flow) and the :class:`LoopPrograms` of the proposal flow, which the
    exploration's warm start, the baseline acceptance and every loop share.

    A preconditioned flow (:class:`~flowsamp.flows.preconditioning.PreconditionedFlow`) enters
    the training and global programs as its inner flow plus the affine map as *data*
    (:func:`~flowsamp.flows.preconditioning.affine_wrapped`, ``flow_of`` of
    :func:`build_programs`): the programs depend only on the map's shapes, so they are built,
    and compiled, before the exploration has fitted it.

    :meth:`precompile` compiles programs in background threads while the caller works: before
    the exploration (``early``) the training program for the affine shape the exploration will
    fit (:func:`_predicted_affine`) at once, beside the first tempered-SMC round's compile, and
    the global, init, local, loop-key, ``mode_of`` and lost-region score programs in a second
    thread once that round has run (:meth:`release`); in the warm start, the global program
    when the prediction missed. XLA compiles without the GIL, so on two cores the compilations
    overlap; the later calls hit jax's compilation cache (the same traced program at the same
    argument types). :meth:`wait` waits for one program (the warm start waits for
    the training program rather than compiling it a second time), :meth:`join` for the
    threads. A failure there only costs the overlap: the real call compiles (and raises) as it
    would have."""

    def __init__(self, cfg: AdaptiveFlowConfig, log_prob: LogProbFn, flow: Flow, dtype: Any = None):
        self.cfg, self.log_prob, self.flow, self.programs = cfg, log_prob, None, None
        self.dtype = jnp.result_type(float) if dtype is None else dtype
        # params given to init are the inner flow's: any preconditioned wrapper shares flow.init
        self.init = _build_init(cfg, log_prob, flow)
        self.local = build_local(cfg, log_prob)
        self.families: dict = {}  # (id(inner flow), affine kind) -> (inner flow, unbound LoopPrograms)
        self.events: dict = {}  # (family key, program name) -> threading.Event set once its compile ended
        self.threads: list = []
        self.gate = threading.Event()  # see release()

    def _family(self, flow: Flow) -> tuple[Flow, str | None, Any]:
        """``(inner flow, kind, data)``: a preconditioned flow's map as ``kind`` ``"full"`` /
        ``"diag"`` and ``data = (loc, scale, log_det)``; any other flow is its own family."""
        inner, aff = getattr(flow, "inner", None), getattr(flow, "affine", None)
        if inner is None or aff is None:
            return flow, None, None
        dt = np.dtype(self.dtype)  # cast on the host, put once: no conversion program
        data = jax.device_put((np.asarray(aff.loc, dt), np.asarray(aff.scale, dt), np.asarray(aff.log_det, dt)))
        return inner, ("full" if aff.is_full else "diag"), data

    def _raw(self, inner: Flow, kind: str | None) -> LoopPrograms:
        key = (id(inner), kind)
        hit = self.families.get(key)
        if hit is None or hit[0] is not inner:
            syms = self.cfg.symmetries
            if kind is None:
                progs = build_programs(self.cfg, self.log_prob, symmetrize(inner, syms), local=self.local)
            else:
                progs = build_programs(self.cfg, self.log_prob, None, local=self.local,
                                       flow_of=lambda data: symmetrize(affine_wrapped(inner, data), syms))
            hit = self.families[key] = (inner, progs)
        return hit[1]

    def __call__(self, flow: Flow) -> LoopPrograms:
        if self.programs is None or flow is not self.flow:
            inner, kind, data = self._family(flow)
            self.flow, self.programs = flow, bind_programs(self._raw(inner, kind), data)
        return self.programs

    def wait(self, flow: Flow, name: str) -> None:
        """Wait for the background compile of ``flow``'s program ``name`` (if one was started)."""
        inner, kind, _ = self._family(flow)
        ev = self.events.get(((id(inner), kind), name))
        if ev is not None:
            self.release()
            ev.wait()

    def precompile(self, flow: Flow, num_chains: int, dtype: Any, key: PRNGKey, early: bool) -> None:
        """Start compiling in the background: ``early`` the programs that do not depend on the
        exploration's results (``flow`` the user's flow) in two threads, the training program at
        once and the global, init and local programs after :meth:`release`; else ``flow``'s
        global program unless it is compiled already."""
        cfg, log_prob = self.cfg, self.log_prob
        S = jax.ShapeDtypeStruct
        c, d, n = num_chains, flow.dim, cfg.num_local_steps
        if early:
            inner, kind = flow, _predicted_affine(cfg, num_chains, flow.dim)
            data = None if kind is None else (S((d,), dtype), S((d, d) if kind == "full" else (d,), dtype), S((), dtype))
        else:
            inner, kind, data = self._family(flow)
            if ((id(inner), kind), "global") in self.events:
                return
            data = jax.tree.map(lambda a: S(np.shape(a), a.dtype), data)
        fam = (id(inner), kind)
        raw = self._raw(inner, kind)
        events = {name: threading.Event() for name in (("train", "global") if early else ("global",))}
        self.events.update({(fam, name): ev for name, ev in events.items()})
        k = S(np.shape(key), key.dtype)
        x = S((c, d), dtype)

        def guarded(work, *names):
            def run():
                try:
                    work()
                except Exception:  # noqa: BLE001 -- only the overlap is lost; the real call compiles and raises
                    pass
                finally:
                    for name in names:
                        events[name].set()
            return run

        def train_work():
            p = jax.eval_shape(flow.init, k)
            jax.jit(flow.init).lower(k).compile()  # the exploration's initial parameters
            jax.jit(cfg.optimizer.init).lower(p).compile()  # the warm start's optimiser state
            ost = jax.eval_shape(cfg.optimizer.init, p)
            m = c * min(cfg.buffer_points_per_chain, n)
            raw.train_program.lower(data, p, ost, S((cfg.buffer_loops, m, d), dtype), S((cfg.buffer_loops,), bool),
                                    S((m, d), dtype), S((), jnp.int32), S((), bool), k).compile()

        def loop_work():
            if early:
                self.gate.wait()  # not beside the first SMC round's compile, which is on the critical path
            p = jax.eval_shape(flow.init, k)
            chains = jax.eval_shape(lambda y: local_init(cfg.local, log_prob, y), x)
            raw.global_program.lower(data, k, chains, p, S((n, c, d), dtype), S((n, c), dtype)).compile()
            events["global"].set()
            if not early:
                return
            self.init.lower(k, x, p, S((), dtype)).compile()
            ad = jax.eval_shape(lambda s: init_adaptation(cfg, dtype, s), S((), dtype))
            self.local.lower(k, chains, ad, S((), bool)).compile()
            loop_keys.lower(k, S((), jnp.int32)).compile()
            if cfg.mode_of is not None:
                s = len(range(cfg.thinning - 1, cfg.num_local_steps + cfg.num_global_steps, cfg.thinning))
                _label_fn(cfg.mode_of).lower(S((c, s, d), dtype)).compile()
            if cfg.explore_particles is None or isinstance(cfg.explore_particles, (int, np.integer)):
                raw.score_program.lower(data, p, S((_SCORE_BLOCK, d), dtype)).compile()  # the lost-region check

        works = [guarded(loop_work, "global")]
        if early:
            works.insert(0, guarded(train_work, "train"))
        for w in works:
            t = threading.Thread(target=w, name="flowsamp-precompile", daemon=True)
            t.start()
            self.threads.append(t)

    def release(self, *_: Any) -> None:
        """Let the early precompile's second thread (global, init and local programs) start:
        called after the exploration's first tempered-SMC round, whose compilation is on the
        critical path, and by :meth:`wait` / :meth:`join` at the latest. On two cores the
        training program's compile and the SMC round's take both; once the round runs, the
        second core would otherwise idle until the training program is done."""
        self.gate.set()

    def join(self) -> None:
        self.release()
        while self.threads:
            self.threads.pop().join()


def _predicted_affine(cfg: AdaptiveFlowConfig, num_chains: int, dim: int) -> str | None:
    """The kind of affine map the exploration will wrap the flow in (``None``: none, ``"full"``,
    ``"diag"``), from the options alone: :func:`~flowsamp.flows.fit_affine`'s rule (full when
    ``dim <= MAX_FULL_DIM`` and at least ``2 dim`` training particles) on the particle split of
    :func:`~flowsamp.samplers._flow_mcmc_explore.explore` (a quarter, at least the chains and
    at most half, validate). Only used to compile ahead: a wrong guess costs one compile."""
    pre = cfg.precondition
    if isinstance(pre, Affine):
        return "full" if pre.is_full else "diag"
    if not pre:
        return None
    ep = cfg.explore_particles
    n = default_num_particles(dim) if ep is None else (int(ep) if isinstance(ep, (int, np.integer)) else int(np.shape(ep)[0]))
    n_train = n - min(max(num_chains, n // 4), n // 2)
    return "full" if dim <= MAX_FULL_DIM and n_train >= 2 * dim else "diag"


WARM_START_PATIENCE_STEPS = 150
"""Early-stopping patience of the warm start, in optimiser steps (3 checks of 50 steps, as
:func:`flowsamp.train.early_stopping` with ``patience=3`` at ``chunk_size=50``)."""


def _tile(rows: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows cycling through ``rows`` (each row used equally often, to within one)."""
    return rows[np.arange(n) % rows.shape[0]]


def _warm_start(cfg: AdaptiveFlowConfig, programs: _Programs, num_chains: int, precompile: bool = True) -> Callable:
    r"""The exploration's forward-KL warm start on the run's own training program.

    The buffer is filled with the training particles (cycled), every call takes ``num_epochs``
    guarded Adam steps on minibatches of it, and the held-out NLL of the validation particles
    (cycled to one buffer slot, never stored) is measured at the start of each call; the
    parameters of the best call are kept, and it stops after
    :data:`WARM_START_PATIENCE_STEPS` steps without improvement or ``explore_fit_steps``.
    With ``precompile`` the loop's other programs compile in the background meanwhile
    (:meth:`_Programs.precompile`).
    """

    def warm(used: Flow, params: Any, train: Array, val: Array, key: PRNGKey) -> tuple[Any, int]:
        progs = programs(used)
        if precompile:
            programs.precompile(used, num_chains, jnp.asarray(train).dtype, key, early=False)
            programs.wait(used, "train")  # compiling in the background since before the exploration
        n_slot = num_chains * min(cfg.buffer_points_per_chain, cfg.num_local_steps)
        tr, va = np.asarray(train), np.asarray(val)
        dt = jnp.asarray(train).dtype
        buf = jnp.asarray(_tile(tr, cfg.buffer_loops * n_slot).reshape(cfg.buffer_loops, n_slot, -1), dt)
        fresh = jnp.asarray(_tile(va, n_slot), dt)
        filled, off, slot = np.ones((cfg.buffer_loops,), bool), np.zeros((), bool), np.zeros((), np.int32)
        opt_state = jax.jit(cfg.optimizer.init)(params)
        calls = max(1, math.ceil(cfg.explore_fit_steps / cfg.num_epochs))
        patience = max(1, math.ceil(WARM_START_PATIENCE_STEPS / cfg.num_epochs))
        best_nll, best_params, best_steps, since = math.inf, params, 0, 0
        for t in range(calls + 1):  # call t measures the parameters after t * num_epochs steps
            new_params, new_opt, _, _, _, _, nll = progs.train(params, opt_state, buf, filled, fresh, slot, off,
                                                               jax.random.fold_in(key, t))
            nll = float(nll)
            if nll < best_nll:
                best_nll, best_params, best_steps, since = nll, params, t * cfg.num_epochs, 0
            else:
                since += 1
                if since >= patience:
                    break
            params, opt_state = new_params, new_opt
        return best_params, best_steps

    return warm


def _prefill(state: AdaptiveFlowState, particles: Array) -> AdaptiveFlowState:
    """Fill every slot of the training buffer with exploration particles (cycled), so that the
    first training loops learn from draws spread over every mode found, not only from the
    chains' first steps (the chains' own draws replace them slot by slot)."""
    buf = state.buffer
    rows = _tile(np.asarray(particles), buf.shape[0] * buf.shape[1]).reshape(buf.shape)
    return state._replace(buffer=jnp.asarray(rows, buf.dtype), buffer_filled=np.ones(buf.shape[:1], bool))


_BASELINE_STREAM = 0x7FFFFFFE  # fold_in data of the baseline acceptance estimate
_CHECK_STREAM = 0x7FFFFFFD  # fold_in data of the log q check of a continuous flow


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


_LABEL_FNS: dict = {}  # id(mode_of) -> (mode_of, jitted): one program per labelling function and shape


def _label_fn(mode_of: Callable) -> Callable:
    """``jax.jit(mode_of)``, one per labelling function (the last 8 kept)."""
    hit = _LABEL_FNS.get(id(mode_of))
    if hit is None or hit[0] is not mode_of:
        if len(_LABEL_FNS) >= 8:
            _LABEL_FNS.pop(next(iter(_LABEL_FNS)))
        hit = _LABEL_FNS[id(mode_of)] = (mode_of, jax.jit(mode_of))
    return hit[1]


def _labels(cfg: AdaptiveFlowConfig, positions: Array) -> np.ndarray | None:
    """``mode_of(positions)`` as int64 on the host, jitted (an eager ``mode_of`` is a program
    per jnp operation, each compiled on its first call)."""
    if cfg.mode_of is None:
        return None
    return np.asarray(_label_fn(cfg.mode_of)(positions)).astype(np.int64)


def _loop_labels(cfg: AdaptiveFlowConfig, chunks: list) -> np.ndarray | None:
    """Mode labels ``(C, S)`` of the loops' trajectories, labelled loop by loop (every chunk has
    the loop's shape, so ``mode_of`` is compiled once per run)."""
    if cfg.mode_of is None or not chunks:
        return None
    return np.concatenate([_labels(cfg, a) for a in chunks], axis=1)


def _window_mode_labels(cfg: AdaptiveFlowConfig, window_x: list) -> np.ndarray | None:
    """Mode labels of the training window at its global-phase draws (all draws when those are
    fewer than 4): local phases repeat one mode, see :mod:`~flowsamp.samplers._flow_mcmc_stopping`."""
    labels = _loop_labels(cfg, window_x)
    if labels is None:
        return None
    mask = np.tile(stopping.global_draws(cfg.num_local_steps, cfg.num_global_steps, cfg.thinning), len(window_x))
    return labels[:, mask] if mask.sum() >= 4 else labels


def _indicator_rhat(onehot: np.ndarray) -> np.ndarray:
    r"""The rank-normalised split :math:`\hat R` of 0/1 indicators ``(C, S, k)``, as
    :func:`~flowsamp.estimators.verdict.rank_diagnostics` gives it, without ranking: the rank
    normalisation of a variable with two values is an affine map of it (two average ranks, two
    :math:`z`), the fold :math:`|x - \mathrm{median}|` of a 0/1 variable is :math:`x` or
    :math:`1 - x`, and :math:`\hat R` is invariant under affine maps, so it is numpyro's split
    :math:`\hat R` of the indicators themselves (a check costs no sort, and no ESS of the
    indicators). Indicators constant within every chain: 1 when the chains agree, ``inf`` when
    they do not (chains stuck in different modes), as in ``rank_diagnostics``."""
    from numpyro.diagnostics import split_gelman_rubin

    const = np.all(onehot == onehot[:, :1], axis=(0, 1))
    agree = np.all(onehot[:, 0] == onehot[:1, 0], axis=0)
    out = np.where(agree, 1.0, np.inf)
    if np.any(~const):
        with np.errstate(invalid="ignore", divide="ignore"):
            out[~const] = np.asarray(split_gelman_rubin(onehot[..., ~const]), dtype=float)
    return out


def _ess_and_rhat(traj: list, labels: np.ndarray | None = None, num_modes: int | None = None,
                  out: dict | None = None) -> tuple[float, float]:
    """Smallest bulk ESS and largest rank R-hat over the coordinates of the draws so far (and,
    with ``labels``, over the mode indicators, as the verdict computes them). ``out`` receives
    ``{"num_loops": len(traj), "rank": rank_diagnostics(draws)}`` for the verdict to reuse."""
    x = np.concatenate([np.asarray(a) for a in traj], axis=1)
    if x.shape[1] < 4:
        return float("nan"), float("nan")
    rd = rank_diagnostics(x)
    if out is not None:
        out.update(num_loops=len(traj), rank=rd)
    ess, rhat = rd["ess_bulk"], rd["rhat"]
    if labels is not None:
        k = int(num_modes) if num_modes is not None else int(labels.max()) + 1
        rhat = np.concatenate([rhat, _indicator_rhat((labels[..., None] == np.arange(k)).astype(float))])
    min_ess = float(np.nanmin(ess)) if not np.all(np.isnan(ess)) else float("nan")
    return min_ess, float(np.nanmax(rhat)) if not np.all(np.isnan(rhat)) else float("nan")


_COVERAGE_STREAM = 0x7FFFFFFC  # fold_in data of the lost-region check's importance draws
_SCORE_BLOCK = 1024  # rows per call of the check's score program (one shape: one compilation)


def _coverage(key: PRNGKey, cfg: AdaptiveFlowConfig, score_program: Callable, params: Any,
              exploration: Exploration, traj: list, x_host: np.ndarray, x_init: Array | None,
              diagnostics: dict) -> tuple[dict, list]:
    """The lost-region check of the verdict (:func:`flowsamp.samplers._flow_mcmc_coverage.coverage_verdict`):
    regions the exploration's particles populate where production has (far too) few draws.
    Scores are computed in blocks of :data:`_SCORE_BLOCK` rows and labels in blocks of a loop's
    trajectory (the program ``mode_of`` already has), so each is one program per run. Not run after a resume (the particles are not
    checkpointed) nor with the user's own particles (no :math:`\ln\hat Z`)."""
    from flowsamp.samplers._flow_mcmc_coverage import coverage_verdict

    if exploration.smc is None:  # the user's own particles: no log Z to weigh regions against
        return {}, []
    c, s_loop, d = np.shape(traj[0])
    dt = x_host.dtype

    def blocks(x: np.ndarray, rows: int, fn: Callable) -> list:
        n = x.shape[0]
        pad = np.concatenate([x, np.repeat(x[-1:], (-n) % rows, 0)]).astype(dt)
        return [fn(pad[i : i + rows]) for i in range(0, pad.shape[0], rows)], n

    def score(x):
        out, n = blocks(np.asarray(x), _SCORE_BLOCK, lambda b: jax.device_get(score_program(params, b)))
        lp = np.concatenate([o[0] for o in out])[:n].astype(np.float64)
        sc = np.concatenate([o[1] for o in out])[:n].astype(np.float64)
        return lp, np.where(np.isnan(sc), -np.inf, sc)  # log q = -inf at finite log p: s = +inf, uncovered

    labels = None
    if cfg.mode_of is not None:
        def labels(x):
            out, n = blocks(np.asarray(x), c * s_loop, lambda b: _labels(cfg, b.reshape(c, s_loop, d)).ravel())
            return np.concatenate(out)[:n]

    t0 = time.perf_counter()
    parts = np.concatenate([np.asarray(exploration.train), np.asarray(exploration.validation)])
    seed = int(np.asarray(jax.random.key_data(jax.random.fold_in(key, _COVERAGE_STREAM))).ravel()[-1])
    diag, problems = coverage_verdict(
        parts, float(exploration.smc.log_Z), x_host, score, seed=seed,
        min_ess_bulk=float(diagnostics.get("min_ess_bulk", float("nan"))),
        labels=labels, production_labels=None if labels is None else _loop_labels(cfg, traj),
        num_modes=cfg.num_modes, start_labels=None if labels is None or x_init is None else labels(np.asarray(x_init)),
        starts=None if x_init is None else np.asarray(x_init),
    )
    diag["coverage_wall_s"] = time.perf_counter() - t0
    return diag, problems


_PLAIN_OPTION = (int, float, bool, str, type(None))


def _checkpoint_meta(cfg: AdaptiveFlowConfig, key: PRNGKey, x0: Array, initial_state: Any) -> dict:
    """What a checkpoint must agree on to be resumed: the sampler, the key, the starting points
    (or initial state) and the plain options (a digest; callables such as ``mode_of`` cannot be
    compared and are the caller's responsibility)."""
    plain = [(f.name, repr(getattr(cfg, f.name))) for f in dataclasses.fields(cfg)
             if isinstance(getattr(cfg, f.name), _PLAIN_OPTION)]
    return {
        "sampler": "adaptive_flow_mcmc",
        "key": _ckpt.fingerprint(_ckpt.key_data(key)),
        "start": _ckpt.fingerprint(np.asarray(x0) if initial_state is None else initial_state),
        "options": hashlib.sha256(repr(plain).encode()).hexdigest()[:16],
    }


def _stack(items: list, tail: tuple, dtype: Any) -> np.ndarray:
    return np.stack([np.asarray(a) for a in items]) if items else np.zeros((0,) + tail, dtype)


def _run_tree(r: dict, state: AdaptiveFlowState, c: int, d: int, s: int) -> dict:
    """The arrays of a run's checkpoint (``r`` from the sampler; shapes fixed by C, d, S)."""
    dt = np.asarray(state.position).dtype
    aff = r["affine"]
    return {
        "state": state,
        "best_params": r["best"][1] if r["best"] is not None else state.params,
        "affine_loc": np.zeros((0,)) if aff is None else np.asarray(aff.loc, np.float64),
        "affine_scale": np.zeros((0,)) if aff is None else np.asarray(aff.scale, np.float64),
        "global_acc": np.asarray(r["global_acc"], np.float64),
        "window_lp": _stack(r["window_lp"], (c, s), dt),
        "window_x": _stack(r["window_x"], (c, s, d), dt),
        "hist": {k: (_stack(v, (c, d), dt) if k == "positions" else np.asarray(v, np.int64 if k == "phase" else np.float64))
                 for k, v in r["hist"].items()},
        "traj": _stack(r["traj"], (c, s, d), dt),
        "traj_lp": _stack(r["traj_lp"], (c, s), dt),
        "loc_acc": np.asarray(r["loc_acc"], np.float64),
        "glob_acc": np.asarray(r["glob_acc"], np.float64),
    }


def _save_run(path: Any, meta0: dict, r: dict) -> None:
    """Write the whole run ``r`` to ``path`` (atomically, with its counters in ``meta``)."""
    state = r["state"]
    c, d = state.position.shape
    s = _traj_len_of(r, state)
    tree = _run_tree(r, state, c, d, s)
    aff = r["affine"]
    meta = {**meta0, "phase": r["phase"], "num_train": r["num_train"], "stopped_by": r["stopped_by"],
            "steps": r["steps"], "check_at": r["check_at"], "num_bad": r["num_bad"], "swapped": bool(r["swapped"]),
            "has_best": r["best"] is not None, "best_acc": None if r["best"] is None else float(r["best"][0]),
            "affine": "none" if aff is None else ("full" if aff.is_full else "diag"),
            "n_hist": len(r["hist"]["phase"]), "n_window_lp": len(r["window_lp"]), "n_window_x": len(r["window_x"]),
            "n_traj": len(r["traj"]), "traj_len": s, "explore_smc_steps": r["explore_smc_steps"],
            "explore_wall_s": r["explore_wall_s"]}
    _io.save(path, tree, meta=meta)


def _traj_len_of(r: dict, state: AdaptiveFlowState) -> int:
    for k in ("traj_lp", "window_lp"):
        if r[k]:
            return int(np.shape(r[k][0])[1])
    return 0


def _load_run(path: Any, meta0: dict, cfg: AdaptiveFlowConfig, log_prob: LogProbFn, flow: Flow, x: Array,
              params: Any, initial_state: Any) -> dict:
    """Read a run written by :func:`_save_run` (the template is built from its ``meta``)."""
    meta = _io.read_meta(path, meta0)
    c, d = x.shape
    if meta["affine"] == "none":
        affine = None
    else:
        shape = (d, d) if meta["affine"] == "full" else (d,)
        affine = Affine(np.zeros((d,)), np.eye(d) if meta["affine"] == "full" else np.ones(shape))
    used = flow if affine is None else preconditioned(flow, affine)
    like_state = initial_state if initial_state is not None else init_state(
        jax.random.key(0), log_prob, used, x, dataclasses.replace(cfg, step_size=0.1), params)
    s = int(meta["traj_len"])
    dt = np.asarray(like_state.position).dtype
    fake = {
        "best": (0.0, like_state.params) if meta["has_best"] else None, "affine": affine,
        "global_acc": [0.0] * meta["num_train"], "window_lp": [np.zeros((c, s), dt)] * meta["n_window_lp"],
        "window_x": [np.zeros((c, s, d), dt)] * meta["n_window_x"],
        "hist": {k: ([np.zeros((c, d), dt)] if k == "positions" else [0.0]) * meta["n_hist"]
                 for k in ("phase", *LoopStats._fields, "positions", "wall_s")} | {"phase": [0] * meta["n_hist"]},
        "traj": [np.zeros((c, s, d), dt)] * meta["n_traj"], "traj_lp": [np.zeros((c, s), dt)] * meta["n_traj"],
        "loc_acc": [0.0] * meta["n_traj"], "glob_acc": [0.0] * meta["n_traj"],
    }
    tree = _io.load(path, _run_tree(fake, like_state, c, d, s), meta0)
    if affine is not None:
        affine = Affine(np.asarray(tree["affine_loc"], np.float64), np.asarray(tree["affine_scale"], np.float64))
        used = preconditioned(flow, affine)
    hist = {k: ([np.asarray(a) for a in v] if k == "positions" else
                [int(a) if k == "phase" else float(a) for a in np.asarray(v)]) for k, v in tree["hist"].items()}
    return {
        "flow": used, "affine": affine, "state": tree["state"],
        "best": (meta["best_acc"], tree["best_params"]) if meta["has_best"] else None,
        "global_acc": [float(a) for a in np.asarray(tree["global_acc"])],
        "window_lp": list(tree["window_lp"]), "window_x": list(tree["window_x"]), "hist": hist,
        "traj": list(tree["traj"]), "traj_lp": list(tree["traj_lp"]),
        "loc_acc": [float(a) for a in np.asarray(tree["loc_acc"])],
        "glob_acc": [float(a) for a in np.asarray(tree["glob_acc"])],
        "num_train": meta["num_train"], "stopped_by": meta["stopped_by"], "steps": meta["steps"],
        "check_at": meta["check_at"], "num_bad": meta["num_bad"], "swapped": meta["swapped"], "phase": meta["phase"],
        "explore_smc_steps": meta["explore_smc_steps"], "explore_wall_s": meta["explore_wall_s"],
        "explored": meta["explore_wall_s"] is not None,
    }


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
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    precompile: bool = True,
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
        Show a tqdm progress bar of the loops (process 0 only) with the local and global
        (flow) acceptance of the last loop and, in production, the minimum bulk ESS of the
        production draws so far (over all chains; not shown when they are split over processes).
    precompile
        Compile the loop's programs in a background thread while the exploration runs
        (tracing ``log_prob`` there). Pass ``False`` when ``log_prob`` is not safe to trace
        from two threads at once, e.g. numpyro's ``potential_energy``, whose effect-handler
        stack is global (:class:`flowsamp.numpyro.Kernel` does). Ignored with ``devices``.
    checkpoint_path
        If given, the whole run (state, best flow, training window, history, production draws,
        the exploration's affine map and the counters) is saved there atomically (msgpack,
        ``fs.io.save`` with ``meta``) every ``checkpoint_every`` loops.
    checkpoint_every
        Loops between checkpoints (default 1; needs ``checkpoint_path``).
    resume
        Continue from ``checkpoint_path`` when that file exists (no exploration is run again):
        the result is bit-identical to the uninterrupted run with the same key, options and
        starting points (a file from another run is refused with a ``ValueError`` naming the
        differing ``meta`` key). Without the file, the run starts and writes it.
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

    Raises
    ------
    InexactLogQError
        When ``flow`` is a :class:`~flowsamp.flows.ContinuousFlow` whose :math:`\log q` fails
        :func:`flowsamp.flows.check_log_q` (checked once, before the first global step): an ODE
        solve too coarse for an exact MH ratio.
    """
    t0 = time.perf_counter()
    user_flow = flow
    cfg = make_config(**options)
    if cfg.precondition is None:  # given params already sit in the target's coordinates
        cfg = dataclasses.replace(cfg, precondition=params is None and initial_state is None)
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a flowsamp Flow, got {type(flow).__name__}")
    if not callable(log_prob):
        raise TypeError(f"log_prob must be callable, got {type(log_prob).__name__}")
    th = cfg.thresholds if cfg.thresholds is not None else Thresholds()
    key = as_key(key)
    _ckpt.check_options("adaptive_flow_mcmc", checkpoint_path, checkpoint_every, resume, "loops")
    every = 1 if checkpoint_every is None else int(checkpoint_every)
    programs = _Programs(cfg, log_prob, flow)
    exploration, x_init, restored = None, None, None
    meta0 = _checkpoint_meta(cfg, key, initial_positions, initial_state) if checkpoint_path is not None else None
    if _ckpt.should_resume(checkpoint_path, resume):
        x_init = _check_positions(initial_positions, flow.dim)
        programs.dtype = x_init.dtype
        restored = _load_run(checkpoint_path, meta0, cfg, log_prob, flow, x_init, params, initial_state)
        flow, state = restored["flow"], restored["state"]
    elif initial_state is None:
        x_init = _check_positions(initial_positions, flow.dim)
        programs.dtype = x_init.dtype  # the affine map enters the programs as data of the chains' dtype
        x_start = x_init
        affine = None
        if cfg.explore:
            background = precompile and devices is None
            if background:
                programs.precompile(flow, x_init.shape[0], x_init.dtype, key, early=True)
            exploration = _explore(key, log_prob, flow, x_init, params, cfg,
                                   warm_start=_warm_start(cfg, programs, x_init.shape[0], precompile=background),
                                   on_round=programs.release)
            flow, params, x_start = exploration.flow, exploration.params, exploration.seeds
            affine = exploration.affine
        elif isinstance(cfg.precondition, Affine):
            flow = preconditioned(flow, cfg.precondition)
            affine = cfg.precondition
        if cfg.step_size is None:
            cfg = dataclasses.replace(cfg, step_size=default_step_size(affine, flow.dim, cfg.local))
        programs.join()
        state = _init_with(programs.init, key, flow, x_start, cfg, params)
        if exploration is not None:
            state = _prefill(state, exploration.train)
    else:
        if not isinstance(initial_state, AdaptiveFlowState):
            raise TypeError("initial_state must be an AdaptiveFlowState")
        state = initial_state
        programs.dtype = state.position.dtype
    if devices is not None:
        state = _place(state, devices)
    affine_used = exploration.affine if exploration is not None else (
        cfg.precondition if isinstance(cfg.precondition, Affine) and initial_state is None else None)
    if restored is not None:
        affine_used = restored["affine"]
    q_sym = symmetrize(flow, cfg.symmetries)
    progs = programs(flow)
    loop = progs.loop
    on, off = np.ones((), bool), np.zeros((), bool)

    fields = ("phase", *LoopStats._fields, "positions", "wall_s")
    hist: dict[str, list] = {k: [] for k in fields}
    bar = ProgressBar(progress, cfg.max_training_loops + cfg.num_production_loops, "training", "loop")

    def record(phase: str, stats: LoopStats, st: AdaptiveFlowState) -> dict:
        host = {k: float(v) for k, v in zip(LoopStats._fields, jax.device_get(tuple(stats)))}
        hist["phase"].append(0 if phase == "training" else 1)
        for k, v in host.items():
            hist[k].append(v)
        hist["positions"].append(np.asarray(st.position))
        hist["wall_s"].append(time.perf_counter() - t0)
        if bar:
            ess = None
            if phase == "production":  # bulk ESS of the production draws so far (at most every 2 s)
                ess = bar.every("ess", 2.0, lambda: min_bulk_ess(np.concatenate(jax.device_get(traj), axis=1))
                                if all(map(readable, traj)) else None)
            bar.update(1, local=host["local_acceptance"], glob=host["global_acceptance"], min_ess=ess)
        if callback is not None:
            callback(len(hist["phase"]) - 1, phase, host, st)
        if checkpoint_path is not None and len(hist["phase"]) % every == 0:
            save_run(phase)
        return host

    # training: until the flow's acceptance plateaus AND the chains mix (or max_training_loops).
    # The best flow so far by measured global acceptance is kept (baseline: the exploration's
    # warm-started affine flow, estimated on held-out particles): training on slowly moving
    # chains can make the flow worse, and production must never use a worse proposal.
    num_train, stopped_by = 0, "max_training_loops"
    best = None
    global_acc: list[float] = []
    window_lp: list = []
    window_x: list = []
    traj, traj_lp, loc_acc, glob_acc = [], [], [], []
    steps, check_at, num_bad, by_budget, swapped = 0, 0, 0, False, False
    phase_done = "none"

    def save_run(phase: str) -> None:
        _save_run(checkpoint_path, meta0, dict(
            phase=phase, state=state_ref[0], best=best, affine=affine_used, global_acc=global_acc, window_lp=window_lp,
            window_x=window_x, hist=hist, traj=traj, traj_lp=traj_lp, loc_acc=loc_acc, glob_acc=glob_acc,
            num_train=num_train, stopped_by=stopped_by, steps=steps, check_at=check_at, num_bad=num_bad,
            swapped=swapped, explore_smc_steps=explore_smc_steps, explore_wall_s=explore_wall_s))

    state_ref = [state]
    explore_smc_steps = None if exploration is None or exploration.smc is None else exploration.smc.num_steps
    explore_wall_s = None if exploration is None else exploration.wall_s
    if restored is not None:
        r = restored
        best, global_acc, window_lp, window_x = r["best"], r["global_acc"], r["window_lp"], r["window_x"]
        for k in hist:
            hist[k] = r["hist"][k]
        traj, traj_lp, loc_acc, glob_acc = r["traj"], r["traj_lp"], r["loc_acc"], r["glob_acc"]
        num_train, stopped_by, steps, check_at = r["num_train"], r["stopped_by"], r["steps"], r["check_at"]
        num_bad, swapped, phase_done = r["num_bad"], r["swapped"], r["phase"]
        explore_smc_steps, explore_wall_s = r["explore_smc_steps"], r["explore_wall_s"]
    if isinstance(user_flow, ContinuousFlow) and not bool(state.training_done):
        # an ODE flow's log q is only as exact as its solve: check it once before the MH test uses it
        check_log_q(q_sym, state.params, jax.random.fold_in(key, _CHECK_STREAM), what="adaptive_flow_mcmc's flow")
    if exploration is not None and not bool(state.training_done):
        # the exploration flow's acceptance: one global phase from the chains' start (held-out
        # particles), on the loop's own global program; the state is not advanced
        tx0 = np.zeros((cfg.num_local_steps,) + state.position.shape, state.position.dtype)  # the loop's shapes
        base_acc = float(progs.global_(jax.random.fold_in(key, _BASELINE_STREAM), state.local, state.params,
                                       tx0, tx0[..., 0])[4])
        best = (base_acc, state.params)
    while not bool(state.training_done) and int(state.loop) < cfg.max_training_loops:
        state, stats, tx, tlp = loop(state, key, on)
        state_ref[0] = state
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
            labels = _window_mode_labels(cfg, window_x)
            done = stopping.mixing(lp_w, labels, cfg.num_modes, th, rhat=stopping.TRAINING_RHAT).ok
            if done:
                stopped_by = "converged"
        if done or int(state.loop) >= cfg.max_training_loops:
            state = _done(state, devices is not None)
            state_ref[0] = state
        record("training", stats, state)
    if not bool(state.training_done):
        state = _done(state, devices is not None)
    last_acc = global_acc[-1] if global_acc else (best[0] if best is not None else float("nan"))
    if phase_done != "production":  # the swap happens once, between the phases
        swapped = best is not None and _worse_beyond_noise(best[0], last_acc, state.position.shape[0])
    if swapped and phase_done != "production":
        state = state._replace(
            params=best[1],
            flow_imh=state.flow_imh._replace(
                log_q=jax.jit(q_sym.log_prob)(best[1], state.flow_imh.position).astype(state.flow_imh.log_q.dtype)
            ),
        )
    bar.phase("production", num_train + cfg.num_production_loops)

    # production: at least num_production_loops, then until min bulk ESS >= target_ess and
    # max R-hat <= thresholds.rhat, or max_steps
    steps_per_loop = cfg.num_local_steps + cfg.num_global_steps
    state_ref[0] = state
    last_rank: dict = {}  # the stopping rule's last rank diagnostics, reused by the verdict
    while True:
        if len(traj) >= cfg.num_production_loops:
            if cfg.target_ess is None:
                break
            if steps >= cfg.max_steps:
                by_budget = True
                break
            if steps >= check_at and traj:
                traj_labels = _loop_labels(cfg, traj)
                min_ess, max_rhat = _ess_and_rhat(traj, traj_labels, cfg.num_modes, out=last_rank)
                if stopping.production_done(min_ess, steps, target_ess=cfg.target_ess, max_steps=cfg.max_steps) and (
                    max_rhat <= th.rhat
                ):
                    break
                check_at = stopping.next_check(steps, steps_per_loop, min_ess, cfg.target_ess, max_rhat, th.rhat)
        elif cfg.target_ess is not None and steps >= cfg.max_steps:
            by_budget = True
            break
        state, stats, tx, tlp = loop(state, key, off)
        state_ref[0] = state
        traj.append(tx)
        traj_lp.append(tlp)
        steps += steps_per_loop
        host = {k: float(v) for k, v in zip(LoopStats._fields, jax.device_get(tuple(stats)))}
        loc_acc.append(host["local_acceptance"])
        glob_acc.append(host["global_acceptance"])
        num_bad += int(host["num_local_nonfinite"] + host["num_global_nonfinite"])
        record("production", stats, state)
    bar.close()
    if traj and devices is None:  # joined on the host: a concatenate of n arrays is a program per n
        positions = jnp.asarray(np.concatenate(jax.device_get(traj), axis=1))
        log_probs = jnp.asarray(np.concatenate(jax.device_get(traj_lp), axis=1))
    elif traj:
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
            mode_labels=_loop_labels(cfg, traj), num_modes=cfg.num_modes, thresholds=th,
            rank=last_rank.get("rank") if last_rank.get("num_loops") == len(traj) else None,
        )
        diagnostics, problems = dict(verdict.diagnostics), list(verdict.problems)
    else:
        diagnostics, problems = {}, [f"only {x_host.shape[1]} production draws per chain: no verdict"]
    if by_budget and not diagnostics.get("min_ess_bulk", 0.0) >= cfg.target_ess:
        problems.append(stopping.budget_problem(diagnostics.get("min_ess_bulk", float("nan")), cfg.target_ess, cfg.max_steps))
    explored = exploration is not None or (restored is not None and restored["explored"])
    if not explored and x_init is not None and x_host.shape[1] >= 2:
        clustered = stopping.clustered_start_problem(np.asarray(x_init), x_host.reshape(-1, x_host.shape[-1]).std(0))
        if clustered is not None:
            problems.append(clustered)
    if exploration is not None:
        problems.extend(exploration.problems)
        diagnostics["notes"] = list(getattr(exploration, "notes", ()))
        if x_host.shape[1] >= 4:
            cov_diag, cov_problems = _coverage(key, cfg, progs.score, state.params, exploration, traj, x_host,
                                               x_init, diagnostics)
            diagnostics.update(cov_diag)
            problems.extend(cov_problems)
    diagnostics.update(
        training_stopped_by=stopped_by, num_production_steps=steps,
        best_training_global_acceptance=None if best is None else float(best[0]), used_best_flow=bool(swapped), target_ess=cfg.target_ess,
        explore_smc_steps=explore_smc_steps, explore_wall_s=explore_wall_s,
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
