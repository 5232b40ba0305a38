r"""The interactive explorer: drag the target and ``q``, watch gradient descent fit it live.

`explore` (``divjax explore``) opens the seed page as a matplotlib figure:
the fit panel (the target, forward and reverse ``q`` side by side, the
optima), the importance weights and the signed gradient rug of one Monte
Carlo draw, the live divergence landscape over ``q``'s two coordinates with
the trajectories, and the controls. See ``docs/explorer.md``.

Modules: `session` (the state and its advancing; no matplotlib), `compute`
(the compiled programs), `options` (presets and checks), `figure` and
`panels`, `landscape_panel` (artists, blitting), `controls` (widgets, mouse,
keys), `background` and `workers` (threads), `app` (`Explorer`, `explore`),
`cli` (`run_cli`).
"""

from __future__ import annotations

_LAZY = ("Explorer", "explore", "run_cli")


def __getattr__(name):  # the window needs matplotlib; the session does not
    if name == "run_cli":
        from divjax.explorer.cli import run_cli

        return run_cli
    if name in _LAZY:
        from divjax.explorer import app

        return getattr(app, name)
    raise AttributeError(f"module 'divjax.explorer' has no attribute {name!r}")


__all__ = ["Explorer", "explore", "run_cli"]
