r"""The committor by active importance sampling (Rotskoff, Mitchell & Vanden-Eijnden 2022).

The committor :math:`q(x) = P_x(\tau_B < \tau_A)` of the reversible diffusion with invariant
density :math:`\pi \propto e^{\log\pi}` minimises the Dirichlet energy

.. math::

    \nu[q] = \mathbb E_\pi |\nabla q|^2 \quad\text{over } q = 0 \text{ on } A,\ q = 1 \text{ on } B,

whose minimiser solves :math:`\nabla\cdot(\pi\nabla q) = 0`, and :math:`\nu = \min \nu[q]`
gives the transition rate :math:`k_{AB} = \beta^{-1}\nu` of overdamped Langevin dynamics
:math:`dX = \beta^{-1}\nabla\log\pi\,dt + \sqrt{2\beta^{-1}}\,dW`. The expectation is
dominated by the transition region where :math:`\pi` has almost no mass, so :math:`q_\theta`
(a flax network with a sigmoid output) is trained on draws from umbrella windows on its own
level sets, :math:`\pi_l \propto \pi\, e^{-\frac12 k (z_\theta(x) - u_l)^2}` on the logit
:math:`z_\theta = \log(q_\theta / (1 - q_\theta))` (``ladder="logit"``, default; ``"q"``: on
:math:`q_\theta` itself, :math:`u_l \in [0, 1]`), with the :math:`u_l` evenly spaced from the mean
:math:`z_\theta` of the A draws to that of the B draws, re-placed every round
(:mod:`flowsamp.rare.umbrella`), neighbouring windows exchanging configurations (Hamiltonian
replica exchange), combined by MBAR weights :math:`w_n`. The logit ladder: under :math:`\pi` the
free energy of :math:`q` falls by ~15 (in units of kT) between :math:`q = 0.01` and the A basin at
:math:`q \approx 10^{-3}` (Müller-Brown), so windows on :math:`q` near 0 and 1 all collapse into the
basins (a window at :math:`u = 0.2` is bimodal), while the free energy of :math:`z` is nearly flat
across the transition region.
Training alternates a sampling round (every window's chains advance ``num_steps`` steps of an
``fs.kernels`` kernel under the current :math:`q_\theta`) with ``num_opt_steps`` optax steps
(:func:`flowsamp.train.fit_steps`) on

.. math::

    L(\theta) = \frac{1}{\nu_0}\sum_n w_n |\nabla q_\theta(x_n)|^2 + \lambda\Big(\overline{q_\theta^2}\big|_{A} +
    \overline{(1 - q_\theta)^2}\big|_{B}\Big),

the Dirichlet term in units of its value :math:`\nu_0` on the first round (:math:`\nu` is
exponentially small and would otherwise vanish next to the penalty). It runs over all of space,
:math:`A` and :math:`B` included: masked there, the network can hide its whole rise inside
:math:`A` or :math:`B` between the boundary draws, at no cost. The boundary penalty is on
draws from :math:`\pi` restricted to :math:`A` and to :math:`B`. The weights do not depend on
:math:`\theta` (they reweight to :math:`\pi`), so they are constants for the gradient. With
``importance_sampling=False`` the same estimator runs with :math:`k = 0`: plain draws from
:math:`\pi`, uniform weights, the same number of samples. The returned ``q(x)`` is 0 on
:math:`A`, 1 on :math:`B` and :math:`q_\theta` elsewhere; ``nu`` is the MBAR estimate of
:math:`\nu[q_\theta] = \mathbb E_\pi|\nabla q_\theta|^2` from a final production round, ``nu_se`` its jackknife standard error over
chains (one chain of every window left out at a time, MBAR re-solved).

References
----------
G. M. Rotskoff, A. R. Mitchell and E. Vanden-Eijnden, "Active importance sampling for
variational objectives dominated by rare events", MSML 2022, arXiv:2008.06334.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowsamp.base import as_key
from flowsamp.estimators.verdict import Verdict, importance_verdict, warn_if_not_converged
from flowsamp.flows.nets import MLP, get_activation
from flowsamp.kernels.rwmh import rwmh
from flowsamp.rare.umbrella import mbar, run_windows, step_parameter
from flowsamp.train.fit import fit_steps
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["CommittorResult", "committor"]


class CommittorResult(NamedTuple):
    """Result of :func:`committor`.

    ``q(x)``: committor on a batch ``(n, dim)`` (or one point); ``params``: network parameters
    (``q_net(params, x)`` is the raw sigmoid net on one point, ``cv_net(params, x)`` the windows'
    collective variable: logit q or q); ``nu``, ``nu_se``: the Dirichlet
    energy :math:`\\mathbb E_\\pi|\\nabla q|^2` and its SE; ``rate``, ``rate_se``: :math:`\\nu/\\beta`;
    ``centres``: the window ladder; ``log_Z_windows``: MBAR :math:`\\log Z_l - \\log Z_0`;
    ``positions``, ``log_weights``: the production draws ``(L, C, T, dim)`` and their MBAR
    log-weights; ``history``: per-step loss, Dirichlet term, penalty; ``acceptance`` per window.
    """

    q: Callable[[Array], Array]
    q_net: Callable[[Any, Array], Array]
    cv_net: Callable[[Any, Array], Array]
    params: Any
    nu: float
    nu_se: float
    rate: float
    rate_se: float
    centres: np.ndarray
    log_Z_windows: np.ndarray
    positions: np.ndarray
    log_weights: np.ndarray
    acceptance: np.ndarray
    history: dict
    diagnostics: dict
    converged: bool
    problems: list


def _batch(fn: Callable[[Array], Array], x: Array) -> Array:
    return jnp.asarray(fn(x)).reshape(x.shape[0])


def _check(num: Any, name: str, minimum: int = 1) -> int:
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < minimum:
        raise ValueError(f"committor: `{name}` must be an int >= {minimum}, got {num!r}")
    return int(num)


def committor(
    key: PRNGKey,
    log_prob: LogProbFn,
    in_A: Callable[[Array], Array],
    in_B: Callable[[Array], Array],
    initial_positions: Array,
    *,
    importance_sampling: bool = True,
    replica_exchange: bool = True,
    num_windows: int = 16,
    chains_per_window: int = 8,
    spring: float | None = None,
    ladder: str = "logit",
    num_rounds: int = 60,
    num_steps: int = 50,
    num_opt_steps: int = 10,
    num_production_steps: int = 400,
    thin: int = 5,
    kernel: Any = rwmh,
    step_size: float | None = None,
    kernel_params: dict | None = None,
    hidden: Sequence[int] = (64, 64),
    activation: str = "tanh",
    learning_rate: float = 3e-3,
    penalty: float = 100.0,
    num_boundary: int = 256,
    beta: float = 1.0,
) -> CommittorResult:
    r"""Learn the committor between ``A`` and ``B`` and estimate :math:`\nu = \mathbb E_\pi|\nabla q|^2`.

    Parameters
    ----------
    key
        PRNG key.
    log_prob
        :math:`\log\pi(x)` of one point ``(dim,)`` (unnormalised).
    in_A, in_B
        Indicators of the two sets on a batch ``(n, dim) -> (n,)`` bool (jax-traceable).
    initial_positions
        ``(n, dim)`` points with at least one in ``A`` and one in ``B`` (e.g. the two minima,
        or a guessed path); window chains start at the candidate (these points and the segment
        between the mean A and B points) whose initial :math:`q` is nearest the window's
        centre, boundary chains at the points inside ``A`` / ``B``.
    importance_sampling
        ``False``: the same estimator with plain draws from :math:`\pi` (spring 0).
    replica_exchange
        Swap configurations between neighbouring windows every ``thin`` steps
        (:func:`flowsamp.rare.run_windows`). Without it the windows just above :math:`u = 0`,
        whose :math:`q`-marginal holds both the A basin and the transition region, stay in the
        mode their chains started in: on Müller-Brown that misweighed the ladder by
        :math:`e^{6}` and gave :math:`\hat\nu` 300 times too small.
    num_windows, chains_per_window
        Ladder size :math:`L` (:math:`u_l` evenly spaced on [0, 1]) and chains per window
        :math:`C` (:math:`C \ge 2` for the jackknife SE).
    spring
        :math:`k` of the bias :math:`\frac12 k (\xi - u_l)^2` in log-density units; default: a
        window's width :math:`k^{-1/2}` is :math:`0.7\times` the ladder spacing, so neighbours
        overlap (the usual umbrella rule): :math:`2 L^2` on ``q``, :math:`(L-1)^2 / (0.7\,\Delta z)^2`
        on the logit ladder of span :math:`\Delta z`.
    ladder
        ``"logit"`` (windows on :math:`\xi = \operatorname{logit} q_\theta` between the A and B
        draws' means) or ``"q"`` (:math:`\xi = q_\theta`, :math:`u_l \in [0, 1]`).
    num_rounds, num_steps, num_opt_steps, num_production_steps
        Training rounds; sampler steps per round and window chain; optimiser steps per round;
        sampler steps of the final estimate.
    thin
        Keep every ``thin``-th draw of each chain (training and production).
    kernel, step_size, kernel_params
        An ``fs.kernels`` kernel API (``rwmh``, ``mala``, ``hmc``), its initial step
        parameter (default 2 % of the A-B distance; adapted per window between rounds by
        Robbins-Monro towards :data:`~flowsamp.kernels.TARGET_ACCEPTANCE`), other parameters.
    hidden, activation
        The committor network (an MLP, sigmoid output).
    learning_rate, penalty
        Adam learning rate; boundary penalty :math:`\lambda`.
    num_boundary
        Draws from :math:`\pi` restricted to ``A`` (and to ``B``) for the penalty.
    beta
        Inverse temperature for the rate :math:`k_{AB} = \nu/\beta`.

    Returns
    -------
    CommittorResult

    Raises
    ------
    ValueError
        If no initial position lies in ``A`` or in ``B``, or a count is not a positive int.
    """
    key = as_key(key)
    x_init = jnp.asarray(initial_positions)
    if x_init.ndim != 2:
        raise ValueError(f"committor: `initial_positions` must have shape (n, dim), got {x_init.shape}")
    dtype = x_init.dtype if jnp.issubdtype(x_init.dtype, jnp.floating) else jnp.float32
    x_init = x_init.astype(dtype)
    dim = x_init.shape[1]
    L = _check(num_windows, "num_windows", 2)
    C = _check(chains_per_window, "chains_per_window", 2)
    for name, v in (("num_rounds", num_rounds), ("num_steps", num_steps), ("num_opt_steps", num_opt_steps),
                    ("num_production_steps", num_production_steps), ("num_boundary", num_boundary)):
        _check(v, name, 0 if name == "num_rounds" else 1)
    step_name, target_acc = step_parameter(kernel)
    a_mask = np.asarray(_batch(in_A, x_init))
    b_mask = np.asarray(_batch(in_B, x_init))
    if not a_mask.any() or not b_mask.any():
        raise ValueError(
            f"committor: `initial_positions` needs a point in A and a point in B (found {int(a_mask.sum())} in A, "
            f"{int(b_mask.sum())} in B)"
        )
    a_pt, b_pt = x_init[a_mask].mean(0), x_init[b_mask].mean(0)
    span = float(jnp.linalg.norm(b_pt - a_pt))
    if ladder not in ("logit", "q"):
        raise ValueError(f"committor: `ladder` must be 'logit' or 'q', got {ladder!r}")
    if spring is not None and not float(spring) > 0:
        raise ValueError(f"committor: `spring` must be > 0, got {spring!r}")
    step0 = 0.02 * span if step_size is None else float(step_size)

    net = MLP(tuple(hidden), 1, 1, get_activation(activation))
    key, k_net, k_bnd, k_fit, k_train, k_prod = jax.random.split(key, 6)
    params = net.init(k_net, jnp.zeros((dim,), dtype))

    def z_net(p, x):  # logit q
        return net.apply(p, x)[..., 0, 0]

    def q_net(p, x):
        return jax.nn.sigmoid(z_net(p, x))

    cv_net = z_net if ladder == "logit" else q_net

    # boundary draws: pi restricted to A and to B
    def restricted(inside):
        def lp(x):
            return jnp.where(_batch(inside, x[None])[0], log_prob(x), -jnp.inf)

        return lp

    def boundary(key, inside, mask):
        start = jnp.repeat(x_init[mask][:1], C, axis=0)[None]
        steps = max(1, int(np.ceil(num_boundary / C)))
        s = run_windows(key, kernel, restricted(inside), lambda x: jnp.zeros((), dtype), jnp.zeros((1,), dtype),
                        jnp.zeros((), dtype), start, jnp.full((1,), 0.5 * step0, dtype), steps, kernel_params)
        return s.positions.reshape(-1, dim)[-num_boundary:]

    ka, kb = jax.random.split(k_bnd)
    bnd_a, bnd_b = boundary(ka, in_A, a_mask), boundary(kb, in_B, b_mask)

    # initial q: regression on the projection onto the A-B segment
    ab = b_pt - a_pt
    seg = a_pt + jnp.linspace(-0.2, 1.2, 512, dtype=dtype)[:, None] * ab
    fit_x = jnp.concatenate([seg + 0.1 * span * jax.random.normal(k_fit, seg.shape, dtype), bnd_a, bnd_b])
    fit_t = jnp.clip((fit_x - a_pt) @ ab / (ab @ ab), 0.0, 1.0)
    optimizer = optax.adam(learning_rate)

    def mse(p, _key):
        return jnp.mean((jax.vmap(q_net, (None, 0))(p, fit_x) - fit_t) ** 2), {}

    params, _, _ = jax.jit(lambda p: fit_steps(mse, optax.adam(1e-2), p, optax.adam(1e-2).init(p), k_fit, 300))(params)

    def windows(p):
        """The ladder (centres, spring) of the network ``p`` (module docs)."""
        if not importance_sampling:
            return jnp.linspace(0.0, 1.0, L, dtype=dtype), jnp.zeros((), dtype)
        if ladder == "q":
            return jnp.linspace(0.0, 1.0, L, dtype=dtype), jnp.asarray(2.0 * L**2 if spring is None else spring, dtype)
        lo = jnp.mean(jax.vmap(z_net, (None, 0))(p, bnd_a))
        hi = jnp.mean(jax.vmap(z_net, (None, 0))(p, bnd_b))
        width = jnp.maximum(hi - lo, 1.0)
        centres = 0.5 * (lo + hi) + width * jnp.linspace(-0.5, 0.5, L, dtype=dtype)
        k = (L - 1) ** 2 / (0.7 * width) ** 2 if spring is None else jnp.asarray(spring, dtype)
        return centres, jnp.asarray(k, dtype)

    # window starts: the finite candidate with the collective variable nearest u_l
    cand = jnp.concatenate([x_init, a_pt + jnp.linspace(0.0, 1.0, 64, dtype=dtype)[:, None] * ab])
    ok = np.isfinite(np.asarray(jax.vmap(log_prob)(cand)))
    cand = cand[ok]
    qc = jax.vmap(cv_net, (None, 0))(params, cand)
    centres0, _ = windows(params)
    start = cand[jnp.argmin(jnp.abs(qc[None, :] - centres0[:, None]), axis=1)]
    positions = jnp.repeat(start[:, None, :], C, axis=1)
    steps = jnp.full((L,), step0, dtype)
    counts = jnp.full((L,), C, dtype)

    def sample_and_weigh(p, key, positions, steps, num, log_Z0, iters):
        centres, k_spring = windows(p)
        s = run_windows(key, kernel, log_prob, lambda x: cv_net(p, x), centres, k_spring, positions, steps, num,
                        kernel_params, thin, exchange=bool(importance_sampling and replica_exchange))
        xs = s.positions.reshape(-1, dim)
        bias = 0.5 * k_spring * (jax.vmap(cv_net, (None, 0))(p, xs)[None, :] - centres[:, None]) ** 2
        log_Z, log_w, res = mbar(bias, counts * s.positions.shape[2], iters, log_Z0)
        return s, xs, log_Z, log_w, res

    def dirichlet(p, xs, w):
        g = jax.vmap(jax.grad(q_net, argnums=1), (None, 0))(p, xs)
        return jnp.sum(w * jnp.sum(g**2, axis=-1))

    @jax.jit
    def train_round(params, opt_state, positions, steps, log_Z, scale, key, r):
        ks, ko = jax.random.split(key)
        s, xs, log_Z, log_w, _ = sample_and_weigh(params, ks, positions, steps, num_steps, log_Z, 100)
        w = jnp.exp(log_w)

        # the Dirichlet term in units of its value on the first round (0 = not yet known)
        d_now = dirichlet(params, xs, w)
        scale = jnp.where(scale > 0, scale, d_now)

        def loss(p, _key):
            d = dirichlet(p, xs, w)
            pen = jnp.mean(jax.vmap(q_net, (None, 0))(p, bnd_a) ** 2) + jnp.mean(
                (1.0 - jax.vmap(q_net, (None, 0))(p, bnd_b)) ** 2)
            return d / (scale + jnp.finfo(dtype).tiny) + penalty * pen, {"dirichlet": d, "penalty": pen}

        params, opt_state, rec = fit_steps(loss, optimizer, params, opt_state, ko, num_opt_steps, start=r * num_opt_steps)
        new_steps = jnp.exp(jnp.log(steps) + (s.acceptance - target_acc))  # Robbins-Monro, rate 1 per round
        return params, opt_state, s.last, new_steps, log_Z, scale, rec, s.acceptance

    opt_state = optimizer.init(params)
    records = []
    log_Z = jnp.zeros((L,), dtype)
    scale = jnp.zeros((), dtype)
    for r in range(int(num_rounds)):
        params, opt_state, positions, steps, log_Z, scale, rec, _ = train_round(
            params, opt_state, positions, steps, log_Z, scale, jax.random.fold_in(k_train, r), jnp.int32(r))
        records.append(jax.device_get(rec))
    history = {
        "loss": np.concatenate([np.asarray(r["loss"]) for r in records]) if records else np.zeros(0),
        "dirichlet": np.concatenate([np.asarray(r["aux"]["dirichlet"]) for r in records]) if records else np.zeros(0),
        "penalty": np.concatenate([np.asarray(r["aux"]["penalty"]) for r in records]) if records else np.zeros(0),
    }

    # production: fixed q, fresh draws, MBAR, jackknife over chains
    @jax.jit
    def production(params, positions, steps, log_Z, key):
        s, xs, log_Z, log_w, res = sample_and_weigh(params, key, positions, steps, num_production_steps, log_Z, 500)
        nu = dirichlet(params, xs, jnp.exp(log_w))
        T = s.positions.shape[2]
        keep = jnp.asarray(np.array([[c for c in range(C) if c != g] for g in range(C)]))
        centres, k_spring = windows(params)

        def leave_out(idx):
            pos = s.positions[:, idx].reshape(-1, dim)
            bias = 0.5 * k_spring * (jax.vmap(cv_net, (None, 0))(params, pos)[None, :] - centres[:, None]) ** 2
            _, lw, _ = mbar(bias, jnp.full((L,), (C - 1) * T, dtype), 100, log_Z)
            return dirichlet(params, pos, jnp.exp(lw))

        jack = jax.lax.map(leave_out, keep)
        se = jnp.sqrt((C - 1) / C * jnp.sum((jack - jack.mean()) ** 2))
        return s, nu, se, log_Z, log_w, res, centres, k_spring

    s, nu, se, log_Z, log_w, res, centres, k_spring = production(params, positions, steps, log_Z, k_prod)
    nu, se = float(nu), float(se)
    log_w = np.asarray(log_w)
    iv = importance_verdict(log_w)
    problems = list(iv.problems)
    diag = dict(iv.diagnostics)
    acc = np.asarray(s.acceptance)
    diag.update({"spring": float(k_spring), "acceptance": acc, "swap_acceptance": np.asarray(s.swap_acceptance), "num_nonfinite": int(s.num_nonfinite), "step_sizes": np.asarray(steps),
                 "relative_se": se / nu if nu > 0 else float("nan"), "mbar_residual": float(res),
                 "final_penalty": float(history["penalty"][-1]) if len(history["penalty"]) else float("nan")})
    if acc.min() < 0.05:
        problems.append(f"window acceptance {acc.min():.3f} < 0.05")
    if not np.isfinite(nu) or not np.isfinite(se):
        problems.append("non-finite Dirichlet estimate")
    verdict = Verdict(diag, not problems, problems)
    warn_if_not_converged(verdict, "committor")

    def q(x):
        x = jnp.asarray(x, dtype)
        one = x.ndim == 1
        xb = x[None] if one else x
        val = jax.vmap(q_net, (None, 0))(params, xb)
        val = jnp.where(_batch(in_A, xb), 0.0, jnp.where(_batch(in_B, xb), 1.0, val))
        return val[0] if one else val

    return CommittorResult(
        q=q, q_net=q_net, cv_net=cv_net, params=params, nu=nu, nu_se=se, rate=nu / beta, rate_se=se / beta,
        centres=np.asarray(centres), log_Z_windows=np.asarray(log_Z), positions=np.asarray(s.positions),
        log_weights=log_w, acceptance=acc, history=history, diagnostics=diag,
        converged=verdict.converged, problems=problems,
    )
