r"""The jitted Wang-Landau engine: single-spin sweeps, the on-device ln f schedule and error.

:func:`build_sweeps` returns ``run(key, state) -> state`` (``num_sweeps`` sweeps of N single-spin
trials per walker, ln g updated after every trial, no schedule); :func:`build_checks` returns one
jitted program that runs whole checks (``check_every`` sweeps, the ln f schedule after every
sweep, the error against an exact ln g at the end of each check) in a ``lax.while_loop`` until
a stop condition, so a run is one compiled program and one host round trip per call.

Inside a sweep ln g and H live on the energy *grid* (cell c = (E - E_0) / step, unreachable
cells never visited): a trial moves the walker's cell by an integer, so no level lookup is
needed.  The random numbers of a sweep are drawn in bulk: one 32-bit word per trial for the
site (:math:`\lfloor w N / 2^{32} \rfloor`, as the C reference does), one for the new value
(Potts) and one uniform.  Sweep ``k`` of a run uses ``fold_in(key, k)``, so the result does not
depend on how the run is split into device calls (chunks, checkpoints, resume).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp._compile import jit_light
from flowsamp.samplers.flat_histogram import Compensated, compensated_fold
from flowsamp.types import Array, PRNGKey

__all__ = ["build_sweeps", "build_checks", "checks_program", "CheckOutput", "error_fn"]


def _mulhi(word: Array, n: int) -> Array:
    r""":math:`\lfloor w\,n / 2^{32} \rfloor` for uint32 ``word`` and ``n < 2**16`` in uint32 arithmetic."""
    n = jnp.uint32(n)
    hi, lo = word >> 16, word & jnp.uint32(0xFFFF)
    return ((hi * n + ((lo * n) >> 16)) >> 16).astype(jnp.int32)


def _uniform(word: Array, dtype) -> Array:
    """Uniform in [0, 1) from the top 24 bits of a uint32 word."""
    return (word >> 8).astype(dtype) * jnp.asarray(2.0**-24, dtype)


class _Geometry(NamedTuple):
    L: int
    n: int
    q: int
    cells: int
    cells_per_count: float
    grid_of_level: np.ndarray


def _geometry(target: Any, bins) -> _Geometry:
    step_j = bins.step / target.J
    cells_per_count = -target.bond_a / step_j
    # E depends on the spins only through equal bonds: a single-site change old -> new moves E
    # by -J a [#(nb == new) - #(nb == old)], i.e. by cells_per_count * dc grid cells.
    if abs(2 * cells_per_count - round(2 * cells_per_count)) > 1e-9:
        raise ValueError("energy grid incompatible with single-spin moves")
    n = target.num_sites
    if n >= 2**16:
        raise ValueError(f"lattices of {n} sites (>= 2**16) are not supported by the WL engine")
    grid = np.rint((bins.levels - bins.e_min) / bins.step).astype(np.int32)
    return _Geometry(target.L, n, target.num_states, int(bins.table.size), float(round(2 * cells_per_count)) / 2,
                     grid)


def _jit(fn):
    """:func:`flowsamp._compile.jit_light`: measured on the 8x8 Ising check program (16 and 64
    walkers), compile CPU time 3.7 -> 1.7 s and 3.0 -> 2.0 s, per-trial time within 4 % (the
    serial loop is gathers and scatters; -O2's extra passes buy nothing there)."""
    return jit_light(fn)


_BULK_WORDS = 1 << 22  # random words drawn at once (16 MiB); more are drawn sweep by sweep


def _words_per_trial(n: int, q: int) -> int:
    """One word (site from the top bits, the uniform from the low 24) when N is a power of two
    of at most 2**8 sites and q = 2; else separate words for site, uniform and new value."""
    if q == 2 and n & (n - 1) == 0 and n <= 256:
        return 1
    return 3 if q > 2 else 2


def _neighbour_table(L: int) -> np.ndarray:
    """(N, 5) int32: each site, then its up, down, left and right neighbours on the L x L torus."""
    r, c = np.divmod(np.arange(L * L), L)
    return np.stack([r * L + c, ((r + L - 1) % L) * L + c, ((r + 1) % L) * L + c,
                     r * L + (c + L - 1) % L, r * L + (c + 1) % L], axis=1).astype(np.int32)


def _make_sweep(target: Any, bins, group: np.ndarray, windows: np.ndarray):
    """``(sweep(state, words) -> state, words_per_trial)``: one sweep of N single-spin WL trials
    per walker, its random words (words_per_trial, N, W) uint32 given.

    Everything that does not depend on the walkers' current state is computed for the whole
    sweep at once before the serial loop (sites, their neighbours' flat indices from a
    precomputed table, ln u, the new Potts values), so a trial is one gather of the 5 spins,
    one gather of ln g at the old and new cell, one scatter of the spin and one scatter-add into
    ln g.  When every group's window is the whole energy range (plain WL) the window logic is
    left out; with one group ln f is a scalar.
    """
    geo = _geometry(target, bins)
    L, n, q, C = geo.L, geo.n, geo.q, geo.cells
    cpc2 = int(round(2 * geo.cells_per_count))  # 2 x cells per equal-bond count (an integer)
    grid = jnp.asarray(geo.grid_of_level)
    G = windows.shape[0]
    K = geo.grid_of_level.size
    full = bool(np.all(windows[:, 0] == 0) and np.all(windows[:, 1] == K - 1))
    nw = _words_per_trial(n, q)
    site_shift = 32 - int(n).bit_length() + 1
    table = jnp.asarray(_neighbour_table(L))
    group_np = np.asarray(group, np.int32)
    gbase = jnp.asarray(group_np * C)
    group = jnp.asarray(group_np)
    lo_c = jnp.asarray(geo.grid_of_level[windows[group_np, 0]])
    hi_c = jnp.asarray(geo.grid_of_level[windows[group_np, 1]])
    sizes = jnp.asarray(windows[:, 1] - windows[:, 0] + 1)
    walkers_of_group = jnp.asarray(np.bincount(group_np, minlength=G).astype(np.int32))

    def dist(cell):
        return jnp.maximum(jnp.maximum(lo_c - cell, cell - hi_c), 0)

    def sweep(state, words: Array):
        W = state.positions.shape[0]
        fdt = state.log_g.lo.dtype
        if nw == 1:
            sites = (words[0] >> site_shift).astype(jnp.int32)
            u = (words[0] & jnp.uint32(0xFFFFFF)).astype(fdt) * jnp.asarray(2.0**-24, fdt)
        else:
            sites = _mulhi(words[0], n)
            u = _uniform(words[1], fdt)
        log_u = jnp.log(u)
        base = jnp.arange(W, dtype=jnp.int32) * n
        ix_all = table[sites] + base[None, :, None]          # (N, W, 5) flat spin indices
        if q > 2:
            offsets = _mulhi(words[2], q - 1) + 1
            xs = (ix_all, log_u, offsets)
        else:
            xs = (ix_all, log_u)
        flat = target.state_index(state.positions).reshape(W * n)
        hi_g = jnp.zeros((G, C), fdt).at[:, grid].set(state.log_g.hi).reshape(G * C)
        inc0 = jnp.zeros((G, C), fdt).at[:, grid].set(state.log_g.lo).reshape(G * C)
        n_before = state.num_updates.hi + state.num_updates.lo
        use_t = state.one_over_t
        log_f_c = jnp.where(state.active, state.log_f, 0.0).astype(fdt)
        active = state.active

        def body(carry, xs):
            s, cell, inc, cnt = carry
            ix, lu = xs[0], xs[1]
            v = s[ix]
            old, nb = v[:, 0], v[:, 1:]
            new = (old + xs[2]) % q if q > 2 else 1 - old
            dc = jnp.sum(nb == new[:, None], axis=1) - jnp.sum(nb == old[:, None], axis=1)
            new_cell = jnp.clip(cell + (dc * cpc2) // 2, 0, C - 1)
            if G == 1:
                lg = hi_g[jnp.concatenate([cell, new_cell])] + inc[jnp.concatenate([cell, new_cell])]
            else:
                ix2 = jnp.concatenate([gbase + cell, gbase + new_cell])
                lg = hi_g[ix2] + inc[ix2]
            if full:
                log_alpha = lg[:W] - lg[W:]
            else:
                d_old, d_new = dist(cell), dist(new_cell)
                log_alpha = jnp.where(d_old == 0,
                                      jnp.where(d_new == 0, lg[:W] - lg[W:], -jnp.inf),
                                      jnp.where(d_new <= d_old, 0.0, -jnp.inf))  # walk into the window
            acc = lu < log_alpha  # False for a NaN log_alpha: rejected
            s = s.at[ix[:, 0]].set(jnp.where(acc, new, old))
            cell = jnp.where(acc, new_cell, cell).astype(cell.dtype)  # int64 table under x64
            t_upd = n_before + cnt.astype(n_before.dtype)
            log_f = jnp.where(use_t, sizes / jnp.maximum(t_upd, 1.0), log_f_c)
            log_f = jnp.where(active, log_f, 0.0).astype(fdt)
            if full:
                inc = inc.at[cell if G == 1 else gbase + cell].add(log_f[0] if G == 1 else log_f[group])
                cnt = cnt + walkers_of_group
                return (s, cell, inc, cnt), (cell if G == 1 else gbase + cell)
            record = dist(cell) == 0
            inc = inc.at[gbase + cell].add(jnp.where(record, log_f[group], 0.0))
            if G == 1:
                cnt = cnt + jnp.sum(record, dtype=jnp.int32)
            else:
                cnt = cnt.at[group].add(record.astype(jnp.int32))
            return (s, cell, inc, cnt), jnp.where(record, gbase + cell, G * C)

        cell0 = grid[state.level]
        carry = (flat, cell0, inc0, jnp.zeros(G, jnp.int32))
        (s, cell, inc, cnt), visits = jax.lax.scan(body, carry, xs)
        hist_c = jnp.zeros(G * C + 1, state.histogram.dtype).at[visits].add(1)[: G * C].reshape(G, C)
        level = jnp.asarray(bins.table)[cell]
        positions = target.spin_value(s.reshape(state.positions.shape), state.positions.dtype)
        num_updates = compensated_fold(
            Compensated(state.num_updates.hi, state.num_updates.lo + cnt.astype(n_before.dtype)))
        return state._replace(
            positions=positions, level=level,
            log_g=compensated_fold(Compensated(state.log_g.hi, inc.reshape(G, C)[:, grid])),
            histogram=state.histogram + hist_c[:, grid], num_updates=num_updates,
        )

    return sweep, nw


def _sweeps(sweep, nw: int, n: int, state, key: PRNGKey, num_sweeps: int, step=None):
    """``num_sweeps`` sweeps keyed by ``key``, words drawn in one block when it is small enough;
    ``step(state) -> state`` (the schedule) after every sweep."""
    W = state.positions.shape[0]
    step = step or (lambda st: st)
    if num_sweeps * nw * n * W <= _BULK_WORDS:
        words = jax.random.bits(key, (num_sweeps, nw, n, W), jnp.uint32)
        state, _ = jax.lax.scan(lambda st, w: (step(sweep(st, w)), None), state, words)
    else:
        def one(st, k):
            return step(sweep(st, jax.random.bits(jax.random.fold_in(key, k), (nw, n, W), jnp.uint32))), None
        state, _ = jax.lax.scan(one, state, jnp.arange(num_sweeps))
    return state


def build_sweeps(target: Any, bins, group: np.ndarray, windows: np.ndarray, num_sweeps: int):
    """Return jitted ``run(key, state) -> state`` doing ``num_sweeps`` WL sweeps per walker.

    A sweep is N = L**2 single-spin trials per walker; ``group`` (W,) maps walkers to rows of
    ln g; ``windows`` (G, 2) are the groups' inclusive level ranges.  ln f is not changed (the
    caller applies its schedule between calls).
    """
    sweep, nw = _make_sweep(target, bins, group, windows)

    @jax.jit  # plain: other samplers call it inside their own jit (no compiler_options there)
    def run(key: PRNGKey, state):
        return _sweeps(sweep, nw, target.num_sites, state, key, num_sweeps)

    return run


def schedule(state, masks: Array, flatness: float, one_over_t: bool, log_f_final: float):
    """The ln f schedule after a sweep, per group (same rule as the host loop of ``wang_landau``).

    In the classic stage ln f halves (and H is reset) when every level of the window was visited
    and :math:`\min H \ge c\,\overline H`; with the 1/t schedule the group switches to ln f = 1/t
    once ln f < 1/t, otherwise it stops once ln f < ``log_f_final``; in the 1/t stage it stops
    once 1/t < ``log_f_final``.
    """
    h = state.histogram
    hf = h.astype(state.log_f.dtype)
    big = jnp.iinfo(h.dtype).max
    h_min = jnp.min(jnp.where(masks, h, big), axis=1)
    h_mean = jnp.sum(jnp.where(masks, hf, 0.0), axis=1) / masks.sum(axis=1)
    flat = (h_min > 0) & (h_min.astype(hf.dtype) >= flatness * h_mean)
    inv_t = masks.sum(axis=1) / jnp.maximum(state.num_updates.hi + state.num_updates.lo, 1.0)
    was_t = state.one_over_t
    halve = state.active & ~was_t & flat
    log_f = jnp.where(halve, 0.5 * state.log_f, state.log_f)
    switch = halve & (log_f < inv_t) if one_over_t else jnp.zeros_like(halve)
    stop = (state.active & was_t & (inv_t < log_f_final)) | (halve & ~switch & (log_f < log_f_final))
    return state._replace(histogram=jnp.where(halve[:, None], 0, h), log_f=log_f,
                          one_over_t=was_t | switch, active=state.active & ~stop)


def error_fn(windows: np.ndarray, window_of_group: np.ndarray, log_g0: float
             ) -> Callable[[Array, Array], Array]:
    """Jittable ``err(lg, ref)``: mean over levels of |ln g - ref| (ln g(E_0) = ``log_g0``) from
    per-group ln g (G, K): groups of a window averaged after removing their means, windows
    stitched by matching means over each overlap (the rule of ``wang_landau._combine``)."""
    num_windows = int(window_of_group.max()) + 1
    rows = [np.nonzero(window_of_group == w)[0] for w in range(num_windows)]
    wins = [tuple(int(v) for v in windows[r[0]]) for r in rows]

    def err(lg: Array, ref: Array) -> Array:
        def window_mean(w):
            lo, hi = wins[w]
            seg = lg[rows[w], lo: hi + 1]
            return jnp.mean(seg - seg.mean(axis=1, keepdims=True), axis=0)

        out = window_mean(0)  # spans levels wins[0][0] .. wins[w - 1][1]
        start = wins[0][0]
        for w in range(1, num_windows):
            lo = wins[w][0]
            k = wins[w - 1][1] + 1 - lo
            ov_prev = out[lo - start:]
            cur = window_mean(w)
            cur = cur + jnp.mean(ov_prev - cur[:k])
            out = jnp.concatenate([out[: lo - start], 0.5 * (ov_prev + cur[:k]), cur[k:]])
        est = out - out[0] + log_g0
        return jnp.mean(jnp.abs(est - ref.astype(lg.dtype)))

    return err


class CheckOutput(NamedTuple):
    """What one device call of :func:`build_checks` returns besides the state."""

    num_checks: Array   # checks done in this call
    errors: Array       # (B,) error at each check (NaN without a reference)
    log_f: Array        # (B,) mean effective ln f over groups at each check
    stopped: Array      # bool: a stop condition was met


def build_checks(target: Any, bins, group, windows, masks, *, check_every: int, flatness: float,
                 one_over_t: bool, error, buffer: int):
    """Jitted ``run(key, state, checks_done, max_checks, log_f_final, stop_at, ref) -> (state, CheckOutput)``.

    Runs up to ``max_checks`` checks of ``check_every`` sweeps (schedule after each check, check
    ``k`` of the run keyed by ``fold_in(key, k)``), stopping early when no group is active or the
    error ``error(ln g, ref)`` is at most ``stop_at``.  ``log_f_final``, ``stop_at`` and the
    reference ``ref`` are arguments, not constants, so one compiled program serves every run of
    the same shape (:func:`checks_program` keeps them).
    """
    sweep, nw = _make_sweep(target, bins, group, windows)
    masks = jnp.asarray(masks)
    sizes = jnp.asarray(masks.sum(axis=1))

    @_jit
    def run(key: PRNGKey, state, checks_done, max_checks, log_f_final, stop_at, ref):
        def step(state):
            return schedule(state, masks, flatness, one_over_t, log_f_final)

        fdt = state.log_f.dtype
        errs0 = jnp.full(buffer, jnp.nan, fdt)

        def cond(c):
            _, _, i, stopped, _, _ = c
            return (i < max_checks) & ~stopped

        def body(c):
            state, k, i, _, errs, lfs = c
            state = step(_sweeps(sweep, nw, target.num_sites, state, jax.random.fold_in(key, k), check_every))
            k = k + 1
            lg = state.log_g.hi + state.log_g.lo
            e = error(lg, ref) if error is not None else jnp.asarray(jnp.nan, fdt)
            inv_t = sizes / jnp.maximum(state.num_updates.hi + state.num_updates.lo, 1.0)
            lf = jnp.mean(jnp.where(state.one_over_t, inv_t, state.log_f))
            stopped = ~jnp.any(state.active) | (e <= stop_at)
            return state, k, i + 1, stopped, errs.at[i].set(e.astype(fdt)), lfs.at[i].set(lf.astype(fdt))

        c = (state, jnp.asarray(checks_done, jnp.int32), jnp.int32(0), jnp.bool_(False), errs0, errs0)
        state, _, i, stopped, errs, lfs = jax.lax.while_loop(cond, body, c)
        return state, CheckOutput(i, errs, lfs, stopped)

    return run


_PROGRAMS: dict = {}
_MAX_PROGRAMS = 8


def checks_program(target: Any, bins, group, windows, masks, window_of_group, log_g0: float, *,
                   check_every: int, flatness: float, one_over_t: bool, with_error: bool, buffer: int):
    """:func:`build_checks` (with :func:`error_fn` when ``with_error``), kept for later runs of the
    same lattice, walkers, windows and options: a second run (another key, ``stop_error``,
    reference or ``log_f_final``) reuses the compiled program instead of compiling it again."""
    key = (type(target).__name__, int(target.L), int(target.num_states), float(target.J),
           int(target.bond_a), int(target.bond_b), np.asarray(bins.levels).tobytes(),
           np.asarray(group, np.int32).tobytes(), np.asarray(windows, np.int64).tobytes(),
           np.asarray(masks, bool).tobytes(), np.asarray(window_of_group, np.int64).tobytes(), float(log_g0),
           int(check_every), float(flatness), bool(one_over_t), bool(with_error), int(buffer),
           bool(jax.config.jax_enable_x64))
    run = _PROGRAMS.pop(key, None)
    if run is None:
        err = error_fn(windows, window_of_group, log_g0) if with_error else None
        run = build_checks(target, bins, group, windows, masks, check_every=check_every, flatness=flatness,
                           one_over_t=one_over_t, error=err, buffer=buffer)
    _PROGRAMS[key] = run  # most recently used last
    while len(_PROGRAMS) > _MAX_PROGRAMS:
        _PROGRAMS.pop(next(iter(_PROGRAMS)))
    return run
