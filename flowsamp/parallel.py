"""Chains over devices: a 1-D ``"chain"`` mesh and ``jax.shard_map`` over it.

Chains live on a leading batch axis. :func:`shard_chains` turns a function that maps a
block of chains to a block of results (typically a ``vmap``) into one that splits the
chain axis evenly over the devices of a mesh, runs each block on its device and gathers
the results along the same axis. Each chain still sees exactly the inputs it would see in
a single-device run (its own key and start), so results are the same for the same key.
This is what ``jax.pmap`` gave ("pmap-parallel chains") on the ``shard_map`` machinery
that current JAX builds on; with ``jax.distributed`` initialised, ``jax.devices()`` spans
every host and the same call runs multi-host.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

__all__ = ["CHAIN_AXIS", "CHAINS", "REPLICATED", "chain_mesh", "check_divisible", "shard_chains"]

#: Name of the mesh axis the chains are split over.
CHAIN_AXIS = "chain"
#: Partition spec of an argument whose leading axis is the chain axis (split over devices).
CHAINS = PartitionSpec(CHAIN_AXIS)
#: Partition spec of an argument every device receives whole (e.g. shared kernel parameters).
REPLICATED = PartitionSpec()


def chain_mesh(devices: Sequence[jax.Device] | Mesh) -> Mesh:
    """Return a 1-D :class:`jax.sharding.Mesh` over ``devices`` with axis ``"chain"``.

    A ``Mesh`` is returned unchanged if it has exactly the axis ``"chain"``.
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


def check_divisible(num_chains: int, mesh: Mesh) -> None:
    """Raise ``ValueError`` unless ``num_chains`` splits evenly over the mesh's devices."""
    num_devices = mesh.devices.size
    if num_chains % num_devices:
        raise ValueError(
            f"{num_chains} chains do not divide evenly over {num_devices} devices; "
            f"use a multiple of {num_devices} chains"
        )


def shard_chains(
    fn: Callable[..., Any], mesh: Mesh, in_specs: tuple[PartitionSpec, ...] | None = None
) -> Callable[..., Any]:
    """Return ``fn`` run blockwise over the ``"chain"`` axis of ``mesh`` with ``shard_map``.

    By default every argument and every output of ``fn`` is a pytree whose leaves have the
    chain axis first; each device receives ``num_chains / num_devices`` consecutive chains.
    ``in_specs`` (one of :data:`CHAINS` / :data:`REPLICATED` per argument) marks arguments
    that every device receives whole; outputs always have the chain axis first.
    Chains are independent, so ``fn`` needs no collectives; the varying-manual-axes check
    is off so that a scan may start from constants (zero counters) and carry per-chain values.
    """
    return jax.shard_map(
        fn, mesh=mesh, in_specs=CHAINS if in_specs is None else in_specs, out_specs=CHAINS, check_vma=False
    )
