r"""Finished chunks of a sweep on disk, so an interrupted sweep loses nothing.

``out_dir/sweep.json`` records what the sweep is (configurations, seeds,
steps, chunk size, key, target, start, coordinates); ``out_dir/chunk_00000.npz``
... hold each finished chunk's final fit states, written atomically (a
temporary file renamed into place), so a killed process leaves every
finished chunk readable and no partial file. Only process 0 writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np

from divjax._version import __version__


def describe(cfgs, num_seeds, num_steps, chunk, key, target, q0, parameterization) -> dict:
    """A JSON-able description of a sweep; resuming requires an identical one."""

    def leaves(tree):
        return [np.asarray(x).tolist() for x in jax.tree_util.tree_leaves(tree)]

    return {
        "divjax": __version__,
        "configs": [list(c) for c in cfgs],
        "num_seeds": int(num_seeds),
        "num_steps": int(num_steps),
        "seed_chunk": int(chunk),
        "key": np.asarray(jax.random.key_data(key)).tolist(),
        "target": {
            "type": type(target).__name__,
            "leaves": leaves(target),
            "repr": repr(target)[:200],
        },
        "q0": {"type": type(q0).__name__, "leaves": leaves(q0)},
        "parameterization": getattr(parameterization, "name", str(parameterization)),
        "dtype": str(jax.tree_util.tree_leaves(q0)[0].dtype),
    }


class ChunkStore:
    """Reads and writes the chunks of one sweep in ``out_dir`` (see the module docstring)."""

    def __init__(self, out_dir: Path, meta: dict):
        self.out_dir = Path(out_dir)
        path = self.out_dir / "sweep.json"
        if path.exists():
            old = json.loads(path.read_text())
            if old != json.loads(json.dumps(meta)):
                raise ValueError(
                    f"{self.out_dir} holds a different sweep (sweep.json differs); "
                    "use another out_dir or delete it"
                )
        elif jax.process_index() == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, json.dumps(meta, indent=1).encode())
        self.treedefs = None

    def _path(self, i: int) -> Path:
        return self.out_dir / f"chunk_{i:05d}.npz"

    def load(self, i: int, template=None):
        """Chunk ``i``'s states (a list per configuration), or None if it is not finished."""
        path = self._path(i)
        if not path.exists() or (template is None and self.treedefs is None):
            return None
        if template is not None:
            self.treedefs = [jax.tree_util.tree_structure(t) for t in template]
        with np.load(path) as data:
            return [
                jax.tree_util.tree_unflatten(d, [data[f"c{j}_{k}"] for k in range(d.num_leaves)])
                for j, d in enumerate(self.treedefs)
            ]

    def save(self, i: int, states) -> None:
        if jax.process_index() != 0:
            return
        self.treedefs = [jax.tree_util.tree_structure(s) for s in states]
        arrays = {
            f"c{j}_{k}": np.asarray(leaf)
            for j, s in enumerate(states)
            for k, leaf in enumerate(jax.tree_util.tree_leaves(s))
        }
        # The partial file must not look like a finished chunk (``chunk_*.npz``) to
        # anyone listing out_dir while it is written; a file handle keeps numpy from
        # appending ``.npz`` to the name.
        path = self._path(i)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


__all__ = ["ChunkStore", "describe"]
