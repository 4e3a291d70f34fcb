"""Shared pieces of the samplers' resume support (``checkpoint_path=``, ``checkpoint_every=``,
``resume=``) on top of :mod:`flowsamp.io`: option checks, the run's key and fingerprints as
checkpoint ``meta`` (so a file from another run is refused by :func:`flowsamp.io.load`)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import numpy as np

__all__ = ["check_options", "fingerprint", "key_data", "wrap_key", "should_resume"]


def check_options(where: str, checkpoint_path: Any, checkpoint_every: Any, resume: Any,
                  unit: str, multiple_of: int = 1) -> None:
    """Raise a clear error for inconsistent checkpoint options."""
    if not isinstance(resume, bool):
        raise TypeError(f"{where}: resume must be a bool, got {resume!r}")
    if checkpoint_path is None:
        if resume:
            raise ValueError(f"{where}: resume=True needs checkpoint_path (the file to resume from)")
        if checkpoint_every is not None:
            raise ValueError(f"{where}: checkpoint_every needs checkpoint_path")
        return
    if not isinstance(checkpoint_path, (str, os.PathLike)):
        raise TypeError(f"{where}: checkpoint_path must be a str or os.PathLike, got {type(checkpoint_path).__name__}")
    folder = os.path.dirname(os.path.abspath(os.fspath(checkpoint_path)))
    if not os.path.isdir(folder):
        raise ValueError(f"{where}: the folder of checkpoint_path does not exist: {folder!r}")
    if checkpoint_every is not None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, np.integer)) \
                or checkpoint_every < 1:
            raise ValueError(f"{where}: checkpoint_every must be a positive int ({unit}), got {checkpoint_every!r}")
        if checkpoint_every % multiple_of:
            raise ValueError(
                f"{where}: checkpoint_every ({checkpoint_every} {unit}) must be a multiple of {multiple_of}"
            )


def should_resume(checkpoint_path: Any, resume: bool) -> bool:
    """Whether to continue from ``checkpoint_path`` (``resume=True`` and the file exists)."""
    return bool(resume and checkpoint_path is not None and os.path.exists(os.fspath(checkpoint_path)))


def fingerprint(tree: Any) -> str:
    """SHA-256 of a pytree's structure, shapes, dtypes and values (for checkpoint ``meta``)."""
    h = hashlib.sha256(str(jax.tree.structure(tree)).encode())
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        x = np.asarray(leaf)
        h.update(f"{x.shape}{x.dtype}".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()[:16]


def key_data(key: jax.Array) -> np.ndarray:
    """The raw ``uint32`` data of a typed or raw key (savable with :func:`flowsamp.io.save`)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key))
    return np.asarray(key)


def wrap_key(data: Any, like: jax.Array) -> jax.Array:
    """Rebuild a key of the same kind (typed with the same impl, or raw) as ``like``."""
    if jax.dtypes.issubdtype(like.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(jax.numpy.asarray(data), impl=jax.random.key_impl(like))
    return jax.numpy.asarray(data, like.dtype)
