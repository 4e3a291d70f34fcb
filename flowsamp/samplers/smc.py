r"""Sequential Monte Carlo along a path of densities from a base to the target, with ln Z and its SE.

The particles follow a path :math:`\pi_\beta`, :math:`0 = \beta_0 < \dots < \beta_T = 1`, from
a base :math:`q` (a Gaussian, the prior, a flow) to the target :math:`p`; by default the
geometric path

.. math:: \log\pi_\beta(x) = (1-\beta)\log q(x) + \beta \log p(x).

Each step (Del Moral, Doucet & Jasra 2006, arXiv:cond-mat/0212648; Feynman-Kac pieces as in
``blackjax/smc``):

1. **reweight**: :math:`\log w_i \mathrel{+}= \log\pi_{\beta'}(x_i) - \log\pi_\beta(x_i)`, with
   :math:`\beta'` the largest value whose *conditional* ESS (Zhou, Johansen & Aston 2016,
   arXiv:1303.3123)

   .. math:: \mathrm{CESS} = \frac{(\sum_i W_i \tilde w_i)^2}{\sum_i W_i \tilde w_i^2}

   (:math:`W_i` the normalised weights, :math:`\tilde w_i` the incremental ones) is
   ``target_ess`` of the particles; :math:`\ln \hat Z \mathrel{+}= \ln \sum_i W_i \tilde w_i`;
2. **resample** (systematic or residual, ``flowsamp.samplers._smc_resampling``) when the
   Kish ESS of the weights falls below ``resample_threshold`` :math:`\cdot N`;
3. **move** every particle by blocks of ``num_mcmc_steps`` transitions of an ``fs.kernels`` kernel
   invariant for :math:`\pi_{\beta'}` (MALA/HMC preconditioned by the population variance,
   RWMH by its covariance; step size adapted from the population acceptance) until the particles
   have decorrelated from their pre-move positions (largest coordinate correlation below
   ``max_move_correlation``, or no longer falling), at most ``max_mcmc_steps`` transitions
   (:func:`flowsamp.samplers._smc_moves.adaptive_move`; pocoMC's rule); with
   ``precondition_flow=`` the moves run in the latent space of a flow fitted to the particles
   (:mod:`flowsamp.samplers._smc_flow_moves`).

With :math:`\hat Z_T = \prod_t \sum_i W_i^{(t)} \tilde w_i^{(t)}`, :math:`E[\hat Z] = Z_p / Z_q`.
AIS (Neal 2001, arXiv:physics/9803008) is the same recursion without resampling.

**Standard error: independent islands.** The ``N`` particles run as ``num_islands`` independent
SMC samplers of :math:`N/M` particles each (vmapped; each adapts its own schedule; Vergé et al.
2015, arXiv:1306.3911). The reported :math:`\hat Z` is their mean (unbiased) and its SE comes
from the spread of the islands' :math:`\ln\hat Z_m` under the log-normal CLT of particle
estimates of :math:`Z` (Bérard, Del Moral & Doucet 2014), with :math:`M - 1` degrees of
freedom (``diagnostics["log_Z_dof"]``): :func:`flowsamp.samplers._smc_evidence.island_log_evidence`.
The islands' variance there is floored by the mean of each island's own estimate from its
genealogy (Lee & Whiteley 2018; ``diagnostics["island_log_Z_within_var"]``), so that islands
agreeing by chance do not report a tiny SE around a wrong value.
The islands' agreement is also the verdict's strongest check
(``flowsamp.samplers._smc_verdict``).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from flowsamp._compile import jit_light
from flowsamp._progress import ProgressBar
from flowsamp.base import Flow, as_key, check_finite_positions
from flowsamp.estimators.verdict import Thresholds, warn_if_not_converged
from flowsamp.estimators.weights import ess as kish_ess, normalized_weights
from flowsamp.samplers._smc_base import ParametricBase, PlainLogProb
from flowsamp.samplers._smc_evidence import genealogy_log_variance, island_log_evidence
from flowsamp.samplers._smc_flow_moves import FlowPreconditioner, flow_preconditioned_move
from flowsamp.samplers._smc_moves import (
    KERNELS,
    MASSES,
    MoveConfig,
    adaptive_move,
    cross_fit_split,
    has_spread,
    initial_step_size,
    resolve_mass,
)
from flowsamp.samplers._smc_resampling import RESAMPLING, resample_indices
from flowsamp.samplers._smc_verdict import _STUCK, smc_verdict
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["SMCInfo", "SMCOutput", "SMCState", "geometric_path", "smc"]

PathFn = Callable[[Array, Array, Array], Array]


def geometric_path(beta: Array, log_base: Array, log_target: Array) -> Array:
    r""":math:`\log\pi_\beta = \log q + \beta(\log p - \log q)`; a non-finite :math:`\log p - \log q`
    counts as :math:`-\infty` for :math:`\beta > 0` and is ignored at :math:`\beta = 0`."""
    diff = log_target - log_base
    diff = jnp.where(jnp.isnan(diff), -jnp.inf, diff)
    return log_base + jnp.where(beta > 0, beta * diff, 0.0)


class SMCState(NamedTuple):
    """One island: particles ``x`` (n, d), cached ``log_base`` and ``log_target`` (n,),
    normalised ``log_weights`` (n,), inverse temperature ``beta``, the move kernel's
    ``log_step_size`` and each particle's ``eve`` (n,): the index of its ancestor among the initial
    particles (Lee & Whiteley 2018; :func:`flowsamp.samplers._smc_evidence.genealogy_log_variance`)."""

    x: Array
    log_base: Array
    log_target: Array
    log_weights: Array
    beta: Array
    log_step_size: Array
    eve: Array


class SMCInfo(NamedTuple):
    """One step of one island: new ``beta``, ``log_increment`` :math:`\\ln\\sum_i W_i\\tilde w_i`,
    ``ess`` (Kish ESS/n after reweighting), ``cess``, ``resampled``, mean move ``acceptance``,
    ``distinct`` (fraction of distinct particles after the moves), ``step_size``, ``drift``: the
    change of the weighted mean of :math:`\log\pi_{\beta'}` over the move sweep in units of its
    standard error :math:`\mathrm{sd}/\sqrt{\mathrm{ESS}}` (a population at equilibrium does not drift);
    ``num_moves`` transitions of the sweep, ``move_correlation`` the largest correlation of a
    coordinate before and after it, ``decorrelated`` whether the sweep met its criterion before
    its cap (:func:`flowsamp.samplers._smc_moves.adaptive_move`), ``stuck_all`` the weighted fraction
    of particles whose own acceptance over the sweep was below ``STUCK_ACCEPTANCE`` and ``stuck``
    the part of it above the weighted median of :math:`\log\pi_{\beta'}` (:func:`_stuck_fractions`),
    ``spread_change`` the mean change of the coordinates' log-variance over the sweep
    (:func:`_spread_change`)."""

    beta: Array
    log_increment: Array
    ess: Array
    cess: Array
    resampled: Array
    acceptance: Array
    distinct: Array
    step_size: Array
    drift: Array
    num_moves: Array
    move_correlation: Array
    decorrelated: Array
    stuck: Array
    stuck_all: Array
    spread_change: Array


#: a particle accepting less than this on average over a sweep counts as stuck
STUCK_ACCEPTANCE = _STUCK


class SMCOutput(NamedTuple):
    """Result of :func:`smc` / :func:`flowsamp.samplers.ais`.

    ``particles`` (N, d) with normalised ``log_weights`` (N,) (island ``m``'s particles weighted
    by :math:`\\hat Z_m W_i^{(m)} / \\sum_m \\hat Z_m`); ``log_Z`` :math:`\\ln\\hat Z` of the target
    (the base's ``log_Z`` added), ``log_Z_se`` its SE from the islands (NaN for one island),
    ``island_log_Z`` (M,); per step and island ``(M, T)`` arrays, NaN once an island has
    finished: ``schedule`` (:math:`\\beta_t`), ``ess``, ``cess``, ``acceptance``, ``step_size``,
    ``resampled``, ``distinct``; ``num_steps`` (M,), ``num_resampling`` (M,),
    ``num_target_evals`` (evaluations of ``log_prob``, gradients included, over all particles),
    ``wall_s`` (compile included), ``diagnostics``, ``converged``, ``problems``.
    """

    particles: Array
    log_weights: Array
    log_Z: float
    log_Z_se: float
    island_log_Z: np.ndarray
    schedule: np.ndarray
    ess: np.ndarray
    cess: np.ndarray
    acceptance: np.ndarray
    step_size: np.ndarray
    resampled: np.ndarray
    distinct: np.ndarray
    num_steps: np.ndarray
    num_resampling: np.ndarray
    num_target_evals: int
    wall_s: float
    diagnostics: dict
    converged: bool
    problems: list


def _cess(log_W: Array, log_inc: Array) -> Array:
    """Conditional ESS / n of incremental weights ``log_inc`` under normalised ``log_W``."""
    return jnp.exp(2.0 * logsumexp(log_W + log_inc) - logsumexp(log_W + 2.0 * log_inc))


def next_beta(state: SMCState, path: PathFn, target_ess: float) -> Array:
    """Largest :math:`\\beta' \\in (\\beta, 1]` with CESS >= ``target_ess`` (bisection, 50 halvings)."""
    beta = state.beta
    now = path(beta, state.log_base, state.log_target)

    def cess_at(b):
        inc = path(b, state.log_base, state.log_target) - now
        return _cess(state.log_weights, jnp.where(jnp.isnan(inc), -jnp.inf, inc))

    def body(_, lo_hi):
        lo, hi = lo_hi
        mid = 0.5 * (lo + hi)
        ok = cess_at(mid) >= target_ess
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    one = jnp.ones_like(beta)
    lo, _ = jax.lax.fori_loop(0, 50, body, (beta, one))
    # never stall: at least a tiny step even when one particle dominates
    return jnp.where(cess_at(one) >= target_ess, one, jnp.maximum(lo, beta + 1e-6 * (1.0 - beta)))


def _drift(log_W: Array, before: Array, after: Array) -> Array:
    """(weighted mean of ``after`` - of ``before``) / (weighted sd of ``before`` / sqrt(ESS))."""
    w = normalized_weights(log_W)
    ok = jnp.isfinite(before) & jnp.isfinite(after)
    b, a = jnp.where(ok, before, 0.0), jnp.where(ok, after, 0.0)
    mb = jnp.sum(w * b)
    sd = jnp.sqrt(jnp.sum(w * (b - mb) ** 2))
    se = sd * jnp.sqrt(jnp.sum(w**2))
    return (jnp.sum(w * a) - mb) / jnp.maximum(se, jnp.finfo(se.dtype).tiny)


def _spread_change(log_W: Array, before: Array, after: Array) -> Array:
    r"""Mean change of the coordinates' log-variance over a move sweep,
    :math:`\frac1d\sum_j (\ln v_j^\text{after} - \ln v_j^\text{before})` (:math:`v_j` the weighted
    variance of coordinate :math:`j`; coordinates without spread, copies of one particle, left out).

    A sweep of a :math:`\pi`-invariant kernel leaves a :math:`\pi`-distributed population's
    spread unchanged; a population that is narrower than :math:`\pi` along a direction its
    moves explore slowly (the long axis of a rotated, ill-conditioned target under a diagonal
    mass, or a base narrower than the target) widens at every sweep, while its mean
    log-density, dominated by the well-mixed directions, hardly moves (:func:`_drift`). The
    verdict tests it over the islands (``flowsamp.samplers._smc_verdict``)."""
    w = normalized_weights(log_W)[:, None]

    def log_var(x):
        x = jnp.where(jnp.all(jnp.isfinite(x), axis=1, keepdims=True), x, 0.0)
        m = jnp.sum(w * x, 0)
        v = jnp.sum(w * (x - m) ** 2, 0)
        used = has_spread(x, v)
        return jnp.log(jnp.where(used, v, 1.0)), used

    lb, used_b = log_var(before)
    la, used_a = log_var(after)
    used = used_b & used_a
    return jnp.sum(jnp.where(used, la - lb, 0.0)) / jnp.maximum(jnp.sum(used), 1)


def _stuck_fractions(w: Array, particle_acceptance: Array, log_density: Array) -> tuple[Array, Array]:
    r"""``(stuck, stuck_all)``: the weighted fraction of particles whose own acceptance over the
    sweep was below ``STUCK_ACCEPTANCE`` and lie above the weighted median of
    :math:`\log\pi_{\beta'}` (``stuck``), and all of them (``stuck_all``).

    A particle the shared step cannot move in a low-density tail (a banana's arms) carries little
    mass and is soon resampled away; one that cannot move where the density is *high* sits at the
    entrance of a region narrower than the step resolves (a funnel's neck, a narrow mixture
    component), whose mass the moves cannot fill as it grows along the path."""
    low = particle_acceptance < STUCK_ACCEPTANCE
    order = jnp.argsort(log_density)
    cdf = jnp.cumsum(w[order])
    median = log_density[order][jnp.minimum(jnp.searchsorted(cdf, 0.5 * cdf[-1]), w.shape[0] - 1)]
    high = low & (log_density > median)
    return jnp.sum(jnp.where(high, w, 0.0)), jnp.sum(jnp.where(low, w, 0.0))


def _distinct_fraction(v: Array) -> Array:
    s = jnp.sort(v)
    return (1.0 + jnp.sum(s[1:] != s[:-1])) / v.shape[0]


def _build_step(log_prob: LogProbFn, log_base_fn: Callable[[Any, Array], Array], path: PathFn, target_ess: float,
                resample_threshold: float, resampling: str, cfg: MoveConfig, max_blocks: int,
                max_correlation: float, latent: FlowPreconditioner | None = None):
    lt_v = jax.vmap(log_prob)

    def step(key: PRNGKey, state: SMCState, base_params: Any) -> tuple[SMCState, SMCInfo]:
        def log_base_one(y):
            return log_base_fn(base_params, y)

        lb_v = jax.vmap(log_base_one)
        k_res, k_move = jax.random.split(key)
        n = state.x.shape[0]
        new_beta = next_beta(state, path, target_ess)
        inc = path(new_beta, state.log_base, state.log_target) - path(state.beta, state.log_base, state.log_target)
        inc = jnp.where(jnp.isnan(inc), -jnp.inf, inc)
        log_inc = logsumexp(state.log_weights + inc)
        cess = _cess(state.log_weights, inc)
        log_W = state.log_weights + inc - log_inc
        ess = kish_ess(log_W) / n
        do_res = ess < resample_threshold
        idx = jnp.where(do_res, resample_indices(k_res, log_W, resampling), jnp.arange(n))
        x = state.x[idx]
        log_W = jnp.where(do_res, jnp.full((n,), -math.log(n), log_W.dtype), log_W)

        def log_density(y):
            return path(new_beta, log_base_one(y), log_prob(y))

        before = path(new_beta, state.log_base[idx], state.log_target[idx])
        x_before = x
        if latent is None:
            x, log_eps, sw = adaptive_move(k_move, x, log_W, log_density, state.log_step_size, cfg, max_blocks,
                                           max_correlation)
        else:
            x, log_eps, sw = flow_preconditioned_move(k_move, x, log_W, log_density, state.log_step_size, cfg,
                                                      max_blocks, max_correlation, latent)
        lb, lt = lb_v(x), lt_v(x)
        drift = _drift(log_W, before, path(new_beta, lb, lt))
        spread_change = _spread_change(log_W, x_before, x)
        w = normalized_weights(log_W)
        stuck, stuck_all = _stuck_fractions(w, sw.particle_acceptance, path(new_beta, lb, lt))
        new = SMCState(x, lb, lt, log_W, new_beta, log_eps, state.eve[idx])
        done = state.beta >= 1.0
        new = jax.tree.map(lambda a, b: jnp.where(done, a, b), state, new)
        nan = jnp.asarray(jnp.nan, x.dtype)
        info = SMCInfo(jnp.where(done, nan, new_beta), jnp.where(done, 0.0, log_inc), jnp.where(done, nan, ess),
                       jnp.where(done, nan, cess), do_res & ~done, jnp.where(done, nan, sw.acceptance),
                       jnp.where(done, nan, _distinct_fraction(lt)),
                       jnp.where(done, nan, jnp.exp(log_eps)), jnp.where(done, nan, drift),
                       jnp.where(done, 0, sw.num_moves), jnp.where(done, nan, jnp.max(sw.correlation)),
                       sw.decorrelated | done, jnp.where(done, nan, stuck), jnp.where(done, nan, stuck_all),
                       jnp.where(done, nan, spread_change))
        return new, info

    return step


_PROGRAMS: dict = {}


def _show_step(bar: ProgressBar, t: int, state: SMCState, info: SMCInfo) -> None:
    """The bar after tempering step ``t``: the least advanced island's β (the bar's position, out
    of 1), and over the islands still moving the mean ESS/N after reweighting, the mean move
    acceptance and the mean number of moves of the step."""
    moving = np.isfinite(info.beta)
    pick = (lambda v: np.mean(np.asarray(v, np.float64)[moving])) if moving.any() else (lambda v: float("nan"))
    bar.set(float(np.min(np.asarray(state.beta))), step=t + 1, beta=float(np.min(np.asarray(state.beta))),
            ess=pick(info.ess), acc=pick(info.acceptance), moves=pick(info.num_moves))


def _fn_key(f: Callable) -> Any:
    """``f`` itself, or for a bound method of an unhashable object (a frozen dataclass target
    holding arrays) ``(id(object), function)``."""
    self = getattr(f, "__self__", None)
    if self is not None:
        try:
            hash(self)
        except TypeError:
            return ("method", id(self), f.__func__)
    return f


def _programs(log_prob, log_base_fn, path, target_ess, resample_threshold, resampling, cfg, max_blocks,
              max_correlation, devices, latent=None):
    """Jitted ``init(x, log_eps, base_params)`` and ``step(keys, state, base_params)`` over
    islands, cached on their inputs (when hashable) so that repeated runs on the same densities
    compile once; ``log_base_fn(base_params, x)`` takes the base's parameters as data
    (:mod:`flowsamp.samplers._smc_base`)."""
    # programs traced under one dtype mode must not outlive a switch of jax_enable_x64: keeping
    # them alive made later traces in the other mode fail to lower (jax 0.10), so the cache is
    # emptied on a switch
    x64 = bool(jax.config.jax_enable_x64)
    if _PROGRAMS.get("x64", x64) != x64:
        _PROGRAMS.clear()
    _PROGRAMS["x64"] = x64
    spec = (_fn_key(log_prob), _fn_key(log_base_fn), path, target_ess, resample_threshold, resampling, cfg,
            max_blocks, max_correlation, devices, latent)
    try:
        hit = _PROGRAMS.get(spec)
    except TypeError:  # an unhashable density
        spec, hit = None, None
    if hit is not None:
        return hit[:2]
    island_step = _build_step(log_prob, log_base_fn, path, target_ess, resample_threshold, resampling, cfg,
                              max_blocks, max_correlation, latent)

    step = jax.vmap(island_step, in_axes=(0, 0, None))
    if devices is not None:
        from flowsamp.parallel import CHAINS, REPLICATED, chain_mesh, shard_chains

        step = shard_chains(step, chain_mesh(list(devices)), in_specs=(CHAINS, CHAINS, REPLICATED))

    def init(x, log_eps, base_params):
        m, n = x.shape[:2]
        # one vmap over the flattened particles (vmap(vmap(f)) of a function holding a numpy
        # constant, traced once in float32, fails to lower under jax_enable_x64 in jax 0.10)
        flat = x.reshape(m * n, -1)
        lb = jax.vmap(lambda y: log_base_fn(base_params, y))(flat).reshape(m, n)
        lt = jax.vmap(log_prob)(flat).reshape(m, n)
        eve = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (m, n))
        return SMCState(x, lb, lt, jnp.full((m, n), -math.log(n), x.dtype), jnp.zeros((m,), x.dtype), log_eps, eve)

    # -O1 (jit_light): the step's compile is on the critical path of a run (first call 0.5-2.7 s
    # sooner, flowsamp._compile). Not under x64, where islands sharded over devices must equal
    # the single-device run to 1e-9: at -O1 one island of 8 came out 0.2 nat apart (a last-bit
    # difference that flipped one decision), at -O2 all agree.
    out = (jax.jit(init), (jax.jit if x64 else jit_light)(step))
    if spec is not None:
        # the densities are kept alive with the programs, so the ids in _fn_key cannot be reused
        if len(_PROGRAMS) >= 17:
            _PROGRAMS.pop(next(k for k in _PROGRAMS if k != "x64"))
        _PROGRAMS[spec] = out + ((log_prob, log_base_fn),)
    return out


def _checkpoint_meta(what, key, num_particles, num_islands, d, dtype, cfg, max_blocks, max_corr, target_ess,
                     resample_threshold, resampling, eps0, max_steps, latent=None) -> dict:
    meta = {"sampler": what, "key": [int(v) for v in np.asarray(jax.random.key_data(key)).ravel()],
            "num_particles": int(num_particles), "num_islands": int(num_islands), "dim": int(d),
            "dtype": str(jnp.dtype(dtype)), "moves": [str(v) for v in cfg] + [int(max_blocks), float(max_corr)],
            "tempering": [float(target_ess), float(resample_threshold), str(resampling), float(eps0), int(max_steps)]}
    if latent is not None:  # the flow by its kind and size (its functions have no stable text)
        meta["precondition_flow"] = [type(latent.flow).__name__, int(latent.flow.dim), int(latent.num_fit_steps),
                                     float(latent.learning_rate)]
    return meta


def _save_checkpoint(path, meta, state: SMCState, log_Z_isl: np.ndarray, infos: list) -> None:
    from flowsamp import io as fio

    rec = {f: np.stack([getattr(i, f) for i in infos], axis=1) for f in SMCInfo._fields}
    fio.save(path, {"state": state._asdict(), "log_Z": np.asarray(log_Z_isl, np.float64), "record": rec},
             meta={**meta, "num_done": len(infos)})


def _load_checkpoint(path, meta, like_state: SMCState):
    """``(state, log_Z_isl, infos, num_done)`` from a checkpoint written by :func:`_save_checkpoint`."""
    from flowsamp import io as fio

    stored = fio.read_meta(path, meta)
    t = int(stored["num_done"])
    m = like_state.x.shape[0]
    dt = np.dtype(like_state.x.dtype)
    kinds = {"resampled": np.bool_, "decorrelated": np.bool_, "num_moves": np.int32}
    like = {"state": {k: np.asarray(v) for k, v in like_state._asdict().items()}, "log_Z": np.zeros(m, np.float64),
            "record": {f: np.zeros((m, t), kinds.get(f, dt)) for f in SMCInfo._fields}}
    got = fio.load(path, like, meta)
    state = SMCState(**{k: jnp.asarray(v) for k, v in got["state"].items()})
    rec = got["record"]
    infos = [SMCInfo(*[rec[f][:, i] for f in SMCInfo._fields]) for i in range(t)]
    return state, np.array(got["log_Z"], np.float64), infos, t  # a writable copy


def _base_fns(base: Any, base_log_Z: float | None) -> tuple[Callable, Any, Callable | None, float]:
    """``(log_base_fn(params, x), params, sample or None, log_Z)`` of ``base``."""
    if isinstance(base, ParametricBase):
        return base.log_prob_fn, base.params, None, float(base.log_Z if base_log_Z is None else base_log_Z)
    if not callable(getattr(base, "log_prob", None)):
        raise TypeError(f"base must have a log_prob(x) method, got {type(base).__name__}")
    if base_log_Z is None:
        has = hasattr(base, "log_Z")
        base_log_Z = getattr(base, "log_Z", 0.0)
        if has and base_log_Z is None:
            raise ValueError(
                "base.log_Z is None: the base's log_prob is unnormalised with an unknown constant, so "
                "ln Z would be off by it; pass base_log_Z= (0.0 for a ratio relative to the base)")
    sample = None
    if callable(getattr(base, "sample", None)):
        sample = base.sample
    elif callable(getattr(base, "sample_and_log_prob", None)):
        def sample(key, n):
            return jax.vmap(lambda k: base.sample_and_log_prob(k)[0])(jax.random.split(key, n))
    return PlainLogProb(base.log_prob, _fn_key(base.log_prob)), (), sample, float(base_log_Z)


def _latent_config(flow: Any, d: int, num_fit_steps: Any, learning_rate: Any) -> FlowPreconditioner | None:
    """The :class:`FlowPreconditioner` of ``smc``'s flow options, or a named error."""
    if flow is None:
        return None
    if not isinstance(flow, Flow):
        raise TypeError(f"precondition_flow must be a flowsamp Flow (fs.flows.*), got {type(flow).__name__}")
    if flow.dim != d:
        raise ValueError(f"precondition_flow has dim {flow.dim}, the particles have dim {d}")
    if isinstance(num_fit_steps, bool) or not isinstance(num_fit_steps, int) or num_fit_steps < 1:
        raise ValueError(f"flow_fit_steps must be a positive int, got {num_fit_steps!r}")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"flow_learning_rate must be positive and finite, got {learning_rate!r}")
    return FlowPreconditioner(flow, num_fit_steps, float(learning_rate))


def _check_options(num_particles, num_islands, target_ess, resample_threshold, resampling, kernel, mass,
                   num_mcmc_steps, max_steps, max_mcmc_steps, max_move_correlation):
    if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 2:
        raise ValueError(f"num_particles must be an int >= 2, got {num_particles!r}")
    if isinstance(num_islands, bool) or not isinstance(num_islands, int) or num_islands < 1:
        raise ValueError(f"num_islands must be a positive int, got {num_islands!r}")
    if num_particles % num_islands or num_particles // num_islands < 2:
        raise ValueError(f"num_particles={num_particles} must be a multiple of num_islands={num_islands} "
                         "with at least 2 particles per island")
    if not 0.0 < float(target_ess) < 1.0:
        raise ValueError(f"target_ess must lie in (0, 1), got {target_ess}")
    if not 0.0 <= float(resample_threshold) <= 1.0:
        raise ValueError(f"resample_threshold must lie in [0, 1], got {resample_threshold}")
    if resampling not in RESAMPLING:
        raise ValueError(f"resampling must be one of {sorted(RESAMPLING)}, got {resampling!r}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if mass is not None and mass not in MASSES:
        raise ValueError(f"mass must be one of {MASSES}, got {mass!r}")
    if isinstance(num_mcmc_steps, bool) or not isinstance(num_mcmc_steps, int) or num_mcmc_steps < 1:
        raise ValueError(f"num_mcmc_steps must be a positive int, got {num_mcmc_steps!r}")
    if isinstance(max_mcmc_steps, bool) or not isinstance(max_mcmc_steps, int) or max_mcmc_steps < num_mcmc_steps:
        raise ValueError(f"max_mcmc_steps must be an int >= num_mcmc_steps={num_mcmc_steps}, got {max_mcmc_steps!r}")
    if not 0.0 < float(max_move_correlation) <= 1.0:
        raise ValueError(f"max_move_correlation must lie in (0, 1], got {max_move_correlation}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")


def smc(
    key: PRNGKey,
    log_prob: LogProbFn,
    base: Any,
    num_particles: int,
    *,
    path: PathFn = geometric_path,
    target_ess: float = 0.5,
    resample_threshold: float = 0.5,
    resampling: str = "systematic",
    kernel: str = "mala",
    num_mcmc_steps: int = 10,
    max_mcmc_steps: int | None = None,
    max_move_correlation: float = 0.5,
    num_integration_steps: int = 10,
    mass: str | None = None,
    step_size: float | None = None,
    num_islands: int = 8,
    max_steps: int = 500,
    precondition_flow: Any = None,
    flow_fit_steps: int = 200,
    flow_learning_rate: float = 1e-2,
    initial_particles: Array | None = None,
    base_log_Z: float | None = None,
    mode_of: Callable[[Array], Array] | None = None,
    num_modes: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    callback: Callable[[int, dict], None] | None = None,
    thresholds: Thresholds | None = None,
    warn: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    progress: bool = False,
    _what: str = "smc",
) -> SMCOutput:
    r"""Adaptive SMC sampler from ``base`` to ``log_prob`` with :math:`\ln\hat Z` and its SE.

    Parameters
    ----------
    key
        PRNG key.
    log_prob
        :math:`\log p(x)` of one point ``(d,)``, unnormalised (differentiable for MALA/HMC).
    base
        Anything with ``log_prob(x)`` and ``sample(key, n)`` (a flowsamp target such as
        ``fs.targets.gaussian``) or ``sample_and_log_prob(key)`` (``fs.flows.proposal``). When it
        carries ``log_Z`` (a flowsamp target's ``log_prob`` is unnormalised), that is added, so
        ``log_Z`` is always the target's own. A
        :class:`~flowsamp.samplers._smc_base.ParametricBase` (with ``initial_particles``) passes its
        parameters to the compiled step as data: bases of one family and shape share one program.
    num_particles
        Total number of particles ``N`` over all islands.
    path
        ``path(beta, log_base, log_target) -> log pi_beta`` elementwise; :func:`geometric_path`.
    target_ess
        Conditional ESS fraction kept by each tempering step, in (0, 1).
    resample_threshold
        Resample when the Kish ESS falls below this fraction of the island's particles
        (0: never, as in AIS; 1: every step).
    resampling
        ``"systematic"`` or ``"residual"``.
    kernel, num_mcmc_steps, num_integration_steps, mass, step_size
        Move kernel (``"mala"``, ``"hmc"``, ``"rwmh"``), transitions per block, HMC leapfrog
        steps, preconditioner from the population (``"diag"``, ``"dense"`` or ``"identity"``;
        default ``"diag"``, and ``"dense"`` for RWMH with at least 10 particles per dimension in
        half an island: ``flowsamp.samplers._smc_moves.default_mass``; an explicit ``"dense"``
        with fewer warns) and starting step size (default
        ``flowsamp.samplers._smc_moves.initial_step_size``), adapted towards
        ``TARGET_ACCEPTANCE[kernel]``.
    max_mcmc_steps, max_move_correlation
        Blocks of ``num_mcmc_steps`` transitions run until the largest correlation of a
        coordinate between the particles before and after the sweep is below
        ``max_move_correlation`` (0.5) or stops falling, at most ``max_mcmc_steps`` transitions
        per tempering step (default ``10 * num_mcmc_steps``; equal to ``num_mcmc_steps``: a fixed
        number). A sweep that hits the cap still decorrelating is a problem of the verdict.
    num_islands
        Independent islands ``M`` (``N / M`` particles each) giving ``log_Z_se`` and the
        agreement checks of the verdict.
    max_steps
        Budget of tempering steps.
    precondition_flow, flow_fit_steps, flow_learning_rate
        A ``fs.flows`` flow (``None``: moves in :math:`x`): at every step each island fits it to
        its standardised weighted particles (up to ``flow_fit_steps`` full-batch Adam steps of
        forward KL at ``flow_learning_rate``, from the identity, early-stopped on held-out
        particles) and moves them in its latent space, where a change of scale the flow has
        learned is undone (pocoMC's flow-preconditioned SMC; each half of an island is moved by
        the flow fitted to the other half: :mod:`flowsamp.samplers._smc_flow_moves`). Costs the
        fits at every step. It cannot create mass where no particle is: on funnel-10 (2048
        particles, a 2-layer spline) ln Z was -0.68, -0.70, -0.44 over 3 runs against -0.80 on
        average without it, every run flagged by the verdict.
    initial_particles
        ``(N, d)`` exact draws from the base instead of ``base.sample``.
    base_log_Z
        Override of the base's ``log_Z`` (0.0 returns :math:`\ln(Z_p/Z_q)`).
    mode_of, num_modes
        Mode labels of points: the islands' mode weights enter the verdict.
    devices
        Shard the islands over these devices (``jax.shard_map``, ``flowsamp.parallel``), each
        device running ``num_islands / len(devices)`` of them (``num_islands`` must be a
        multiple of it). Every island keeps its own key, so under ``jax_enable_x64`` the result
        equals the single-device run (to 1e-14 on 4 CPU devices); in float32 the per-device
        programs round differently in the last bit and the tempering/resampling decisions
        amplify it, so the run is a different, equally valid draw of the same law.
    callback
        ``callback(step, stats)`` on the host after each step.
    thresholds
        :class:`flowsamp.estimators.Thresholds` of the verdict.
    warn
        Issue :class:`flowsamp.NotConvergedWarning` when the verdict fails.
    checkpoint_path, checkpoint_every, resume
        Write the islands' state, the ln Z accumulators and the per-step record to
        ``checkpoint_path`` (``fs.io.save``, atomic, with a meta fingerprint of the key and the
        options) every ``checkpoint_every`` tempering steps; with ``resume=True`` and an existing
        file, continue from it: the result equals the uninterrupted run with the same key bit
        for bit (a file of another key or configuration is a ValueError naming the key).
    progress
        Show a tqdm progress bar (process 0 only) after every tempering step: its position is
        the least advanced island's β (out of 1); beside it the step, β, the mean ESS/N after
        reweighting, the mean move acceptance and moves per particle. Host-side between the
        compiled steps: the numbers are the same with it on or off.

    Returns
    -------
    SMCOutput
    """
    t0 = time.perf_counter()
    if max_mcmc_steps is None and isinstance(num_mcmc_steps, int):
        max_mcmc_steps = 10 * num_mcmc_steps
    _check_options(num_particles, num_islands, target_ess, resample_threshold, resampling, kernel, mass,
                   num_mcmc_steps, max_steps, max_mcmc_steps, max_move_correlation)
    max_blocks = max_mcmc_steps // num_mcmc_steps
    log_base_fn, base_params, sample, log_Z_base = _base_fns(base, base_log_Z)
    key = as_key(key)
    k_init, k_run, k_perm = jax.random.split(key, 3)
    if initial_particles is None:
        if sample is None:
            raise TypeError("base has neither sample(key, n) nor sample_and_log_prob(key); pass initial_particles=")
        x0 = jnp.asarray(sample(k_init, num_particles))
    else:
        x0 = jnp.asarray(initial_particles)
    if x0.ndim != 2 or x0.shape[0] != num_particles:
        raise ValueError(f"initial particles must have shape ({num_particles}, d), got {tuple(x0.shape)}")
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        raise TypeError(f"initial particles must be floating point, got {x0.dtype}")
    check_finite_positions(x0, "initial particle")
    n, d = num_particles // num_islands, x0.shape[1]
    dtype = x0.dtype
    # particles estimating a preconditioner: the other half of the island (latent moves: all of it)
    num_fit = n if precondition_flow is not None else (cross_fit_split(n) or n)
    mass = resolve_mass(mass, kernel, num_fit, d)
    cfg = MoveConfig(kernel, num_mcmc_steps, num_integration_steps, mass)
    latent = _latent_config(precondition_flow, d, flow_fit_steps, flow_learning_rate)
    eps0 = initial_step_size(kernel, d) if step_size is None else float(step_size)
    if not (np.isfinite(eps0) and eps0 > 0):
        raise ValueError(f"step_size must be positive and finite, got {step_size!r}")
    if devices is not None:
        from flowsamp.parallel import chain_mesh, check_divisible

        devices = chain_mesh(devices)
        try:
            check_divisible(num_islands, devices)
        except ValueError:
            raise ValueError(f"num_islands={num_islands} islands do not divide evenly over "
                             f"{devices.devices.size} devices; use a multiple of {devices.devices.size} "
                             "islands") from None
        devices = tuple(devices.devices.flat)
    init, step = _programs(log_prob, log_base_fn, path, float(target_ess), float(resample_threshold), resampling,
                           cfg, max_blocks, float(max_move_correlation), None if devices is None else tuple(devices),
                           latent)
    base_params = jax.tree.map(lambda a: jnp.asarray(a, dtype), base_params)
    state = init(x0.reshape(num_islands, n, d), jnp.full((num_islands,), math.log(eps0), dtype), base_params)
    if not bool(jnp.all(jnp.isfinite(state.log_base))):
        raise ValueError("base log_prob is not finite at some initial particle")
    island_keys = jax.random.split(k_run, num_islands)
    log_Z_isl = np.zeros(num_islands, np.float64)
    infos: list = []
    if checkpoint_path is None and resume:
        raise ValueError("resume=True needs a checkpoint_path")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive int (tempering steps), got {checkpoint_every!r}")
    meta = None
    start = 0
    if checkpoint_path is not None:
        meta = _checkpoint_meta(_what, key, num_particles, num_islands, d, dtype, cfg, max_blocks,
                                max_move_correlation, target_ess, resample_threshold, resampling, eps0, max_steps,
                                latent)
        if resume and os.path.exists(checkpoint_path):
            state, log_Z_isl, infos, start = _load_checkpoint(checkpoint_path, meta, state)
    bar = ProgressBar(progress, 1.0, _what, "β", float(np.min(np.asarray(state.beta))) if infos else 0.0)
    for t in range(start, max_steps):
        if infos and bool(np.all(np.asarray(state.beta) >= 1.0)):
            break  # resumed from the checkpoint of a finished run
        keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(island_keys)
        state, info = step(keys, state, base_params)
        info = jax.tree.map(np.asarray, info)
        log_Z_isl += info.log_increment.astype(np.float64)
        infos.append(info)
        if callback is not None:
            callback(t, {"beta": info.beta, "ess": info.ess, "acceptance": info.acceptance,
                         "step_size": info.step_size, "log_Z": log_Z_isl + log_Z_base})
        if checkpoint_path is not None and (t + 1) % checkpoint_every == 0:
            _save_checkpoint(checkpoint_path, meta, state, log_Z_isl, infos)
        if bar:
            _show_step(bar, t, state, info)
        if bool(np.all(np.asarray(state.beta) >= 1.0)):
            break
    bar.close()
    rec = SMCInfo(*[np.stack([getattr(i, f) for i in infos], axis=1) for f in SMCInfo._fields])
    num_steps = np.sum(np.isfinite(rec.beta), axis=1).astype(int)
    num_steps = np.maximum(num_steps, 1)
    num_res = rec.resampled.sum(axis=1).astype(int)
    # systematic resampling leaves copies of one ancestor side by side: shuffle each island so
    # that any subset of the particles is a fair draw
    # (on the host, from the key's bits: a device permutation is two programs of its own, 1-4 s
    # to compile on a busy 2-core CPU against microseconds to run)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(k_perm)).ravel().tolist())
    perm = np.stack([rng.permutation(n) for _ in range(num_islands)])
    xs = jnp.asarray(np.take_along_axis(np.asarray(state.x), perm[:, :, None], axis=1))
    lws = jnp.asarray(np.take_along_axis(np.asarray(state.log_weights), perm, axis=1))
    lz = log_Z_isl + log_Z_base
    # each island's own variance estimate, from its genealogy: a floor under the islands' spread
    within_var = genealogy_log_variance(np.asarray(state.log_weights), np.asarray(state.eve), num_res + 1)
    log_Z, log_Z_se = island_log_evidence(lz, within_var)
    lw_all = np.asarray(lws, np.float64) + (lz - np.logaddexp.reduce(lz))[:, None]
    evals_per_move = {"mala": 1, "hmc": num_integration_steps, "rwmh": 1}[kernel]
    # per island: its steps' reweighting (2 per particle) and moves, summed over islands
    evals = n * int(num_islands + np.sum(2 * num_steps + rec.num_moves.sum(axis=1) * evals_per_move))
    verdict = smc_verdict(
        betas=rec.beta, ess=rec.ess, acceptance=rec.acceptance, distinct=rec.distinct, drift=rec.drift,
        spread_change=rec.spread_change, num_steps=num_steps, num_moves=rec.num_moves,
        move_correlation=rec.move_correlation,
        decorrelated=rec.decorrelated, max_mcmc_steps=max_mcmc_steps, num_mcmc_steps=num_mcmc_steps,
        # the stuck-particle check reads the gradient kernels' acceptance, which stays near the
        # population's wherever the step fits the local scale; a random walk's per-particle
        # acceptance is too noisy for it (4 % of the particles under 0.05 on a 3-D Gaussian)
        stuck=None if kernel == "rwmh" else rec.stuck, stuck_all=None if kernel == "rwmh" else rec.stuck_all,
        island_log_Z=lz, particles=np.asarray(xs), log_w=np.asarray(lws), num_resampling=num_res,
        max_steps=max_steps, mode_of=mode_of, num_modes=num_modes, thresholds=thresholds)
    verdict.diagnostics["log_Z_dof"] = num_islands - 1
    verdict.diagnostics["island_log_Z_within_var"] = within_var
    if warn:
        warn_if_not_converged(verdict, _what)
    return SMCOutput(
        xs.reshape(num_particles, d), jnp.asarray(lw_all.reshape(-1), dtype), log_Z, log_Z_se, lz, rec.beta,
        rec.ess, rec.cess, rec.acceptance, rec.step_size, rec.resampled, rec.distinct, num_steps, num_res,
        evals, time.perf_counter() - t0, *verdict,
    )
