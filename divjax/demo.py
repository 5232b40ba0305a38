r"""The main job: every divergence x estimator x K over many seeds, one sweep per divergence.

`run_demo` fits ``q0`` to the target with every configuration, measures each
estimator's gradient at ``q0`` (`divjax.grad_stats`, all K in one program),
prints one table (`divjax.demo_table`: one row per divergence, estimator and
K, counting every fit), writes it as CSV and JSON, draws the figures, and
reports where the time went. Divergences are worked on ``workers`` at a time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from divjax import _checks
from divjax.demo_table import HEADER, Row, format_row, make_row, write_tables
from divjax.diagnostics import grad_stats_many
from divjax.estimators import ESTIMATORS, check_estimator, min_samples
from divjax.fit import default_optimizer
from divjax.landscape import default_window, surface
from divjax.optima import Optima, optimal_q
from divjax.paths import draw_aux, fit_paths
from divjax.sweeps import SweepResult, sweep


class Timing(NamedTuple):
    """Where the time went, in seconds.

    ``compile_s``, ``run_s``, ``optima_s`` and ``grad_stats_s`` add up the
    divergences' threads (``workers`` of them at a time, so their sum can exceed
    the wall time); ``tables_s`` (everything up to the full table), ``figures_s``
    and ``total_s`` are wall times.
    """

    compile_s: float
    run_s: float
    optima_s: float
    grad_stats_s: float
    tables_s: float
    figures_s: float
    total_s: float
    workers: int = 1


class DemoResult(NamedTuple):
    rows: list[Row]
    runs: list
    stats: dict
    optima: dict
    timing: Timing


def fits_for(
    names: Sequence[str], estimators: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """``(divergence, estimator)`` pairs: every estimator of each divergence, or those named."""
    fits = []
    for n in names:
        fits += [(n, e) for e in ESTIMATORS[n] if estimators is None or e in estimators]
    return fits


def run_demo(
    target,
    q0,
    fits: Sequence[tuple[str, str]],
    *,
    num_samples: Sequence[int] = (1, 4, 16, 64, 256),
    num_seeds: int = 256,
    num_steps: int = 2000,
    optimizer=None,
    grad_draws: int = 2000,
    key: jax.Array,
    out: str | Path | None = None,
    figures: bool = True,
    panel_samples: int = 32,
    workers: int = 2,
    echo=print,
) -> DemoResult:
    """Runs the table (and, with ``out``, writes it and the figures); see the module docstring.

    ``workers`` divergences are worked on at a time, each in its own thread
    (optima, gradient statistics, its sweep): one compiles while another runs.
    The numbers do not depend on ``workers``; the rows print in order.
    """
    t_start = time.perf_counter()
    _checks.check_int(workers, "workers", 1)
    for name, est in fits:  # bad input fails here, before any thread starts
        check_estimator(name, est, target, min_samples(est, name))
    optimizer = optimizer or default_optimizer()
    names = list(dict.fromkeys(n for n, _ in fits))
    echo(HEADER + "\n" + "-" * len(HEADER))

    def group(i: int, name: str) -> _Group:
        return _run_group(
            i, name, [f for f in fits if f[0] == name], target, q0, num_samples, num_seeds,
            num_steps, optimizer, grad_draws, key,
        )  # fmt: skip

    rows, runs, stats, optima, done = [], [], {}, {}, []
    with ThreadPoolExecutor(max_workers=min(workers, len(names))) as pool:
        futures = [pool.submit(group, i, n) for i, n in enumerate(names)]
        for name, future in zip(names, futures):
            try:
                g = future.result()
            except BaseException:  # an error or Ctrl-C: start no further divergence
                for f in futures:
                    f.cancel()
                raise
            optima[name] = g.optima
            stats.update(g.stats)
            for run in g.sweep.runs:
                c = run.config
                st = stats.get((c.name, c.estimator))
                k_index = 0
                if st is not None:
                    ks = [k for k in num_samples if k >= min_samples(c.estimator, c.name)]
                    k_index = ks.index(c.num_samples)
                rows.append(make_row(run, st, k_index))
                runs.append(run)
                echo(format_row(rows[-1]))
            echo(
                f"  ({name}: one program, {len(g.sweep.runs)} configurations: "
                f"compile {g.sweep.compile_s:.1f} s, run {g.sweep.run_s:.1f} s)"
            )
            done.append(g)
    tables_s = time.perf_counter() - t_start
    figures_s = 0.0
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = write_tables(out, rows)
        if figures:
            t = time.perf_counter()
            written += _figures(out, target, q0, runs, stats, optima, key, panel_samples, workers)
            figures_s = time.perf_counter() - t
        for path in written:
            echo(f"wrote {path}")
    timing = Timing(
        compile_s=sum(g.sweep.compile_s for g in done),
        run_s=sum(g.sweep.run_s for g in done),
        optima_s=sum(g.optima_s for g in done),
        grad_stats_s=sum(g.grad_stats_s for g in done),
        tables_s=tables_s,
        figures_s=figures_s,
        total_s=time.perf_counter() - t_start,
        workers=min(workers, len(names)),
    )
    return DemoResult(rows, runs, stats, optima, timing)


class _Group(NamedTuple):
    """One divergence's share of the table."""

    optima: Optima | None
    stats: dict
    sweep: SweepResult
    optima_s: float
    grad_stats_s: float


def _run_group(i, name, group, target, q0, num_samples, num_seeds, num_steps, optimizer,
               grad_draws, key) -> _Group:  # fmt: skip
    """Optima, gradient statistics at ``q0`` and one sweep for divergence ``name``."""
    t = time.perf_counter()
    optima = _optima(name, target, q0)
    optima_s = time.perf_counter() - t
    stats = {}
    mc = [e for n, e in group if e != "exact"]
    if mc:  # every estimator of this divergence in one compiled program
        many = grad_stats_many(
            name, mc, target, q0, num_samples, grad_draws, jax.random.fold_in(key, 10_000 + i)
        )
        stats = {(name, e): s for e, s in many.items()}
    grad_stats_s = time.perf_counter() - t - optima_s
    res = sweep(
        target, q0, group, num_samples=num_samples, num_seeds=num_seeds, num_steps=num_steps,
        optimizers={"sgd": optimizer}, key=jax.random.fold_in(key, i), optima={name: optima},
        progress=False,
    )  # fmt: skip
    return _Group(optima, stats, res, optima_s, grad_stats_s)


def _optima(name, target, q0):
    try:
        return optimal_q(name, target, family="diag" if q0.family == "diag" else "full")
    except (ValueError, RuntimeError):
        return None


def _figures(out, target, q0, runs, stats, optima, key, panel_samples, workers) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no window
    from divjax.plot import demo_figures  # presentation: imports matplotlib, lazily

    data = demo_data(
        target, q0, runs, stats, optima, key=key, panel_samples=panel_samples, workers=workers
    )
    return demo_figures(out, data)


DEMO_ESTIMATORS = {
    "kl_forward": "snis",
    "kl_reverse": "reparam",
    "chi2_forward": "snis2",
    "chi2_reverse": "score_sn",
}


def demo_data(target, q0, runs, stats, optima, *, key, panel_samples=32, path_ks=(4, 64),
              num_steps=300, num_frames=30, steps_per_frame=5, workers=2):  # fmt: skip
    """Everything the demo's figures draw (`divjax.plot.figures.DemoData`), computed here.

    ``workers`` divergences at a time, each in its own thread.
    """
    from divjax.plot import DemoData, Frames

    _checks.check_int(workers, "workers", 1)
    k_aux, k_paths, k_anim = jax.random.split(key, 3)
    names = list(dict.fromkeys(r.config.name for r in runs))
    mc, fitted, notes = {}, {}, {}
    for run in runs:
        c = run.config
        if c.estimator != "exact":
            mc.setdefault(c.name, c.estimator)
        elif c.name not in fitted:
            fitted[c.name] = jax.tree_util.tree_map(lambda a: a[0], run.q)
            notes[c.name] = jax.tree_util.tree_map(
                lambda a: a.reshape(-1)[0], run.status
            ).describe()
    for n in names:
        mc.setdefault(n, DEMO_ESTIMATORS.get(n, ESTIMATORS[n][-1]))

    def one(i: int, n: str):
        """Divergence ``n``'s trajectories, surface and one draw's weights at its fit."""
        key_n = jax.random.fold_in(k_paths, i)
        exact_path, exact_div = fit_paths(target, q0, n, "exact", num_steps=num_steps, key=key_n)
        label = "exact" + (f" (diverged at step {exact_div[0]})" if exact_div[0] >= 0 else "")
        paths = {label: exact_path}
        for k in path_ks:
            path, _ = fit_paths(
                target, q0, n, mc[n], num_samples=k, num_seeds=3, num_steps=num_steps, key=key_n
            )
            paths[f"{mc[n]}, K = {k}"] = path
        fit_n, note = fitted.get(n), notes.get(n)
        if fit_n is None:
            fit_n = jax.tree_util.tree_map(lambda a: a[0, -1], exact_path)
            note = f"{num_steps} exact steps"
        surf = None
        if q0.event_shape == ():
            starts = [(float(q0.loc), float(q0.log_scale))]
            surf = surface(n, target, *default_window(target, starts))
        aux = draw_aux(target, fit_n, n, mc[n], panel_samples, jax.random.fold_in(k_aux, i))
        return paths, fit_n, note, surf, aux

    with ThreadPoolExecutor(max_workers=min(workers, len(names))) as pool:
        done = list(pool.map(one, range(len(names)), names))
    trajectories, surfaces, auxes = {}, {}, {}
    for n, (paths, fit_n, note, surf, aux) in zip(names, done):
        trajectories[n], fitted[n], notes[n], auxes[n] = paths, fit_n, note, aux
        if surf is not None:
            surfaces[n] = surf
    anim = names[0]
    total = num_frames * steps_per_frame
    path, div = fit_paths(target, q0, anim, mc[anim], num_samples=16, num_steps=total, key=k_anim)
    idx = np.arange(num_frames + 1) * steps_per_frame
    qs = jax.tree_util.tree_map(lambda a: a[0, idx], path)
    frames = Frames(anim, mc[anim], idx, qs, draw_aux(target, qs, anim, mc[anim], 16, k_anim),
                    diverged_at=int(div[0]))  # fmt: skip
    return DemoData(
        target=target, q0=q0, optima=optima, runs=tuple(runs), grad_stats=stats, fitted=fitted,
        notes=notes, estimators=mc, surfaces=surfaces, trajectories=trajectories, auxes=auxes,
        frames=frames,
    )  # fmt: skip


def timing_report(t: Timing) -> str:
    """Where the demo's time went, one line."""
    threads = f" (thread seconds, {t.workers} divergences at a time)" if t.workers > 1 else ""
    return (
        f"time: {t.total_s:.1f} s = table {t.tables_s:.1f} s + figures {t.figures_s:.1f} s + "
        f"other {t.total_s - t.tables_s - t.figures_s:.1f} s; table: sweeps "
        f"{t.compile_s:.1f} s compiling + {t.run_s:.1f} s running, optima {t.optima_s:.1f} s, "
        f"grad_stats {t.grad_stats_s:.1f} s{threads}"
    )


__all__ = ["DemoResult", "Timing", "demo_data", "fits_for", "run_demo", "timing_report"]
