"""Chains over devices and hosts: a 1-D ``"chain"`` mesh and ``jax.shard_map`` over it.

Chains live on a leading batch axis. :func:`shard_chains` turns a function that maps a
block of chains to a block of results (typically a ``vmap``) into one that splits the
chain axis evenly over the devices of a mesh, runs each block on its device and gathers
the results along the same axis. Each chain still sees exactly the inputs it would see in
a single-device run (its own key and start), so results are the same for the same key.
This is what ``jax.pmap`` gave ("pmap-parallel chains") on the ``shard_map`` machinery
that current JAX builds on.

Several hosts (processes). After ``jax.distributed.initialize(...)`` every process runs
the same script (multi-controller JAX) and ``jax.devices()`` lists the devices of all of
them. A mesh over those devices gives process :math:`p` the consecutive block of chains of
its own devices; host-local inputs that are equal on every process (the same key, the same
initial positions, as in a single-process script) are read as replicated values, each
process feeding its own block. When the mesh spans processes, :func:`shard_chains` ends with
an all-gather (gloo on CPU, NCCL on GPU, ICI/DCN on TPU), so every process holds the whole
result as a fully replicated array that ``numpy.asarray`` reads: the same numbers as the
single-process run, on every host. :func:`gather` does the same for arrays built elsewhere
(e.g. with ``jax.make_array_from_process_local_data``), and :func:`put_chains` turns
host-local values into global arrays split over the chain axis. ``scripts/multihost/``
holds the recipes (SLURM, plain ``jax.distributed.initialize``, one GPU).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "CHAIN_AXIS",
    "CHAINS",
    "REPLICATED",
    "chain_mesh",
    "check_divisible",
    "gather",
    "put_chains",
    "shard_chains",
    "spans_processes",
]

#: Name of the mesh axis the chains are split over.
CHAIN_AXIS = "chain"
#: Partition spec of an argument whose leading axis is the chain axis (split over devices).
CHAINS = PartitionSpec(CHAIN_AXIS)
#: Partition spec of an argument every device receives whole (e.g. shared kernel parameters).
REPLICATED = PartitionSpec()


def chain_mesh(devices: Sequence[jax.Device] | Mesh) -> Mesh:
    """Return a 1-D :class:`jax.sharding.Mesh` over ``devices`` with axis ``"chain"``.

    A ``Mesh`` is returned unchanged if it has exactly the axis ``"chain"``. With
    ``jax.distributed`` initialised, ``jax.devices()`` lists the devices of every process
    and the mesh spans them all (see :func:`spans_processes`).
    """
    if isinstance(devices, Mesh):
        if tuple(devices.axis_names) != (CHAIN_AXIS,):
            raise ValueError(
                f"a mesh for chains must have the single axis {CHAIN_AXIS!r}, got {devices.axis_names}"
            )
        return devices
    devices = list(devices)
    if not devices:
        raise ValueError("devices is empty")
    for d in devices:
        if not isinstance(d, jax.Device):
            raise TypeError(f"devices must be jax.Device objects (e.g. jax.devices()), got {d!r}")
    if len(set(devices)) != len(devices):
        raise ValueError("devices contains the same device more than once")
    return Mesh(np.array(devices), (CHAIN_AXIS,))


def check_divisible(num_chains: int, mesh: Mesh, what: str = "chains") -> None:
    """Raise ``ValueError`` unless ``num_chains`` splits evenly over the mesh's devices
    (``what`` names the items split in the message, e.g. ``"particles"``)."""
    num_devices = mesh.devices.size
    if num_chains % num_devices:
        raise ValueError(
            f"{num_chains} {what} do not divide evenly over {num_devices} devices; "
            f"use a multiple of {num_devices} {what}"
        )


def spans_processes(mesh: Mesh) -> bool:
    """Whether the devices of ``mesh`` belong to more than one process (``jax.distributed``)."""
    return len({d.process_index for d in mesh.devices.flat}) > 1


def shard_chains(
    fn: Callable[..., Any], mesh: Mesh | None, in_specs: tuple[PartitionSpec, ...] | None = None
) -> Callable[..., Any]:
    """Return ``fn`` run blockwise over the ``"chain"`` axis of ``mesh`` with ``shard_map``.

    ``mesh=None`` returns ``fn`` itself (one device), so that a sampler can wrap its
    per-particle functions unconditionally.

    By default every argument and every output of ``fn`` is a pytree whose leaves have the
    chain axis first; each device receives ``num_chains / num_devices`` consecutive chains.
    ``in_specs`` (one of :data:`CHAINS` / :data:`REPLICATED` per argument) marks arguments
    that every device receives whole; outputs always have the chain axis first.
    Chains are independent, so ``fn`` needs no collectives; the varying-manual-axes check
    is off so that a scan may start from constants (zero counters) and carry per-chain values.

    When ``mesh`` spans several processes, the outputs are all-gathered after the blockwise
    run (a sharding constraint to :data:`REPLICATED`, one collective at the end): every
    process then holds every chain, ``numpy.asarray`` works on the result and the numbers
    are those of the single-process run. Within one process the outputs stay split over the
    devices (no copy).
    """
    if mesh is None:
        return fn
    mapped = jax.shard_map(
        fn, mesh=mesh, in_specs=CHAINS if in_specs is None else in_specs, out_specs=CHAINS, check_vma=False
    )
    if not spans_processes(mesh):
        return mapped
    everywhere = NamedSharding(mesh, REPLICATED)

    def gathered(*args: Any) -> Any:
        return jax.lax.with_sharding_constraint(mapped(*args), everywhere)

    return gathered


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def gather(tree: Any) -> Any:
    """Return ``tree`` with every leaf readable on this process (a no-op in one process).

    A leaf that is a global array split over several processes (not fully addressable and
    not fully replicated) is all-gathered with
    :func:`jax.experimental.multihost_utils.process_allgather` and comes back as a host-local
    array of the global shape; every other leaf is returned unchanged. Like every
    collective, it must be called by all processes with the same tree structure.
    """

    def one(x: Any) -> Any:
        if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
            return x
        if _is_key(x):
            data = multihost_utils.process_allgather(jax.random.key_data(x), tiled=True)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.numpy.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)


def put_chains(tree: Any, mesh: Mesh) -> Any:
    """Place host-local arrays with the chain axis first as global arrays split over ``mesh``.

    Every process must pass the same values (the same key, the same initial positions); in
    several processes ``jax.device_put`` checks this and raises if they differ. Each device
    keeps only its block of chains. For per-process data (each process owning its own
    chains) use ``jax.make_array_from_process_local_data(NamedSharding(mesh, CHAINS), local)``
    instead.
    """
    sharding = NamedSharding(mesh, CHAINS)

    def one(x: Any) -> Any:
        if _is_key(x):
            data = jax.device_put(np.asarray(jax.random.key_data(x)), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.device_put(x, sharding)
        return jax.device_put(np.asarray(x), sharding)

    return jax.tree.map(one, tree)
