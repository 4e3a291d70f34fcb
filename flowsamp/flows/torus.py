r"""Equivariant continuous flow of ``N`` particles on the torus :math:`[0, L)^d`.

The velocity of particle ``i`` is a sum of messages over the minimum-image displacements
:math:`\delta_{ij} = x_j - x_i` (mod :math:`L`) to every other particle,

.. math::
    v_i(t, x) = \sum_{j \ne i} m_\theta\big(t, \phi(\delta_{ij}), s_i, s_j, e_i\big), \qquad
    e_i = \frac{1}{N-1}\sum_{k \ne i} \psi_\theta\big(\phi(\delta_{ik}), s_k\big),

with :math:`\phi` periodic pair features (Fourier modes
:math:`\sin, \cos(2\pi k\delta_c/L)` and radial Gaussians of a smooth periodic distance),
:math:`s_i` the species, :math:`e_i` a learned many-body environment of particle ``i`` and
:math:`m_\theta, \psi_\theta` flax MLPs (:class:`PairMessage`). The field is smooth and periodic
in every coordinate (a vector field on the torus), it depends on differences only (translation
equivariant: :math:`v(x + c) = v(x)`) and it is permutation equivariant within each species.
The base is the uniform density :math:`L^{-Nd}` (invariant under both groups), so the flow's
density is invariant too.

Since :math:`v_i` depends on :math:`x_i` only through its own displacements
:math:`\delta_{ij}` (the other particles enter :math:`v_i` as fixed neighbours), the divergence
is exactly

.. math:: \nabla\cdot v = \sum_i \operatorname{tr}\frac{\partial v_i}{\partial x_i},

``d`` JVPs of one particle's velocity (cost ``d`` times one field evaluation) instead of
``N d`` JVPs of the whole field (tested against :func:`flowsamp.flows.divergence`).
:math:`\log q(x) = -Nd\log L - \int_0^1\nabla\cdot v\,dt` is exact up to the ODE tolerance (:func:`flowsamp.flows.check_log_q`), so reweighted samples are
exact estimators. Samples are returned wrapped into :math:`[0, L)`; ``log_prob`` accepts any
lift. Train with :func:`flowsamp.train.flow_matching`, which uses the geodesic interpolant
:math:`x_t = x_0 + t\,\mathrm{wrap}(x_1 - x_0)` for a flow with ``box_length``.

References: Chen & Lipman, Riemannian flow matching, arXiv:2302.03660; Köhler, Klein & Noé,
Equivariant flows, arXiv:2006.02425; Klein, Krämer & Noé, Equivariant flow matching,
arXiv:2306.15030; Jung et al., equivariant Riemannian stochastic interpolants for glass formers.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.flows.bases import Base, _check_event, _float_dtype
from flowsamp.flows.cnf import ContinuousFlow, ode_flow
from flowsamp.flows.nets import get_activation
from flowsamp.flows.vector_fields import time_features
from flowsamp.types import Array, Params, PRNGKey

__all__ = ["PairMessage", "torus_cnf", "uniform_torus", "wrap"]


def wrap(d: Array, box_length: float) -> Array:
    """Minimum-image displacement: ``d - L round(d / L)`` in ``[-L/2, L/2]``."""
    L = jnp.asarray(box_length, d.dtype)
    return d - L * jnp.round(d / L)


def uniform_torus(dim: int, box_length: float) -> Base:
    r"""Uniform base on :math:`[0, L)^{dim}`: :math:`\log p_0 = -\,dim\,\log L` (any lift of ``z``)."""
    log_p = -dim * float(np.log(box_length))

    def log_prob(params: Params, z: Array) -> Array:
        _check_event(jnp.asarray(z), dim)
        return jnp.full(jnp.shape(z)[:-1], log_p, jnp.asarray(z).dtype)

    def sample_and_log_prob(params: Params, key: PRNGKey, n: int) -> tuple[Array, Array]:
        z = jax.random.uniform(key, (n, dim), dtype=_float_dtype(), maxval=box_length)
        return z, log_prob(params, z)

    return Base(lambda key: {}, sample_and_log_prob, log_prob, dim)


class PairMessage(nn.Module):
    r"""Velocity of one particle from its neighbour list: ``(t, delta (M, d), s_i, s_j (M,)) -> (d,)``.

    Pair features of each minimum-image displacement :math:`\delta_{ij}`: spatial Fourier modes
    :math:`\sin, \cos(2\pi k\delta_c/L)`, ``num_radial`` Gaussians of the smooth periodic
    distance :math:`r_p = \big[\sum_c (L/\pi)^2\sin^2(\pi\delta_c/L)\big]^{1/2}` (:math:`= r` for
    :math:`r \ll L`), the species one-hots. With ``env_width > 0`` each particle also carries an
    environment :math:`e_i = \sum_{j} \psi(\text{features}_{ij})` (a learned coordination vector,
    many-body, invariant under permutations of the others); the message MLP sees
    ``[features_ij, e_i, time features]`` and the velocity is :math:`\sum_j m_{ij}`. The last
    layer is zero (the flow is its base at init).
    """

    spatial_dim: int
    box_length: float
    num_species: int = 2
    hidden: Sequence[int] = (32, 32)
    num_fourier: int = 6
    num_frequencies: int = 4
    num_radial: int = 0
    env_width: int = 0
    activation: Any = jax.nn.silu

    @nn.compact
    def __call__(self, t: Array, delta: Array, s_i: Array, s_j: Array) -> Array:
        dt, L = delta.dtype, self.box_length
        m = delta.shape[0]
        k = 2.0 * np.pi / L * jnp.arange(1, self.num_fourier + 1, dtype=dt)
        ang = (delta[:, :, None] * k).reshape(m, -1)
        feats = [jnp.sin(ang), jnp.cos(ang), jax.nn.one_hot(s_j, self.num_species, dtype=dt)]
        if self.num_radial > 0:
            r = jnp.sqrt(jnp.sum((L / np.pi * jnp.sin(np.pi / L * delta)) ** 2, -1) + 1e-12)
            mu = jnp.linspace(0.0, L / 2, self.num_radial, dtype=dt)
            width = L / 2 / (self.num_radial - 1) if self.num_radial > 1 else L / 2
            feats.append(jnp.exp(-(((r[:, None] - mu) / width) ** 2)))
        pair = jnp.concatenate(feats, -1)
        node = [jax.nn.one_hot(s_i, self.num_species, dtype=dt), time_features(t, self.num_frequencies).astype(dt)]
        if self.env_width > 0:
            env = jnp.sum(self.activation(nn.Dense(self.env_width, name="env")(pair)), 0) / m
            node.append(env)
        node = jnp.concatenate(node)
        h = jnp.concatenate([pair, jnp.broadcast_to(node, (m, node.shape[0]))], -1)
        for width in self.hidden:
            h = self.activation(nn.Dense(width)(h))
        out = nn.Dense(self.spatial_dim, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)(h)
        return jnp.sum(out, 0)


def torus_cnf(
    num_particles: int,
    spatial_dim: int,
    box_length: float,
    species: Sequence[int] | None = None,
    *,
    hidden: Sequence[int] = (64, 64),
    num_fourier: int = 4,
    num_radial: int = 16,
    env_width: int = 16,
    num_frequencies: int = 4,
    activation: str = "silu",
    solver: str = "tsit5",
    num_steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 4096,
    devices: Sequence[Any] | None = None,
) -> ContinuousFlow:
    r"""Permutation- and translation-equivariant CNF of particles on the torus (module docs).

    Parameters
    ----------
    num_particles, spatial_dim, box_length
        ``N``, ``d`` and ``L``; configurations are flat ``(N * d,)``.
    species
        Species label per particle (default all 0); the field is equivariant under
        permutations within a species.
    hidden, num_fourier, num_radial, env_width, num_frequencies, activation
        The message MLP (:class:`PairMessage`): widths, number ``K`` of spatial Fourier modes,
        number of radial Gaussians (0: none), width of the many-body environment embedding
        (0: a pair-additive field), number of time frequencies, a smooth activation.
    solver, num_steps, rtol, atol, max_steps, devices
        The ODE solve (:func:`flowsamp.flows.ode_flow`; ``devices`` shards the points).

    Returns
    -------
    ContinuousFlow
        Uniform at init; ``sample_and_log_prob`` / ``forward`` return positions in
        :math:`[0, L)`; carries ``velocity``, ``base``, ``box_length``, ``num_particles``,
        ``spatial_dim``, ``message`` and ``divergence_fn``.
    """
    n, d, L = int(num_particles), int(spatial_dim), float(box_length)
    if n < 2 or d < 1 or not L > 0:
        raise ValueError(f"torus_cnf: need num_particles >= 2, spatial_dim >= 1, box_length > 0; got {n}, {d}, {L}")
    species = np.zeros(n, int) if species is None else np.asarray(species, int)
    if species.shape != (n,) or species.min() < 0:
        raise ValueError(f"torus_cnf: species must be {n} non-negative ints, got shape {species.shape}")
    for name, v in (("num_fourier", num_fourier), ("num_radial", num_radial), ("env_width", env_width),
                    ("num_frequencies", num_frequencies)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"torus_cnf: {name} must be a non-negative int, got {v!r}")
    if num_fourier == 0 and num_radial == 0:
        raise ValueError("torus_cnf: need num_fourier > 0 or num_radial > 0 (the field has no pair features)")
    msg = PairMessage(d, L, int(species.max()) + 1, tuple(int(h) for h in hidden), int(num_fourier),
                      int(num_frequencies), int(num_radial), int(env_width), activation=get_activation(activation))
    others = np.array([[j for j in range(n) if j != i] for i in range(n)])  # (N, N - 1) neighbour lists
    s_all = jnp.asarray(species)
    s_nb = jnp.asarray(species[others])

    def init(key: PRNGKey) -> Any:
        dt = _float_dtype()
        return msg.init(key, jnp.zeros((), dt), jnp.ones((n - 1, d), dt), s_all[0], s_nb[0])

    def one(field_params: Any, t: Array, xi: Array, nb: Array, si: Array, sj: Array) -> Array:
        """Velocity of the particle at ``xi`` with neighbours at ``nb`` (``(N - 1, d)``)."""
        return msg.apply(field_params, jnp.asarray(t, xi.dtype), wrap(nb - xi, L), si, sj)

    def velocity(field_params: Any, t: Array, x: Array) -> Array:
        p = x.reshape(n, d)
        return jax.vmap(lambda xi, nb, si, sj: one(field_params, t, xi, nb, si, sj))(
            p, p[others], s_all, s_nb).reshape(-1)

    def divergence_fn(field_params: Any, t: Array, x: Array) -> Array:
        # v_i depends on x_i only through its own neighbour displacements (translation
        # invariance of the message): div v = sum_i tr dv_i/dx_i, d JVPs of one particle each.
        p = x.reshape(n, d)
        tr = lambda xi, nb, si, sj: jnp.trace(jax.jacfwd(lambda y: one(field_params, t, y, nb, si, sj))(xi))
        return jnp.sum(jax.vmap(tr)(p, p[others], s_all, s_nb))

    flow = ode_flow(uniform_torus(n * d, L), velocity, init, solver=solver, num_steps=num_steps, rtol=rtol,
                    atol=atol, max_steps=max_steps, divergence_fn=divergence_fn,
                    devices=devices)

    def sample_and_log_prob(params: Any, key: PRNGKey, num: int) -> tuple[Array, Array]:
        x, log_q = flow.sample_and_log_prob(params, key, num)
        return jnp.mod(x, L), log_q

    def forward(params: Any, z: Array) -> tuple[Array, Array]:
        x, log_det = flow.forward(params, z)
        return jnp.mod(x, L), log_det

    def inverse(params: Any, x: Array) -> tuple[Array, Array]:
        z, log_det = flow.inverse(params, x)
        return jnp.mod(z, L), log_det

    out = ContinuousFlow(flow.init, sample_and_log_prob, flow.log_prob, forward, inverse, flow.dim)
    out.velocity, out.base = flow.velocity, flow.base
    out.box_length, out.num_particles, out.spatial_dim = L, n, d
    out.message = msg
    out.divergence_fn = lambda params, t, x: divergence_fn(params["layers"][0], t, x)
    return out
