r"""The seed axis across devices and processes: one global mesh, results gathered everywhere.

With JAX's multi-process runtime (``jax.distributed.initialize()`` called
before anything else touches JAX) `jax.devices()` lists every process's
devices; the seed axis of a sweep is sharded over all of them, each process
computes its block, and `gather` leaves the full result on every process.
With one process and one device everything here is the identity.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def num_devices() -> int:
    return jax.device_count()


def seed_sharding() -> NamedSharding | None:
    """Sharding of a leading seed axis over every device (None with a single device)."""
    devices = jax.devices()
    if len(devices) < 2:
        return None
    return NamedSharding(Mesh(np.array(devices), ("seeds",)), PartitionSpec("seeds"))


def replicated() -> NamedSharding | None:
    devices = jax.devices()
    if len(devices) < 2:
        return None
    return NamedSharding(Mesh(np.array(devices), ("seeds",)), PartitionSpec())


def put_seeds(keys: jax.Array) -> jax.Array:
    """Typed PRNG keys ``(n, ...)`` (the same on every process) as a global seed-sharded array."""
    sharding = seed_sharding()
    if sharding is None:
        return keys
    data = np.asarray(jax.random.key_data(keys))
    impl = jax.random.key_impl(keys)
    global_data = jax.make_array_from_callback(data.shape, sharding, lambda idx: data[idx])
    return jax.jit(lambda d: jax.random.wrap_key_data(d, impl=impl))(global_data)


def gather(tree):
    """Every leaf as a full numpy array on every process."""
    sharding = replicated()
    if sharding is not None:
        tree = jax.jit(lambda t: t, out_shardings=sharding)(tree)

    def to_numpy(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(leaf.addressable_data(0))
        return np.asarray(leaf)

    return jax.tree_util.tree_map(to_numpy, tree)


__all__ = ["gather", "num_devices", "put_seeds", "replicated", "seed_sharding"]
