r"""Score-based diffusion (VP / VE SDE) as a flow with an exact likelihood.

Forward (noising) SDE on :math:`t\in[0,1]`, data at :math:`t=0`, in standardised coordinates
:math:`y = (x - \mathrm{loc})/\mathrm{scale}`:

* VP: :math:`dy = -\tfrac12\beta(t)\,y\,dt + \sqrt{\beta(t)}\,dW`, :math:`\beta(t)=\beta_{\min}+t(\beta_{\max}-\beta_{\min})`;
* VE: :math:`dy = \sqrt{d\sigma^2/dt}\,dW`, :math:`\sigma(t)=\sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t`.

Both have Gaussian transitions :math:`y_t = \alpha_t y_0 + \sigma_t\varepsilon`. A network predicts
the noise, :math:`\hat\varepsilon_\theta(t, y) = \sigma_t y/(\alpha_t^2+\sigma_t^2) + \mathrm{net}_\theta(t, y)`
(the first term is exact for standard-normal data, so at init the model *is* that Gaussian),
and the score is :math:`s_\theta = -\hat\varepsilon_\theta/\sigma_t`.

Sampling:

* **probability-flow ODE** :math:`dy/dt = f(y,t) - \tfrac12 g(t)^2 s_\theta(t,y)` from
  :math:`t=1` (base :math:`N(0, \alpha_1^2+\sigma_1^2)`) down to :math:`t=t_{\min}`, solved by
  :func:`flowsamp.flows.cnf.ode_flow` with the exact divergence: the returned object *is a*
  :class:`~flowsamp.base.Flow` whose ``log_prob`` is the exact density of the ODE's pushforward
  (to solver tolerance), so IS / IMH remove the model error;
* **reverse SDE** :math:`dy = [f - g^2 s_\theta]dt + g\,d\bar W` (Euler-Maruyama,
  ``sample_sde``): often sharper samples but no tractable density, so it cannot be corrected.

References: Song et al., Score-based generative modeling through SDEs, arXiv:2011.13456;
Ho et al., DDPM, arXiv:2006.11239; Vincent, Denoising score matching, Neural Comput. 2011.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.flows.bases import Base, _check_dim, _float_dtype
from flowsamp.flows.cnf import ContinuousFlow, ode_flow
from flowsamp.flows.vector_fields import field_functions
from flowsamp.types import Array, Params, PRNGKey

__all__ = ["SDE", "vp_sde", "ve_sde", "DiffusionFlow", "diffusion"]

_LOG_2PI = float(np.log(2 * np.pi))


class SDE(NamedTuple):
    """A linear noising SDE: ``alpha(t)``, ``sigma(t)`` of the transition, ``drift_coef(t)``
    (``f(y, t) = drift_coef(t) * y``), ``g2(t)`` (squared diffusion), ``t_min`` (end of sampling)."""

    name: str
    alpha: Callable[[Array], Array]
    sigma: Callable[[Array], Array]
    drift_coef: Callable[[Array], Array]
    g2: Callable[[Array], Array]
    t_min: float


def vp_sde(beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3) -> SDE:
    r"""Variance-preserving SDE: :math:`\alpha_t = e^{-\frac12\int_0^t\beta}`, :math:`\sigma_t^2 = 1-\alpha_t^2`."""
    if not 0 < beta_min < beta_max:
        raise ValueError(f"vp_sde: need 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
    if not 0 < t_min < 1:
        raise ValueError(f"vp_sde: t_min must be in (0, 1), got {t_min}")
    beta = lambda t: beta_min + t * (beta_max - beta_min)
    log_alpha = lambda t: -0.5 * (beta_min * t + 0.5 * (beta_max - beta_min) * t**2)
    return SDE("vp", lambda t: jnp.exp(log_alpha(t)), lambda t: jnp.sqrt(-jnp.expm1(2 * log_alpha(t))),
               lambda t: -0.5 * beta(t), beta, float(t_min))


def ve_sde(sigma_min: float = 0.01, sigma_max: float = 10.0) -> SDE:
    r"""Variance-exploding SDE: :math:`\alpha_t = 1`, :math:`\sigma_t = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t`,
    :math:`g^2 = d\sigma_t^2/dt = 2\sigma_t^2\log(\sigma_{\max}/\sigma_{\min})`."""
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"ve_sde: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    log_ratio = float(np.log(sigma_max / sigma_min))
    sigma = lambda t: sigma_min * jnp.exp(t * log_ratio)
    return SDE("ve", lambda t: jnp.ones_like(t), sigma, lambda t: jnp.zeros_like(t),
               lambda t: 2 * sigma(t) ** 2 * log_ratio, 0.0)


class DiffusionFlow(ContinuousFlow):
    """A :class:`~flowsamp.base.Flow` (probability-flow ODE) that also carries ``sde``,
    ``noise_prediction(params, t, y)`` (standardised coordinates), ``score(params, t, x)``,
    ``sample_sde(params, key, n, num_steps)``, ``loc``, ``scale``, ``gaussian_prior``."""


def _gaussian_base(loc: Array, std: Array) -> Base:
    dim = loc.shape[0]

    def log_prob(params: Params, z: Array) -> Array:
        del params
        u = (z - loc.astype(z.dtype)) / std.astype(z.dtype)
        return -0.5 * jnp.sum(u * u, -1) - jnp.sum(jnp.log(std)).astype(z.dtype) - 0.5 * dim * _LOG_2PI

    def sample_and_log_prob(params: Params, key: PRNGKey, n: int) -> tuple[Array, Array]:
        dt = _float_dtype()
        z = loc.astype(dt) + std.astype(dt) * jax.random.normal(key, (n, dim), dt)
        return z, log_prob(params, z)

    return Base(lambda key: {}, sample_and_log_prob, log_prob, dim)


def diffusion(
    dim: int,
    hidden: Sequence[int] = (64, 64),
    *,
    sde: str | SDE = "vp",
    field: nn.Module | None = None,
    loc: Any = None,
    scale: Any = None,
    gaussian_prior: bool = True,
    output: str = "noise",
    activation: str | Callable[[Array], Array] = "silu",
    num_frequencies: int = 4,
    solver: str = "tsit5",
    num_steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 4096,
    devices: Sequence[Any] | None = None,
) -> DiffusionFlow:
    r"""Score-based diffusion model whose probability-flow ODE is a Flow with exact log q.

    .. math::
        \log q_\theta(x) = \log p_1(y_1) - \int_{t_{\min}}^{1}\nabla\cdot\Big[\tfrac12 g(t)^2
        s_\theta(t, y_t) - f(y_t, t)\Big]dt - \sum_i\log \mathrm{scale}_i ,
        \quad y_{t_{\min}} = (x-\mathrm{loc})/\mathrm{scale}.

    Parameters
    ----------
    dim
        Event dimension.
    hidden
        Widths of the default :class:`~flowsamp.flows.vector_fields.TimeMLP` network.
    sde
        ``"vp"`` (:func:`vp_sde` defaults), ``"ve"`` (:func:`ve_sde`) or an :class:`SDE`.
    field
        A flax module ``(t, y) -> (dim,)`` replacing the default network (e.g. a lattice score).
    loc, scale
        Fixed standardisation of the data (scalars or ``(dim,)``; default 0 and 1): set them
        to the training data's mean and standard deviation.
    gaussian_prior
        Add the exact standard-normal noise prediction :math:`\sigma_t y/(\alpha_t^2+\sigma_t^2)`
        to the network (default): the untrained model is :math:`N(\mathrm{loc}, \mathrm{scale}^2)`.
    output
        ``"noise"``: the network predicts :math:`\varepsilon`; ``"score"``: it outputs the score
        :math:`s` itself (then :math:`\hat\varepsilon = -\sigma_t s`; e.g. linear lattice scores).
    solver, num_steps, rtol, atol, max_steps
        Probability-flow ODE solve, see :func:`flowsamp.flows.cnf.ode_flow`.
    devices
        Shard every batch of points of the probability-flow ODE over these devices
        (:func:`flowsamp.flows.cnf.ode_flow`; ``sample_sde`` runs on one device).

    Returns
    -------
    DiffusionFlow
        A Flow (``init / sample_and_log_prob / log_prob / forward / inverse``) plus ``sde``,
        ``noise_prediction``, ``score``, ``sample_sde``; train with
        :func:`flowsamp.train.score_matching`.
    """
    dim = _check_dim(dim)
    if isinstance(sde, str):
        if sde not in ("vp", "ve"):
            raise ValueError(f"diffusion: unknown sde {sde!r}; expected 'vp', 've' or an SDE")
        sde = vp_sde() if sde == "vp" else ve_sde()
    if not isinstance(sde, SDE):
        raise TypeError(f"diffusion: `sde` must be 'vp', 've' or an SDE, got {type(sde).__name__}")
    if output not in ("noise", "score"):
        raise ValueError(f"diffusion: `output` must be 'noise' or 'score', got {output!r}")
    dt = _float_dtype()
    loc = jnp.broadcast_to(jnp.asarray(0.0 if loc is None else loc, dt), (dim,))
    scale = jnp.broadcast_to(jnp.asarray(1.0 if scale is None else scale, dt), (dim,))
    if not bool(jnp.all(scale > 0)) or not bool(jnp.all(jnp.isfinite(loc))):
        raise ValueError("diffusion: `scale` must be positive and `loc` finite")
    init_field, apply_field = field_functions(field, dim, hidden, activation, num_frequencies, "diffusion")
    t_min = sde.t_min

    def noise_prediction(field_params: Any, t: Array, y: Array) -> Array:
        t = jnp.asarray(t, y.dtype)
        a, s = sde.alpha(t), sde.sigma(t)
        net = apply_field(field_params, t, y)
        eps = -s * net if output == "score" else net
        if gaussian_prior:
            eps = eps + s * y / (a * a + s * s)
        return eps

    def score_y(field_params: Any, t: Array, y: Array) -> Array:
        return -noise_prediction(field_params, t, y) / sde.sigma(jnp.asarray(t, y.dtype))

    def velocity(field_params: Any, tau: Array, x: Array) -> Array:
        # tau in [0, 1] runs t from 1 down to t_min; x in data coordinates
        t = 1.0 - tau * (1.0 - t_min)
        y = (x - loc.astype(x.dtype)) / scale.astype(x.dtype)
        dy_dt = sde.drift_coef(t) * y - 0.5 * sde.g2(t) * score_y(field_params, t, y)
        return -(1.0 - t_min) * scale.astype(x.dtype) * dy_dt

    one = jnp.ones((), dt)
    std1 = jnp.sqrt(sde.alpha(one) ** 2 + sde.sigma(one) ** 2) * scale
    base = _gaussian_base(loc, std1)
    flow = ode_flow(base, velocity, init_field, solver=solver, num_steps=num_steps, rtol=rtol,
                    atol=atol, max_steps=max_steps, devices=devices)

    def sample_sde(params: Params, key: PRNGKey, n: int, num_steps: int = 500) -> Array:
        """Reverse-SDE (Euler-Maruyama) draws, shape ``(n, dim)``; no density (uncorrectable)."""
        k0, k1 = jax.random.split(key)
        y = jnp.sqrt(sde.alpha(one) ** 2 + sde.sigma(one) ** 2) * jax.random.normal(k0, (n, dim), dt)
        h = (1.0 - t_min) / num_steps
        score_v = jax.vmap(score_y, in_axes=(None, None, 0))

        def step(y, inp):
            i, k = inp
            t = 1.0 - i * h
            drift = sde.drift_coef(t) * y - sde.g2(t) * score_v(params["layers"][0], t, y)
            y = y - drift * h + jnp.sqrt(sde.g2(t) * h) * jax.random.normal(k, y.shape, y.dtype)
            return y, None

        y, _ = jax.lax.scan(step, y, (jnp.arange(num_steps, dtype=dt), jax.random.split(k1, num_steps)))
        return loc + scale * y

    out = DiffusionFlow(*flow)
    out.velocity, out.base = flow.velocity, flow.base
    out.sde, out.loc, out.scale, out.gaussian_prior = sde, loc, scale, bool(gaussian_prior)
    out.noise_prediction = lambda params, t, y: noise_prediction(params["layers"][0], t, y)
    out.score = lambda params, t, x: score_y(params["layers"][0], t, (x - loc) / scale) / scale
    out.sample_sde = jax.jit(sample_sde, static_argnums=(2, 3))
    return out
