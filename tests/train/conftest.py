"""Fixtures for training tests: a tiny hand-made affine flow satisfying ``base.Flow``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from types import SimpleNamespace

from flowsamp.base import Flow


def affine_flow(dim: int, dtype=None) -> Flow:
    """x = shift + exp(log_scale) * z, z ~ N(0, I): q = N(shift, diag(exp(2 log_scale)))."""

    def init(key):
        dt = dtype or jnp.zeros(()).dtype
        return {"shift": jnp.zeros((dim,), dt), "log_scale": jnp.zeros((dim,), dt)}

    def forward(params, z):
        return params["shift"] + jnp.exp(params["log_scale"]) * z, jnp.sum(params["log_scale"]) * jnp.ones(z.shape[:-1], z.dtype)

    def inverse(params, x):
        z = (x - params["shift"]) * jnp.exp(-params["log_scale"])
        return z, -jnp.sum(params["log_scale"]) * jnp.ones(x.shape[:-1], x.dtype)

    def base_log_prob(z):
        return -0.5 * jnp.sum(z**2, -1) - 0.5 * dim * jnp.log(2 * jnp.pi).astype(z.dtype)

    def log_prob(params, x):
        z, ld = inverse(params, x)
        return base_log_prob(z) + ld

    def sample_and_log_prob(params, key, n):
        z = jax.random.normal(key, (n, dim), params["shift"].dtype)
        x, ld = forward(params, z)
        return x, base_log_prob(z) - ld

    return Flow(init, sample_and_log_prob, log_prob, forward, inverse, dim)


MEAN = np.array([1.0, -2.0])
STD = np.array([0.5, 2.0])
#: Unnormalised N(MEAN, diag STD^2): log_prob = -0.5 |(x - MEAN)/STD|^2, so
#: log Z = (dim/2) log 2 pi + sum log STD (closed form).
LOG_Z = 0.5 * 2 * np.log(2 * np.pi) + np.sum(np.log(STD))


def gauss_log_prob(x):
    m = jnp.asarray(MEAN, x.dtype)
    s = jnp.asarray(STD, x.dtype)
    return -0.5 * jnp.sum(((x - m) / s) ** 2)


def exact_params(dtype=jnp.float32):
    return {"shift": jnp.asarray(MEAN, dtype), "log_scale": jnp.asarray(np.log(STD), dtype)}


@pytest.fixture(scope="module")
def flow2():
    """The affine flow in 2-D."""
    return affine_flow(2)


@pytest.fixture(scope="module")
def make_affine_flow():
    """Factory ``make_affine_flow(dim, dtype=None) -> Flow``."""
    return affine_flow


@pytest.fixture(scope="module")
def gauss():
    """The 2-D Gaussian target: log_prob, exact log_Z, exact flow params, MEAN, STD."""
    return SimpleNamespace(
        log_prob=gauss_log_prob, log_Z=LOG_Z, exact_params=exact_params, mean=MEAN, std=STD
    )
