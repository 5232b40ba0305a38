r"""Slow work off the window's thread: optima, landscapes, compilations (no matplotlib).

A `Worker` runs jobs one at a time in a thread. Jobs carry a ``tag`` (what
they are for) and a ``key`` (what they were computed from): a newer job of
the same tag replaces a queued one, and `Worker.poll` hands finished results
back on the caller's thread, where the figure may be touched. With
``threaded=False`` a job runs at once, inside `submit` (tests, scripts).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any, NamedTuple


class Done(NamedTuple):
    """A finished job: its ``tag``, ``key``, and ``result`` or the ``error`` it raised."""

    tag: Any
    key: Any
    result: Any
    error: BaseException | None


class Worker:
    """Runs ``fn(*args)`` jobs in one background thread, newest per tag first."""

    def __init__(self, threaded: bool = True):
        self.threaded = threaded
        self._pool = concurrent.futures.ThreadPoolExecutor(1) if threaded else None
        self._jobs: dict[Any, tuple[Any, concurrent.futures.Future]] = {}
        self._done: list[Done] = []

    def pending(self, tag=None) -> bool:
        """Whether a job (of ``tag``) is queued or running."""
        return any(tag in (None, t) for t in self._jobs)

    def pending_key(self, tag):
        """The key of the job of ``tag`` in flight, or None."""
        job = self._jobs.get(tag)
        return None if job is None else job[0]

    def submit(self, tag, key, fn: Callable, *args) -> None:
        """Queues ``fn(*args)`` for ``tag`` (a queued job of the same tag is cancelled)."""
        if not self.threaded:
            self._done.append(_run(tag, key, fn, args))
            return
        old = self._jobs.get(tag)
        if old is not None:
            if old[0] == key:
                return
            old[1].cancel()
        self._jobs[tag] = (key, self._pool.submit(_run, tag, key, fn, args))

    def poll(self) -> list[Done]:
        """The jobs finished since the last call (oldest first)."""
        for tag, (_, fut) in list(self._jobs.items()):
            if fut.done():
                del self._jobs[tag]
                if not fut.cancelled():
                    self._done.append(fut.result())
        done, self._done = self._done, []
        return done

    def wait(self, timeout: float | None = None) -> None:
        """Blocks until every job is done (or ``timeout`` s passed); `poll` collects them."""
        futures = [fut for _, fut in self._jobs.values()]
        if futures:
            concurrent.futures.wait(futures, timeout)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _run(tag, key, fn, args) -> Done:
    try:
        return Done(tag, key, fn(*args), None)
    except Exception as err:  # handed back to the window's thread, shown there
        return Done(tag, key, None, err)


__all__ = ["Done", "Worker"]
