"""Running a jitted ``scan`` in chunks so long fits and sweeps can show progress.

tqdm draws the bar (a well-kept library, rather than a hand-written bar); it
is quiet when stderr is not a terminal, and appears only after two seconds.
Programs are compiled ahead of time so compile and run time are reported
separately.
"""

from __future__ import annotations

import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

_NUM_CHUNKS = 20


class Timing(NamedTuple):
    compile_s: float
    run_s: float


def bar_enabled(enabled: bool | None) -> bool:
    return sys.stderr.isatty() if enabled is None else bool(enabled)


def run_chunked(advance, state, num_steps: int, *, desc: str, enabled: bool | None, cache=None):
    """Calls ``advance(state, length) -> (state, stacked)`` until ``num_steps`` are done.

    With no bar the whole run is one compiled call; with a bar, about 20
    chunks (at most two compiled lengths). Returns ``(state, stacked, Timing)``,
    the per-step outputs concatenated along the leading axis. ``cache`` (a
    dict) keeps the compiled programs for further calls with the same shapes.
    """
    show = bar_enabled(enabled)
    chunk = max(1, -(-num_steps // _NUM_CHUNKS)) if show else num_steps
    lengths = sorted({chunk, num_steps % chunk} - {0})
    cache = {} if cache is None else cache
    jitted = cache.setdefault("advance", jax.jit(advance, static_argnums=1))
    start = time.perf_counter()
    compiled = {n: cache.get(n) or cache.setdefault(n, jitted.lower(state, n).compile()) for n in lengths}
    compile_s = time.perf_counter() - start
    pieces = []
    start = time.perf_counter()
    with tqdm(total=num_steps, desc=desc, delay=2.0, unit="step", disable=not show) as bar:
        done = 0
        while done < num_steps:
            n = min(chunk, num_steps - done)
            state, out = compiled[n](state)
            pieces.append(out)
            done += n
            if show:
                jax.block_until_ready(state)
                bar.update(n)
    jax.block_until_ready(state)
    run_s = time.perf_counter() - start
    if len(pieces) == 1:
        stacked = pieces[0]
    else:
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=0), *pieces)
    return state, stacked, Timing(compile_s, run_s)
