"""Checkpoints: save and load parameter pytrees as msgpack (flax.serialization), never pickle.

A checkpoint is a msgpack map ``{"format": "flowsamp-checkpoint", "version": 1,
"state": <flax state dict of the pytree>}``. :func:`load` restores it into the structure
of a template ``like`` (e.g. ``flow.init(key)``) and checks the tree, every shape and
every dtype; a corrupt, foreign or mismatched file raises a ``ValueError`` that names the
file and the first difference. msgpack cannot execute code on load, unlike pickle.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import jax
import numpy as np
from flax import serialization

from flowsamp.types import PyTree

__all__ = ["save", "load"]

_FORMAT = "flowsamp-checkpoint"
_VERSION = 1


def _to_numpy_state(tree: PyTree) -> Any:
    def leaf(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            raise TypeError(
                "fs.io.save: typed PRNG keys cannot be saved; store jax.random.key_data(key)"
            )
        return np.asarray(x)

    return serialization.to_state_dict(jax.tree.map(leaf, tree))


def save(path: str | os.PathLike, params: PyTree) -> None:
    """Write ``params`` (any pytree of arrays: flow params, optax states, NamedTuples) to ``path``.

    The file is written atomically (to a temporary file in the same folder, then renamed),
    so an interrupted save never leaves a truncated checkpoint behind.

    Parameters
    ----------
    path
        Destination file (conventionally ``*.msgpack``); parent folders must exist.
    params
        The pytree to save; leaves are converted to numpy arrays.
    """
    path = os.fspath(path)
    payload = {"format": _FORMAT, "version": _VERSION, "state": _to_numpy_state(params)}
    data = serialization.msgpack_serialize(payload)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".msgpack")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _flatten_state(state: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(state, dict):
        out: dict[str, Any] = {}
        for k, v in state.items():
            out.update(_flatten_state(v, f"{prefix}/{k}"))
        if not state:
            out[prefix or "/"] = "<empty>"
        return out
    return {prefix or "/": state}


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray) or hasattr(x, "shape"):
        return f"array{tuple(np.shape(x))} {np.asarray(x).dtype}"
    return repr(x)


def load(path: str | os.PathLike, like: PyTree) -> PyTree:
    """Read a checkpoint written by :func:`save` into the structure of ``like``.

    Parameters
    ----------
    path
        The checkpoint file.
    like
        A template pytree with the expected structure, shapes and dtypes (for flow
        parameters, ``flow.init(key)``).

    Returns
    -------
    The saved pytree, with the same tree type as ``like`` and jax arrays as leaves.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a valid flowsamp checkpoint (corrupt, truncated, another format
        or version) or its content does not match ``like`` (missing/extra entries, shape
        or dtype differences); the message names the first offending entry.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        payload = serialization.msgpack_restore(data)
    except Exception as err:  # msgpack raises several unrelated exception types
        raise ValueError(f"fs.io.load: {path!r} is not a valid msgpack checkpoint (corrupt or truncated): {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"fs.io.load: {path!r} is not a flowsamp checkpoint (missing format tag)")
    if payload.get("version") != _VERSION:
        raise ValueError(
            f"fs.io.load: {path!r} has checkpoint version {payload.get('version')!r}; "
            f"this flowsamp reads version {_VERSION}"
        )
    if "state" not in payload:
        raise ValueError(f"fs.io.load: {path!r} has no 'state' entry")
    got = _flatten_state(payload["state"])
    want = _flatten_state(_to_numpy_state(like))
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        raise ValueError(
            f"fs.io.load: {path!r} does not match the template: "
            f"missing entries {missing[:5]}, unexpected entries {extra[:5]}"
        )
    for name, w in want.items():
        g = got[name]
        if isinstance(w, np.ndarray) or isinstance(g, np.ndarray):
            if not (isinstance(w, np.ndarray) and isinstance(g, np.ndarray)):
                raise ValueError(f"fs.io.load: {path!r} entry {name!r} is {_describe(g)}, expected {_describe(w)}")
            if w.shape != g.shape or w.dtype != g.dtype:
                raise ValueError(
                    f"fs.io.load: {path!r} entry {name!r} is {_describe(g)}, expected {_describe(w)}"
                )
    try:
        restored = serialization.from_state_dict(like, payload["state"])
    except Exception as err:
        raise ValueError(f"fs.io.load: {path!r} cannot be restored into the template: {err}") from err
    return jax.tree.map(lambda x: jax.numpy.asarray(x) if isinstance(x, np.ndarray) else x, restored)
