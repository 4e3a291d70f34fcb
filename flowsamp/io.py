"""Checkpoints: save and load parameter pytrees as msgpack (flax.serialization), never pickle.

A checkpoint is a msgpack map ``{"format": "flowsamp-checkpoint", "version": 1,
"state": <flax state dict of the pytree>, "meta": {...}}``. :func:`load` restores it into
the structure of a template ``like`` (e.g. ``flow.init(key)``) and checks the tree, every
shape and every dtype; a corrupt, foreign or mismatched file raises a ``ValueError`` that
names the file and the first difference. msgpack cannot execute code on load, unlike pickle.

``meta`` is a small dict of plain values (str, int, float, bool, None and lists of them)
describing the run that wrote the file: the sampler's name, its options, the shapes. A
sampler passes the same dict to :func:`load` when it resumes, so a checkpoint from another
sampler or another configuration is refused with a message naming the key and both values,
instead of silently continuing a different run. This is the resume mechanism every sampler
uses (``checkpoint_path=``, ``checkpoint_every=``, ``resume=``).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import jax
import numpy as np
from flax import serialization

from flowsamp.types import PyTree

__all__ = ["save", "load", "read_meta"]

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


_PLAIN = (str, int, float, bool, type(None))


def _plain_meta(meta: dict | None, where: str) -> dict:
    """``meta`` with tuples as lists and numpy scalars as Python values; other types raise."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise TypeError(f"{where}: meta must be a dict, got {type(meta).__name__}")

    def plain(key: str, v: Any) -> Any:
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, _PLAIN):
            return v
        if isinstance(v, (list, tuple)):
            return [plain(key, x) for x in v]
        raise TypeError(
            f"{where}: meta[{key!r}] must be a plain value (str, int, float, bool, None or a list), "
            f"got {type(v).__name__}"
        )

    out = {}
    for k, v in meta.items():
        if not isinstance(k, str):
            raise TypeError(f"{where}: meta keys must be str, got {k!r}")
        out[k] = plain(k, v)
    return out


def save(path: str | os.PathLike, params: PyTree, meta: dict | None = None) -> None:
    """Write ``params`` (any pytree of arrays: flow params, optax states, NamedTuples) to ``path``.

    The file is written atomically (to a temporary file in the same folder, then renamed),
    so an interrupted save never leaves a truncated checkpoint behind.

    Parameters
    ----------
    path
        Destination file (conventionally ``*.msgpack``); parent folders must exist.
    params
        The pytree to save; leaves are converted to numpy arrays.
    meta
        Optional dict of plain values (str, int, float, bool, None, lists of them) stored
        beside the tree and checked by ``load(..., meta=)``.
    """
    path = os.fspath(path)
    payload = {"format": _FORMAT, "version": _VERSION, "state": _to_numpy_state(params),
               "meta": _plain_meta(meta, "fs.io.save")}
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


def _read_payload(path: str) -> dict:
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
    return payload


def read_meta(path: str | os.PathLike, meta: dict | None = None) -> dict:
    """The ``meta`` dict stored in a checkpoint (``{}`` when it was saved without one).

    With ``meta``, first check it against the stored one as :func:`load` does (a sampler
    reads its counters this way before it builds the template). Raises ``ValueError`` for a
    corrupt or foreign file or a mismatch, like :func:`load`.
    """
    path = os.fspath(path)
    payload = _read_payload(path)
    stored = dict(payload.get("meta") or {})
    _check_meta(path, stored, _plain_meta(meta, "fs.io.read_meta"))
    return stored


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):  # True == 1 in Python; not here
        return type(a) is type(b) and a == b
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b
    )


def _check_meta(path: str, stored: dict, expected: dict) -> None:
    for key, want in expected.items():
        if key not in stored:
            raise ValueError(
                f"fs.io.load: {path!r} was written without meta[{key!r}] (expected {want!r} here): "
                "not a checkpoint of this run"
            )
        if not _same(stored[key], want):
            raise ValueError(
                f"fs.io.load: {path!r} does not match this run: meta[{key!r}] is {stored[key]!r} in the "
                f"checkpoint but {want!r} here"
            )


def load(path: str | os.PathLike, like: PyTree, meta: dict | None = None) -> PyTree:
    """Read a checkpoint written by :func:`save` into the structure of ``like``.

    Parameters
    ----------
    path
        The checkpoint file.
    like
        A template pytree with the expected structure, shapes and dtypes (for flow
        parameters, ``flow.init(key)``).
    meta
        Optional dict that must agree with the ``meta`` saved in the file: every key given
        here must be stored with an equal value (keys only in the file are ignored).

    Returns
    -------
    The saved pytree, with the same tree type as ``like``; leaves are jax arrays, except where
    ``like`` holds a numpy array (then numpy, with its dtype kept).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a valid flowsamp checkpoint (corrupt, truncated, another format
        or version) or its content does not match ``like`` (missing/extra entries, shape
        or dtype differences) or its ``meta`` disagrees with ``meta`` (the message names the
        key and both values); the message names the first offending entry.
    """
    path = os.fspath(path)
    expected = _plain_meta(meta, "fs.io.load")
    payload = _read_payload(path)
    _check_meta(path, dict(payload.get("meta") or {}), expected)
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
    # leaves come back as jax arrays, except where the template holds a numpy array (kept numpy,
    # so e.g. float64 host-side curves survive without jax_enable_x64)
    return jax.tree.map(
        lambda t, x: x if isinstance(t, np.ndarray) or not isinstance(x, np.ndarray) else jax.numpy.asarray(x),
        like, restored,
    )
