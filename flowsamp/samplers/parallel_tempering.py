r"""Non-reversible parallel tempering (replica exchange) with an adapted ladder, and ln Z.

Each chain is one ensemble of ``N`` replicas on the path

.. math::

    \pi_\beta(x) \propto r(x)^{1-\beta}\, p(x)^{\beta}, \qquad
    0 = \beta_0 < \beta_1 < \dots < \beta_{N-1} = 1,

from a normalised *reference* :math:`r` to the target :math:`p`. By default :math:`r` is the
over-dispersed diagonal Gaussian of the adaptive flow sampler's exploration, centred on the mean
of the initial positions with per-coordinate sd :math:`s_i = 5\max(1, \mathrm{sd}_i(x_0))`
(:func:`flowsamp.samplers._flow_mcmc_explore.default_base_scale`: over-dispersed relative to
the posterior, Gelman & Rubin 1992, in the unit scale of unconstrained parameters), so that
chains started in one mode still have a hot end that reaches the others; any target or flow
proposal otherwise. Measured (16 chains started within 0.1 of one mode, defaults, 2 seeds
each, generated Dirichlet-weighted mixtures): with the reference fitted to the starts' own
spread the largest mode-weight error was 0.42-0.85 (only the start mode seen, every run
flagged); with this one 0.009-0.022 on 3 modes in 2-D 12 apart, 0.12-0.16 on 2 modes in 16-D,
0.22-0.45 on 4-5 modes in 5-8-D (still flagged: more scans are needed). A scan draws rung 0
exactly from :math:`r`, moves every other rung with ``num_local_steps`` transitions of any
:mod:`flowsamp.kernels` kernel (MALA by default, one step size per rung adapted by
:func:`flowsamp.kernels.adaptation.robbins_monro` during warm-up), optionally makes an
independence move from a flow at every rung (:func:`flowsamp.kernels.flow_imh.imh_test`), then
swaps neighbours with the deterministic even-odd scheme. Because rung 0 is exact, a replica that
reaches it is refreshed: the ensemble crosses barriers by travelling up and down the ladder.

Warm-up runs in rounds of doubling length (2, 4, 8, ... scans); after each round the ladder is
re-spaced to equalise the swap rejection rates (Syed et al. 2022, :mod:`._pt_ladder`) and, when
``num_temperatures`` is not fixed, grown to :math:`N \approx 2\hat\Lambda + 2` rungs
(:math:`\hat\Lambda` the estimated global communication barrier). The evidence comes from the
production draws at every rung by stepping stone (``log_Z``) and thermodynamic integration
(``log_Z_ti``), with batch-means standard errors.

References: Swendsen & Wang, PRL 57, 2607 (1986); Geyer (1991); Syed, Bouchard-Côté,
Deligiannidis & Doucet, JRSS B 84, 321 (2022), arXiv:1905.02939; Xie, Lewis, Fan, Kuo & Chen,
Syst. Biol. 60, 150 (2011).
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp import parallel
from flowsamp._progress import ProgressBar, min_bulk_ess, readable
from flowsamp.base import Proposal, as_key, check_finite_positions
from flowsamp.estimators.verdict import Thresholds, mcmc_verdict, warn_if_not_converged
from flowsamp.kernels.adaptation import TARGET_ACCEPTANCE
from flowsamp.kernels.mala import mala as _mala
from flowsamp.samplers import _checkpoint as _ckpt
from flowsamp.samplers import _pt_checkpoint as _pt_ckpt
from flowsamp.samplers._flow_mcmc_explore import default_base_scale
from flowsamp.samplers._pt_ladder import LadderState, initial_ladder, ladder_adaptation, log_evidence_ladder
from flowsamp.samplers._pt_scan import PTCarry, PTConfig, init_carry, scan_step
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["ParallelTemperingResult", "parallel_tempering"]


class ParallelTemperingResult(NamedTuple):
    r"""Result of :func:`parallel_tempering`.

    ``positions`` (chains, steps, dim): the production draws at :math:`\beta = 1`;
    ``log_Z``, ``log_Z_se``: stepping-stone :math:`\ln\hat Z` and its batch-means SE;
    ``log_Z_ti``, ``log_Z_ti_se``: thermodynamic integration (trapezoid, biased by the
    discretisation; reported for comparison); ``betas`` the final ladder; ``step_sizes`` per
    rung; ``swap_rates`` the mean swap acceptance of each adjacent pair in production;
    ``local_acceptance`` per rung; ``barrier`` :math:`\hat\Lambda = \sum_k (1 - \text{swap}_k)`;
    ``round_trips`` (reference -> target -> reference, all chains, production) and
    ``round_trip_rate`` per chain and scan (optimum :math:`1/(2 + 2\Lambda)`); ``flow_acceptance``
    per rung (zeros without a flow move); ``wall_s`` compile included; ``diagnostics``,
    ``converged``, ``problems`` of :func:`flowsamp.estimators.mcmc_verdict` plus the PT checks
    (no round trip, a swap rate below ``thresholds.min_acceptance``).
    """

    positions: Array
    log_Z: float
    log_Z_se: float
    log_Z_ti: float
    log_Z_ti_se: float
    betas: np.ndarray
    step_sizes: np.ndarray
    swap_rates: np.ndarray
    local_acceptance: np.ndarray
    flow_acceptance: np.ndarray
    barrier: float
    round_trips: int
    round_trip_rate: float
    wall_s: float
    diagnostics: dict
    converged: bool
    problems: list


@functools.lru_cache(maxsize=64)
def _diag_gaussian(mean: bytes, sd: bytes) -> "_DiagGaussian":
    """One instance per (mean, sd): its bound methods then hit the jit caches on a repeated call."""
    return _DiagGaussian(np.frombuffer(mean), np.frombuffer(sd))


class _DiagGaussian:
    """Normalised :math:`N(m, \\mathrm{diag}(s^2))`, hashed by value (a stable jit cache key)."""

    def __init__(self, mean: np.ndarray, sd: np.ndarray) -> None:
        self.mean, self.sd = np.asarray(mean, np.float64), np.asarray(sd, np.float64)
        self._key = (self.mean.tobytes(), self.sd.tobytes())

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _DiagGaussian) and self._key == other._key

    def log_prob(self, x: Array) -> Array:
        m, s = jnp.asarray(self.mean, x.dtype), jnp.asarray(self.sd, x.dtype)
        z = (x - m) / s
        return -0.5 * jnp.sum(z * z) - jnp.sum(jnp.log(s)) - 0.5 * x.shape[-1] * math.log(2 * math.pi)

    def sample(self, key: PRNGKey, n: int) -> Array:
        dt = jnp.result_type(float)
        z = jax.random.normal(key, (n, self.mean.shape[0]), dt)
        return jnp.asarray(self.mean, dt) + jnp.asarray(self.sd, dt) * z


class _ProposalSampler:
    """``sample(key, n)`` of a :class:`flowsamp.base.Proposal`, hashed by the proposal's identity."""

    def __init__(self, proposal: Proposal) -> None:
        self.proposal = proposal

    def __hash__(self) -> int:
        return id(self.proposal)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _ProposalSampler) and other.proposal is self.proposal

    def __call__(self, key: PRNGKey, n: int) -> Array:
        return jax.vmap(self.proposal.sample_and_log_prob)(jax.random.split(key, n))[0]


def _reference(reference: Any, x0: np.ndarray):
    """(log_prob, sample, log_Z_ref, scale) of the reference."""
    if reference is None:
        if x0.shape[0] < 2:
            raise ValueError("parallel_tempering: the default reference is centred on the initial positions' "
                             "spread; pass at least 2 chains or a `reference`")
        sd = default_base_scale(x0)
        ref = _diag_gaussian(np.asarray(x0.mean(axis=0), np.float64).tobytes(), np.asarray(sd, np.float64).tobytes())
        return ref.log_prob, ref.sample, 0.0, float(sd.min())
    if isinstance(reference, Proposal):
        return reference.log_prob, _ProposalSampler(reference), 0.0, float(max(x0.std(axis=0).min(), 1e-3))
    if not (callable(getattr(reference, "log_prob", None)) and callable(getattr(reference, "sample", None))):
        raise TypeError("parallel_tempering: `reference` must have log_prob(x) and sample(key, n), or be a "
                        f"flowsamp Proposal; got {type(reference).__name__}")
    log_Z = getattr(reference, "log_Z", 0.0)
    if log_Z is None:
        raise ValueError("parallel_tempering: the reference's log_Z is None; ln Z needs a normalised reference")
    scale = float(np.sqrt(np.min(np.diag(np.atleast_2d(reference.cov))))) if hasattr(reference, "cov") else \
        float(max(x0.std(axis=0).min(), 1e-3))
    return reference.log_prob, reference.sample, float(log_Z), scale


def _initial_step(name: str, scale: float, dim: int) -> float:
    """Optimal-scaling starting points: MALA :math:`s^2 d^{-1/3}`, HMC :math:`s d^{-1/4}`,
    RWMH :math:`2.38 s/\\sqrt d` (Roberts & Rosenthal 2001; Beskos et al. 2013)."""
    if name == "mala":
        return scale**2 * dim ** (-1 / 3)
    if name == "rwmh":
        return 2.38 * scale / math.sqrt(dim)
    return scale * dim ** (-0.25)


def _state_kind(kernel, kernel_kwargs, x: Array, log_prob: LogProbFn) -> str:
    shape = jax.eval_shape(lambda y: kernel(log_prob, 0.1, **kernel_kwargs).init(y), x)
    fields = getattr(shape, "_fields", ())
    if fields == ("position", "log_prob", "grad"):
        return "grad"
    if fields == ("position", "log_prob"):
        return "value"
    return "init"


def _per_chain(cfg: PTConfig, num_steps: int):
    """``run(chain_key, carry, betas, start, num_scans, adapt, bufs, offset)`` of one ensemble (vmapped
    over chains).

    One program serves warm-up (``adapt`` true: sums of the swap/local acceptance) and production
    (the record of scan ``i`` written to slot ``offset + i`` of the ``num_steps`` slots of ``bufs``,
    so production may run in chunks): one compilation per ladder size.
    """

    def run(chain_key, carry, betas, start, num_scans, adapt, bufs, offset):
        n = carry.x.shape[0]
        dt = carry.x.dtype
        zero = (jnp.zeros((n - 1,), dt), jnp.zeros((n,), dt), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

        def body(i, c):
            carry, (sw, acc, bad, div), bufs = c
            t = start + i
            carry, rec = scan_step(cfg, carry, jax.random.fold_in(chain_key, t), t, betas, adapt)
            j = (offset + i) % num_steps
            bufs = jax.tree.map(lambda b, r: jax.lax.dynamic_update_index_in_dim(b, r, j, 0), bufs, rec)
            return carry, (sw + rec["swap_rate"], acc + rec["local_acceptance"],
                           bad + rec["num_nonfinite"], div + rec["num_divergent"]), bufs

        return jax.lax.fori_loop(0, num_scans, body, (carry, zero, bufs))

    return run


@functools.lru_cache(maxsize=32)
def _programs(cfg: PTConfig, num_steps: int, mesh: Any):
    run_v = jax.vmap(_per_chain(cfg, num_steps), in_axes=(0, 0, None, None, None, None, 0, None))
    if mesh is not None:
        C, R = parallel.CHAINS, parallel.REPLICATED
        run_v = parallel.shard_chains(run_v, mesh, in_specs=(C, C, R, R, R, R, C, R))
    init_v = jax.vmap(lambda x, e: init_carry(cfg, jnp.broadcast_to(x, (e.shape[0],) + x.shape[-1:]), e))
    return jax.jit(init_v), jax.jit(run_v)


def _empty_records(cfg: PTConfig, carry: PTCarry, betas: Array, num_steps: int) -> dict:
    """Zero record buffers ``(chains, num_steps, ...)`` for the production scans."""
    one = jax.tree.map(lambda a: a[0], carry)
    shape = jax.eval_shape(lambda c: scan_step(cfg, c, jax.random.key(0), 0, betas, False)[1], one)
    c = carry.x.shape[0]
    return jax.tree.map(lambda a: jnp.zeros((c, num_steps) + a.shape, a.dtype), shape)


_evidence = jax.jit(log_evidence_ladder, static_argnames=("num_blocks",))


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"parallel_tempering: `{name}` must be an int >= {lo}, got {v!r}")
    return int(v)


def _remap(carry: PTCarry, old: np.ndarray, new: np.ndarray) -> PTCarry:
    """Carry for a new ladder: rung j takes the replica of the old rung with the nearest beta."""
    src = jnp.asarray(np.abs(new[:, None] - old[None, :]).argmin(axis=1))
    take = lambda a: a[:, src]  # noqa: E731
    n = new.shape[0]
    c = carry.x.shape[0]
    return PTCarry(take(carry.x), take(carry.lp), take(carry.gp), take(carry.lr), take(carry.gr),
                   jnp.broadcast_to(jnp.arange(n), (c, n)), jnp.full((c, n), -1), carry.round_trips,
                   take(carry.log_eps))


def _show_production(bar: ProgressBar, m: int, sums: list, carry: PTCarry, bufs: dict, done: int,
                     num_chains: int) -> None:
    """The bar after a production piece: swap and local (β = 1) acceptance over the production
    scans of this call, round trips, and the minimum bulk ESS of the β = 1 draws (at most every 2 s).

    ``sums`` holds the swap and local acceptance summed over chains and scans, and the scans."""
    sw, acc = (v / (sums[2] * num_chains) for v in sums[:2])
    x = bufs["x_top"]
    ess = bar.every("ess", 2.0, lambda: min_bulk_ess(np.asarray(x)[:, :done]) if readable(x) else None)
    bar.update(m, swap=float(np.min(sw)), acc=float(acc[-1]), trips=int(np.sum(np.asarray(carry.round_trips))),
               min_ess=ess)


def parallel_tempering(
    key: PRNGKey,
    log_prob: LogProbFn,
    initial_positions: Array,
    num_steps: int = 2000,
    *,
    num_warmup: int = 1000,
    num_temperatures: int | None = None,
    max_temperatures: int = 64,
    betas: Sequence[float] | None = None,
    adapt_ladder: bool = True,
    reference: Any = None,
    kernel: Any = None,
    kernel_kwargs: dict | None = None,
    step_size: float | None = None,
    target_acceptance: float | None = None,
    num_local_steps: int = 1,
    adapt_rate: float = 0.05,
    flow: Proposal | None = None,
    flow_rungs: str = "all",
    mode_of: Any = None,
    num_modes: int | None = None,
    num_blocks: int | None = None,
    thresholds: Thresholds | None = None,
    warn: bool = True,
    devices: Sequence[jax.Device] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = False,
) -> ParallelTemperingResult:
    r"""Sample ``log_prob`` by non-reversible parallel tempering and estimate :math:`\ln Z` (module docs).

    Parameters
    ----------
    key
        PRNG key (any ``impl``) or int. Chain ``c`` uses ``split(key, C)[c]`` folded with the
        scan index: ``devices=`` runs give the same numbers.
    log_prob
        Unnormalised log-density of one point ``(dim,)`` (differentiable for MALA/HMC).
    initial_positions
        ``(chains, dim)``: every rung of chain ``c`` starts there; or ``(chains, N, dim)``, one
        start per rung (e.g. exact draws of every :math:`\pi_\beta`). Each chain is an
        independent ensemble; the default reference is centred on the ``(chains, dim)`` starts
        (at :math:`\beta = 1` for the 3-D form) and over-dispersed relative to them.
    num_steps
        Production scans (draws per chain at :math:`\beta = 1`).
    num_warmup
        Warm-up scans (rounds of doubling length; ladder and step sizes adapted).
    num_temperatures
        Rungs ``N`` including :math:`\beta_0 = 0`. ``None``: start at
        :math:`\max(10, \lceil 2\sqrt d\rceil)` (the barrier of a d-dimensional path grows like
        :math:`\sqrt d`) and grow to :math:`\lceil 2\hat\Lambda\rceil + 2` up to ``max_temperatures``.
    betas
        Initial ladder (increasing from 0 to 1); default geometric (:func:`._pt_ladder.initial_ladder`).
    adapt_ladder
        Re-space the ladder after every warm-up round to equalise the swap rates.
    reference
        The normalised :math:`r` at :math:`\beta = 0`: ``None`` (diagonal Gaussian with the mean of
        ``initial_positions`` and sd ``5 max(1, sd)`` of theirs, module docstring), an object with
        ``log_prob`` and ``sample(key, n)`` (a flowsamp target: its ``log_Z`` is added) or a :class:`flowsamp.base.Proposal` (a flow).
    kernel, kernel_kwargs
        Local move: a :mod:`flowsamp.kernels` constructor called as
        ``kernel(log_pi, step, **kernel_kwargs)`` (default ``fs.kernels.mala``; e.g.
        ``fs.kernels.hmc`` with ``{"num_integration_steps": 10}``, ``fs.kernels.rwmh``).
    step_size, target_acceptance
        Initial local step (default from the reference scale by optimal scaling) and the target
        acceptance (default :data:`flowsamp.kernels.TARGET_ACCEPTANCE` of the kernel's name).
    num_local_steps
        Local transitions per scan and rung (1, as in Syed et al.).
    adapt_rate
        Robbins-Monro rate of the per-rung log step size during warm-up (pooled over chains
        after each round).
    flow, flow_rungs
        A :class:`flowsamp.base.Proposal` (``fs.flows.proposal(flow, params)``): ``"all"`` adds an
        independence move from it at every rung :math:`\beta > 0`; ``"hottest"`` makes it the
        reference (exact draws at :math:`\beta = 0`).
    mode_of, num_modes
        Mode labelling of the :math:`\beta = 1` draws for the verdict (e.g. ``target.mode_of``).
    num_blocks
        Batch-means blocks per chain for the ln Z standard errors (default ``ceil(20 / chains)``).
    thresholds, warn
        Verdict thresholds; issue :class:`flowsamp.NotConvergedWarning` when not converged.
    devices
        Shard the chains over these devices (``jax.shard_map``); same numbers as one device.
    checkpoint_path, checkpoint_every, resume
        Write the run's state atomically (:func:`flowsamp.io.save`) to ``checkpoint_path`` after
        every warm-up round that ends ``checkpoint_every`` scans (default ``num_steps // 10``) or
        more after the last save, and every ``checkpoint_every`` production scans. With
        ``resume=True`` and an existing file the run continues from it and returns the same
        numbers as an uninterrupted run with the same key (``wall_s`` apart); a checkpoint of
        another run (options, key, starts, target) raises a ``ValueError`` naming the key.
    progress
        Show a tqdm progress bar of the scans (process 0 only, figures over all chains): the
        smallest swap acceptance over neighbouring rungs and the local acceptance at
        :math:`\beta = 1` (of the last warm-up round, or of production so far), the number of
        rungs, and in production the round trips and the minimum bulk ESS of the
        :math:`\beta = 1` draws so far. Production then runs in pieces of ``checkpoint_every``
        scans (default ``num_steps // 20``); the numbers are the same as without it.

    Returns
    -------
    ParallelTemperingResult
    """
    t_start = time.perf_counter()
    key = as_key(key)
    if not callable(log_prob):
        raise TypeError("parallel_tempering: `log_prob` must be callable")
    _ckpt.check_options("parallel_tempering", checkpoint_path, checkpoint_every, resume, "scans")
    x_init = np.asarray(initial_positions)
    if x_init.ndim not in (2, 3):
        raise ValueError("parallel_tempering: `initial_positions` must have shape (chains, dim) or "
                         f"(chains, num_temperatures, dim), got {x_init.shape}")
    check_finite_positions(x_init)
    x0 = x_init if x_init.ndim == 2 else x_init[:, -1]
    num_chains, dim = x0.shape
    num_steps = _check_int("num_steps", num_steps, 4)
    num_warmup = _check_int("num_warmup", num_warmup, 0)
    num_local_steps = _check_int("num_local_steps", num_local_steps, 1)
    max_temperatures = _check_int("max_temperatures", max_temperatures, 2)
    if flow_rungs not in ("all", "hottest"):
        raise ValueError(f"parallel_tempering: `flow_rungs` must be 'all' or 'hottest', got {flow_rungs!r}")
    if flow is not None and not isinstance(flow, Proposal):
        raise TypeError("parallel_tempering: `flow` must be a flowsamp Proposal (fs.flows.proposal(flow, params))")
    if flow is not None and flow_rungs == "hottest":
        if reference is not None:
            raise ValueError("parallel_tempering: flow_rungs='hottest' makes the flow the reference; "
                             "do not pass `reference` too")
        reference, flow = flow, None
    if not (np.isfinite(adapt_rate) and adapt_rate > 0):
        raise ValueError(f"parallel_tempering: `adapt_rate` must be positive, got {adapt_rate!r}")
    kernel = _mala if kernel is None else kernel
    name = getattr(kernel, "__name__", "")
    if target_acceptance is None:
        if name not in TARGET_ACCEPTANCE:
            raise ValueError(f"parallel_tempering: no default target acceptance for kernel {name!r}; "
                             "pass `target_acceptance`")
        target_acceptance = TARGET_ACCEPTANCE[name]
    kernel_kwargs = dict(kernel_kwargs or {})
    ref_log_prob, ref_sample, log_Z_ref, scale = _reference(reference, x0)

    if betas is not None:
        ladder = np.asarray(betas, np.float64)
        ladder_adaptation().init(ladder)  # validates
        auto_n = False
    else:
        n0 = max(10, math.ceil(2 * math.sqrt(dim))) if num_temperatures is None else \
            _check_int("num_temperatures", num_temperatures, 2)
        ladder = initial_ladder(min(n0, max_temperatures))
        auto_n = num_temperatures is None
    if x_init.ndim == 3 and x_init.shape[1] != ladder.shape[0]:
        raise ValueError(f"parallel_tempering: initial_positions has {x_init.shape[1]} rungs but the ladder has "
                         f"{ladder.shape[0]}")
    dt = jnp.result_type(float)
    x0j = jnp.asarray(x0, dt)
    state_kind = _state_kind(kernel, kernel_kwargs, x0j[0], log_prob)
    cfg = PTConfig(log_prob, ref_log_prob, ref_sample, kernel, tuple(sorted(kernel_kwargs.items())), state_kind,
                   num_local_steps, float(target_acceptance), float(adapt_rate), flow)
    eps0 = float(step_size) if step_size is not None else _initial_step(name, scale, dim)
    if not (np.isfinite(eps0) and eps0 > 0):
        raise ValueError(f"parallel_tempering: `step_size` must be positive, got {eps0!r}")

    mesh = None
    if devices is not None:
        mesh = parallel.chain_mesh(devices)
        parallel.check_divisible(num_chains, mesh)
    init_fn, run_fn = _programs(cfg, num_steps, mesh)
    chain_keys = jax.random.split(key, num_chains)

    n = ladder.shape[0]
    log_eps = jnp.full((num_chains, n), math.log(eps0), dt)
    carry = init_fn(jnp.asarray(x_init, dt), log_eps)
    adapter = ladder_adaptation()
    lstate = adapter.init(ladder)
    warm_nonfinite = 0
    done, length, prod_done, saved_at = 0, 2, 0, 0
    bufs = None
    ck = None
    if checkpoint_path is not None:
        every = int(checkpoint_every) if checkpoint_every is not None else max(1, num_steps // 10)
        ck = _pt_ckpt.PTCheckpoint(checkpoint_path, every, {
            "sampler": "parallel_tempering", "num_steps": num_steps, "num_warmup": num_warmup,
            "num_chains": int(num_chains), "dim": int(dim), "ladder": [float(b) for b in ladder],
            "auto_num_temperatures": bool(auto_n), "max_temperatures": max_temperatures,
            "adapt_ladder": bool(adapt_ladder), "kernel": name, "kernel_kwargs": repr(sorted(kernel_kwargs.items())),
            "step_size": float(eps0), "target_acceptance": float(target_acceptance),
            "num_local_steps": num_local_steps, "adapt_rate": float(adapt_rate), "flow": flow is not None,
            "dtype": str(np.dtype(dt)), "key": [int(v) for v in _ckpt.key_data(key).ravel()],
            "initial_positions": _ckpt.fingerprint(x_init),
            "target": _ckpt.fingerprint(jax.device_get(jax.vmap(log_prob)(x0j))),
            "reference": _ckpt.fingerprint(jax.device_get(jax.vmap(ref_log_prob)(x0j))),
        })
        if _ckpt.should_resume(checkpoint_path, resume):
            st = ck.load(carry, lambda c, b: _empty_records(cfg, c, jnp.asarray(b, dt), num_steps))
            carry, lstate = st["carry"], LadderState(st["betas"], st["barrier"])
            done, length, prod_done, warm_nonfinite, bufs = (st["done"], st["length"], st["prod_done"],
                                                             st["warm_nonfinite"], st["bufs"])
            saved_at = done + prod_done
            t_start -= st["elapsed"]

    def save() -> None:
        ck.save(carry, lstate, bufs, done=done, length=length, prod_done=prod_done, warm_nonfinite=warm_nonfinite,
                elapsed=time.perf_counter() - t_start)

    bar = ProgressBar(progress, num_warmup + num_steps, "pt warm-up", "scan", done + prod_done)
    wbufs = None  # scratch records of the warm-up rounds (same shapes as production: one program)
    while done < num_warmup:
        m = min(length, num_warmup - done)
        if wbufs is None or wbufs["V"].shape[-1] != carry.x.shape[1]:
            wbufs = _empty_records(cfg, carry, jnp.asarray(lstate.betas, dt), num_steps)
        carry, (sw, acc, bad, div), wbufs = run_fn(chain_keys, carry, jnp.asarray(lstate.betas, dt), done, m, True,
                                                   wbufs, 0)
        done += m
        length *= 2
        warm_nonfinite += int(np.sum(bad))
        rej = 1.0 - np.asarray(sw).sum(0) / (m * num_chains)
        if bar:
            bar.update(m, swap=float(np.min(1.0 - rej)), acc=float(np.asarray(acc)[:, -1].sum() / (m * num_chains)),
                       rungs=int(rej.shape[0] + 1))
        eps = np.exp(np.asarray(carry.log_eps, np.float64).mean(axis=0))  # geometric mean over chains
        eps[0] = eps[1]
        old = np.asarray(lstate.betas)
        if adapt_ladder and m >= 2:
            barrier = float(np.sum(rej))
            n_new = old.shape[0]
            if auto_n and m >= 32:
                n_new = int(min(max_temperatures, max(n_new, math.ceil(2 * barrier) + 2)))
            lstate = adapter.update(lstate, rej, n_new)
        new = np.asarray(lstate.betas)
        log_eps_new = np.interp(new, old, np.log(eps))
        if new.shape[0] != old.shape[0]:
            carry = _remap(carry, old, new)
        carry = carry._replace(log_eps=jnp.broadcast_to(jnp.asarray(log_eps_new, dt), (num_chains, new.shape[0])))
        if ck is not None and (done - saved_at >= ck.every or done == num_warmup):
            saved_at = done
            save()

    del wbufs
    betas_f = np.asarray(lstate.betas)
    if bufs is None:  # production starts (not resumed inside it)
        carry = carry._replace(round_trips=jnp.zeros_like(carry.round_trips))
        bufs = _empty_records(cfg, carry, jnp.asarray(betas_f, dt), num_steps)
    piece = ck.every if ck is not None else max(1, num_steps // 20) if progress else num_steps
    bar.phase("pt production")
    sums = None
    while prod_done < num_steps:
        m = min(piece, num_steps - prod_done)
        carry, counts, bufs = run_fn(chain_keys, carry, jnp.asarray(betas_f, dt), num_warmup + prod_done, m, False,
                                     bufs, prod_done)
        prod_done += m
        if ck is not None:
            save()
        if bar:
            got = [np.asarray(v, np.float64).sum(0) for v in counts[:2]] + [m]
            sums = got if sums is None else [a + b for a, b in zip(sums, got)]
            _show_production(bar, m, sums, carry, bufs, prod_done, num_chains)
    bar.close()
    rec = bufs
    positions = rec["x_top"]
    V = rec["V"]
    nb = num_blocks if num_blocks is not None else math.ceil(20 / num_chains)
    ev = jax.device_get(_evidence(jnp.asarray(betas_f, dt), V, num_blocks=_check_int("num_blocks", nb, 1)))
    swap = np.asarray(rec["swap_rate"]).mean(axis=(0, 1))
    local = np.asarray(rec["local_acceptance"]).mean(axis=(0, 1))
    flow_acc = np.asarray(rec["flow_acceptance"]).mean(axis=(0, 1))
    trips = int(np.sum(carry.round_trips))
    num_nonfinite = int(np.sum(rec["num_nonfinite"]))
    num_divergent = int(np.sum(rec["num_divergent"]))
    labels = None
    if mode_of is not None:
        labels = np.asarray(jax.vmap(mode_of)(positions.reshape(-1, dim))).reshape(num_chains, num_steps)
    verdict = mcmc_verdict(positions, num_nonfinite=num_nonfinite, acceptance=float(local[-1]),
                           global_acceptance=float(flow_acc[1:].mean()) if flow is not None else None,
                           mode_labels=labels, num_modes=num_modes, thresholds=thresholds)
    th = thresholds if thresholds is not None else Thresholds()
    problems = list(verdict.problems)
    if trips == 0:
        problems.append("no round trip between the reference and the target in production: the ladder does not "
                        "connect them (more num_temperatures, num_warmup or num_steps)")
    k = int(np.argmin(swap))
    if swap[k] < th.min_acceptance:
        problems.append(f"swap acceptance {swap[k]:.3f} between beta {betas_f[k]:.3g} and {betas_f[k + 1]:.3g} "
                        f"< {th.min_acceptance}")
    barrier = float(np.sum(1.0 - swap))
    diag = dict(verdict.diagnostics, swap_rates=swap, round_trips=trips, barrier=barrier,
                betas=betas_f, num_temperatures=int(betas_f.shape[0]), warmup_num_nonfinite=warm_nonfinite,
                num_divergent=num_divergent, log_Z_num_blocks=int(ev["num_blocks"]))
    converged = not problems
    result = ParallelTemperingResult(
        positions=positions,
        log_Z=float(ev["ss"]) + log_Z_ref,
        log_Z_se=float(ev["ss_se"]),
        log_Z_ti=float(ev["ti"]) + log_Z_ref,
        log_Z_ti_se=float(ev["ti_se"]),
        betas=betas_f,
        step_sizes=np.exp(np.asarray(carry.log_eps[0], np.float64)),
        swap_rates=swap,
        local_acceptance=local,
        flow_acceptance=flow_acc,
        barrier=barrier,
        round_trips=trips,
        round_trip_rate=trips / (num_chains * num_steps),
        wall_s=time.perf_counter() - t_start,
        diagnostics=diag,
        converged=converged,
        problems=problems,
    )
    if warn and not converged:
        warn_if_not_converged(type(verdict)(diag, converged, problems), "parallel_tempering")
    return result
