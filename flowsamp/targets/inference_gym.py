r"""Inference Gym posteriors as flowsamp targets on the unconstrained space.

The `Inference Gym <https://github.com/tensorflow/probability/tree/main/spinoffs/inference_gym>`_
(Sountsov, Radul and contributors, 2020) collects Bayesian posteriors with ground-truth means and
standard deviations. :func:`inference_gym` wraps one of its models (JAX substrate) as a flowsamp
target: the model's event is flattened to a vector (``inference_gym.VectorModel``) and mapped to
:math:`\mathbb R^d` by the gym's ``default_event_space_bijector`` :math:`b`, so samplers run on the
unconstrained space with

.. math::

    \log \tilde p_z(z) = \log \tilde p\big(b(z)\big) + \log\left|\det \frac{\partial b(z)}{\partial z}\right| .

The optional dependency (``pip install inference-gym tfp-nightly``) is imported only when
:func:`inference_gym` is called.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax.numpy as jnp
import numpy as np

from flowsamp.targets.base import Target, as_points
from flowsamp.types import Array

__all__ = ["InferenceGymTarget", "inference_gym"]

_INSTALL = "pip install inference-gym tfp-nightly"


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class InferenceGymTarget(Target):
    r"""An Inference Gym model on the unconstrained space (see the module docstring).

    ``log_prob(z)`` is :math:`\log \tilde p(b(z)) + \log|\det J_b(z)|`; ``constrain(z)`` is
    :math:`b(z)`, the flattened point in the model's own space, where the ground truths live;
    ``unconstrain(x)`` is :math:`b^{-1}(x)`. The gym's models are evaluated in their own dtype
    (float32) and the result is cast to the dtype of ``z`` (so the target also runs under
    ``jax_enable_x64``). ``log_Z`` is ``None``; there is no exact ``sample``.

    Attributes
    ----------
    name : str
        The gym model's name (e.g. ``"eight_schools"``).
    model : inference_gym VectorModel
        The wrapped (vectorised) gym model.
    ground_truth_mean, ground_truth_sd : numpy.ndarray or None
        Posterior mean and standard deviation of each coordinate of ``constrain(z)`` (the gym's
        ``identity`` sample transformation, reordered to the event's coordinates), where the
        gym provides them.
    ground_truth_mean_se, ground_truth_sd_se : numpy.ndarray or None
        Their Monte Carlo standard errors where the truth was estimated by sampling (``None``
        where it is analytic or unknown).
    """

    name: str
    model: Any
    ground_truth_mean: np.ndarray | None = None
    ground_truth_sd: np.ndarray | None = None
    ground_truth_mean_se: np.ndarray | None = None
    ground_truth_sd_se: np.ndarray | None = None

    @property
    def _dtype(self) -> Any:
        return jnp.dtype(self.model.dtype)

    def log_prob(self, z: Array) -> Array:
        z = as_points(z, self.dim)
        b = self.model.default_event_space_bijector
        zm = z.astype(self._dtype)
        lp = self.model.unnormalized_log_prob(b.forward(zm)) + b.forward_log_det_jacobian(zm, event_ndims=1)
        return jnp.asarray(lp).astype(z.dtype)

    def constrain(self, z: Array) -> Array:
        """Map unconstrained points ``z`` (..., dim) to the model's space, :math:`x = b(z)`."""
        z = as_points(z, self.dim)
        x = self.model.default_event_space_bijector.forward(z.astype(self._dtype))
        return jnp.asarray(x).astype(z.dtype)

    def unconstrain(self, x: Array) -> Array:
        """Map points ``x`` (..., dim) of the model's space to the unconstrained space, :math:`z = b^{-1}(x)`."""
        x = as_points(x, self.dim)
        z = self.model.default_event_space_bijector.inverse(x.astype(self._dtype))
        return jnp.asarray(z).astype(x.dtype)

    def __repr__(self) -> str:
        return f"InferenceGymTarget(name={self.name!r}, dim={self.dim})"


def _import_gym():
    try:
        from inference_gym import using_jax as gym
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"fs.targets.inference_gym needs the optional Inference Gym package: {_INSTALL} "
            f"(or `pip install flowsamp[bench]`); import failed with: {err}"
        ) from err
    return gym


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _model_class(gym, name: str):
    classes = {
        _key(n): getattr(gym.targets, n)
        for n in dir(gym.targets)
        if n[:1].isupper() and isinstance(getattr(gym.targets, n), type)
    }
    cls = classes.get(_key(name))
    if cls is None:
        raise ValueError(
            f"unknown Inference Gym target {name!r}; known: {sorted(n for n in dir(gym.targets) if n[:1].isupper())}"
        )
    return cls


def _as_array(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.float64).reshape(-1)


def inference_gym(name_or_model: Any, **kwargs: Any) -> InferenceGymTarget:
    r"""An Inference Gym posterior as a flowsamp target on the unconstrained space.

    Parameters
    ----------
    name_or_model : str or inference_gym Model
        A gym target class name (``"EightSchools"``, ``"IllConditionedGaussian"``,
        ``"StochasticVolatilitySP500Small"`` ...; case and underscores are ignored, so
        ``"eight_schools"`` works too), or a constructed model of the gym's JAX substrate.
    **kwargs
        Passed to the model's constructor when a name is given (e.g. ``ndims=`` for
        ``IllConditionedGaussian``); an error with a model.

    Returns
    -------
    InferenceGymTarget
        ``log_prob(z)`` :math:`= \log \tilde p(b(z)) + \log|\det J_b(z)|` on :math:`\mathbb R^{dim}`
        with the gym's default event-space bijector :math:`b`; ``constrain`` / ``unconstrain``;
        ``ground_truth_mean`` / ``ground_truth_sd`` (and their standard errors) in the
        constrained space where the gym has them; ``log_Z = None``.

    Raises
    ------
    ImportError
        If ``inference-gym`` (with ``tfp-nightly``) is not installed; the message gives the
        ``pip install`` line.

    Examples
    --------
    >>> t = fs.targets.inference_gym("EightSchools")  # doctest: +SKIP
    >>> t.dim, t.ground_truth_mean.shape  # doctest: +SKIP
    (10, (10,))
    """
    gym = _import_gym()
    if isinstance(name_or_model, str):
        model = _model_class(gym, name_or_model)(**kwargs)
    elif isinstance(name_or_model, gym.targets.Model):
        if kwargs:
            raise TypeError(f"keyword arguments {sorted(kwargs)} are only accepted with a target name")
        model = name_or_model
    else:
        raise TypeError(f"expected an Inference Gym target name or model, got {type(name_or_model).__name__}")
    if isinstance(model, gym.targets.VectorModel):  # re-wrap so the ground truths come flattened
        model = model.model
    model = gym.targets.VectorModel(model, flatten_sample_transformations=True)
    shape = tuple(int(s) for s in model.event_shape)
    if len(shape) != 1:
        raise ValueError(f"expected a vector event after flattening, got event shape {shape}")
    fields = _ground_truth(model, shape[0])
    return InferenceGymTarget(dim=shape[0], name=str(model.model.name), model=model, **fields)


def _ground_truth(model: Any, dim: int) -> dict:
    """The ``identity`` ground truths, reordered to the coordinates of the flattened event.

    The gym flattens a model's event and its ``identity`` transformation separately, and they can
    differ in order: a transformation returning a ``dict`` is flattened with its keys sorted
    (Brownian motion: ``innovation_noise_scale, locs..., observation_noise_scale`` against the
    event's ``innovation_noise_scale, observation_noise_scale, x_0...``). The order is read off by
    pushing the point ``(1, ..., dim)`` through the transformation; a transformation that is not
    a permutation of the coordinates gives no ground truth here.
    """
    truth = model.sample_transformations.get("identity")
    if truth is None or truth.ground_truth_mean is None:
        return {}
    probe = np.asarray(truth(jnp.arange(1, dim + 1, dtype=jnp.dtype(model.dtype))), np.float64).reshape(-1)
    order = np.rint(probe).astype(int) - 1  # truth entry j belongs to event coordinate order[j]
    if probe.shape != (dim,) or not np.array_equal(np.sort(order), np.arange(dim)) or not np.allclose(probe, order + 1):
        return {}

    def aligned(value: Any) -> np.ndarray | None:
        a = _as_array(value)
        if a is None:
            return None
        out = np.empty(dim)
        out[order] = a
        return out

    return dict(
        ground_truth_mean=aligned(truth.ground_truth_mean),
        ground_truth_sd=aligned(truth.ground_truth_standard_deviation),
        ground_truth_mean_se=aligned(truth.ground_truth_mean_standard_error),
        ground_truth_sd_se=aligned(truth.ground_truth_standard_deviation_standard_error),
    )
