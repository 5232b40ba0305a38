"""Running a jitted ``scan`` in chunks so long fits and sweeps can show progress.

tqdm draws the bar (a well-kept library, rather than a hand-written bar); it
stays quiet when stderr is not a terminal, and appears only after two seconds.
With no bar, the whole run is a single compiled call.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

_NUM_CHUNKS = 20


def bar_enabled(enabled: bool | None) -> bool:
    return sys.stderr.isatty() if enabled is None else bool(enabled)


def run_chunked(advance, state, num_steps: int, *, desc: str, enabled: bool | None):
    """Calls ``advance(state, length) -> (state, stacked)`` until ``num_steps`` are done.

    ``advance`` is jitted here with ``length`` static, so at most two lengths
    compile (the chunk and the remainder). Returns the final state and the
    per-step outputs concatenated along the leading axis.
    """
    jitted = jax.jit(advance, static_argnums=1)
    if not bar_enabled(enabled):
        return jitted(state, num_steps)
    chunk = max(1, -(-num_steps // _NUM_CHUNKS))
    pieces = []
    with tqdm(total=num_steps, desc=desc, delay=2.0, unit="step", file=sys.stderr) as bar:
        done = 0
        while done < num_steps:
            n = min(chunk, num_steps - done)
            state, out = jitted(state, n)
            jax.block_until_ready(state)
            pieces.append(out)
            done += n
            bar.update(n)
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=0), *pieces)
    return state, stacked
