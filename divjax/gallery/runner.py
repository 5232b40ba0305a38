"""Runs gallery entries: prints claim, table and verdict; saves figures, records and pages."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from divjax.gallery import ENTRIES, entry
from divjax.gallery._common import Result, markdown_table, table

VERDICTS = {
    "holds": "yes",
    "narrower": "narrower than stated",
    "wrong": "no: divjax finds it wrong",
}


def verdict(result: Result) -> str:
    """One phrase: holds, narrower, wrong, or (a check failed) not reproduced."""
    if not result.confirmed:
        return "NOT REPRODUCED (a check failed)"
    return VERDICTS[result.verdict]


def report(result: Result, seconds: float | None = None) -> str:
    """The text ``divjax reproduce NAME`` prints."""
    lines = [
        f"== {result.name}: {result.title}",
        f"source: {result.source}",
        f"claim: {result.statement}",
        "",
        table(result.columns, result.rows),
        "",
        *(f"  {n}" for n in result.notes),
        "",
        "checks (on divjax's exact values and gradients; tolerances from standard errors):",
        *(f"  [{'pass' if c.holds else 'FAIL'}] {c.what}: {c.detail}" for c in result.checks),
        "",
        f"measured: {result.measured}",
        f"verdict: {verdict(result)}" + (f"   ({seconds:.0f} s)" if seconds is not None else ""),
    ]
    return "\n".join(lines)


def record(result: Result, seconds: float, figure: str | None) -> dict:
    """A JSON-ready summary of one entry (what the pages are generated from)."""
    return dict(
        name=result.name,
        title=result.title,
        source=result.source,
        statement=result.statement,
        columns=list(result.columns),
        rows=[[str(c) for c in r] for r in result.rows],
        checks=[dict(what=c.what, holds=bool(c.holds), detail=c.detail) for c in result.checks],
        notes=list(result.notes),
        measured=result.measured,
        verdict=result.verdict,
        confirmed=result.confirmed,
        verdict_text=verdict(result),
        seconds=round(seconds, 1),
        figure=figure,
    )


def reproduce(
    name: str,
    *,
    size: str = "full",
    out: str | Path | None = None,
    seed: int = 0,
    figures: bool = True,
    echo: Callable[[str], None] | None = print,
) -> dict:
    """Measures one entry, prints its report, writes ``out/NAME.png`` and ``out/NAME.json``."""
    import jax

    mod = entry(name)
    start = time.perf_counter()
    result = mod.measure(size, jax.random.key(seed))
    seconds = time.perf_counter() - start
    figure = None
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if figures:
            fig = mod.figure(result)
            fig.savefig(out / f"{name}.png", dpi=110)
            figure = f"{name}.png"
    rec = record(result, seconds, figure)
    if out is not None:
        (out / f"{name}.json").write_text(json.dumps(rec, indent=1, ensure_ascii=False) + "\n")
    if echo is not None:
        echo(report(result, seconds))
        echo("")
    return rec


def load(out: str | Path, names: Sequence[str] = ENTRIES) -> list[dict]:
    """The records a previous run wrote to ``out`` (entries without one are skipped)."""
    out = Path(out)
    return [
        json.loads((out / f"{n}.json").read_text()) for n in names if (out / f"{n}.json").exists()
    ]


def summary_table(records: Sequence[dict]) -> str:
    """The markdown table ``claim | source | measured | holds?``."""
    rows = [
        (
            f"[{r['title']}](#{r['name'].replace('_', '-')})",
            _short_source(r["source"]),
            r["measured"],
            r["verdict_text"],
        )
        for r in records
    ]
    return markdown_table(("claim", "source", "measured", "holds?"), rows)


def _short_source(source: str) -> str:
    """``Authors (year)`` from a full reference."""
    if ")," not in source:
        return source
    return source.split("),")[0] + ")"


def gallery_page(records: Sequence[dict], img: str = "img", size: str = "full") -> str:
    """The user-facing page (docs/gallery.md): the summary table, then each claim in full."""
    how = "divjax reproduce --all" + (" --quick" if size == "quick" else "")
    parts = [
        "# Published results, reproduced",
        "",
        "Each entry states a published claim, measures it with divjax and checks it against "
        "divjax's "
        "exact divergences and gradients, with tolerances derived from standard errors (3 SE; "
        "asymptotic exponents get an extra 0.05 for pre-asymptotic curvature). Run one with "
        "`divjax reproduce NAME` (`--quick` for small sizes, `--list` for the names), or all with "
        f"`{how} --docs docs/gallery.md`, which regenerates this page and its figures.",
        "",
        summary_table(records),
        "",
    ]
    for r in records:
        parts += [
            f"## {r['name'].replace('_', '-')}",
            "",
            f"**{r['title']}.** {r['source']}.",
            "",
            f"> {r['statement']}",
            "",
            f"    divjax reproduce {r['name']}",
            "",
            markdown_table(
                r["columns"], [[c.replace("|", "\\|") for c in row] for row in r["rows"]]
            ),
            "",
            *(f"- {n}" for n in r["notes"]),
            "",
            "Checks:",
            "",
            *(f"- {'✓' if c['holds'] else '✗'} {c['what']}: {c['detail']}" for c in r["checks"]),
            "",
            f"**Verdict: {r['verdict_text']}.** {r['measured']}.",
            "",
        ]
        if r.get("figure"):
            parts += [f"![{r['title']}]({img}/{r['figure']})", ""]
    return "\n".join(parts)


def run(
    names: Sequence[str],
    *,
    size: str = "full",
    out: str | Path = "divjax_gallery",
    seed: int = 0,
    figures: bool = True,
    table_path: str | Path | None = None,
    docs_path: str | Path | None = None,
    echo: Callable[[str], None] | None = print,
) -> int:
    """``divjax reproduce``: runs ``names`` in order; 0 if every check passed, 1 otherwise."""
    records = [
        reproduce(n, size=size, out=out, seed=seed, figures=figures, echo=echo) for n in names
    ]
    if table_path is not None:
        Path(table_path).parent.mkdir(parents=True, exist_ok=True)
        Path(table_path).write_text(summary_table(records) + "\n")
    if docs_path is not None:
        docs = Path(docs_path)
        img = docs.parent / "img"
        img.mkdir(parents=True, exist_ok=True)
        for r in records:
            if r["figure"]:
                (img / r["figure"]).write_bytes((Path(out) / r["figure"]).read_bytes())
        docs.write_text(gallery_page(records, "img", size))
    if echo is not None and len(records) > 1:
        echo(summary_table(records))
        total = sum(r["seconds"] for r in records)
        echo(
            f"\n{sum(r['confirmed'] for r in records)} of {len(records)} entries confirmed in "
            f"{math.ceil(total)} s"
        )
    return 0 if all(r["confirmed"] for r in records) else 1


def listing() -> str:
    """``divjax reproduce --list``: one line per entry."""
    lines = []
    for n in ENTRIES:
        mod = entry(n)
        lines.append(f"{n:<18} {mod.TITLE}  [{_short_source(mod.SOURCE)}]")
    return "\n".join(lines)


def run_cli(args) -> int:
    """``divjax reproduce`` (parsed by `divjax.cli`)."""
    import sys

    if args.list:
        print(listing())
        return 0
    names = list(ENTRIES) if args.all else list(args.names)
    if not names:
        print("divjax: error: name an entry, or use --all or --list", file=sys.stderr)
        return 2
    for n in names:
        if n not in ENTRIES:
            print(
                f"divjax: error: unknown entry {n!r}; valid choices: {', '.join(ENTRIES)}",
                file=sys.stderr,
            )
            return 2
    return run(
        names,
        size="quick" if args.quick else "full",
        out=args.out,
        seed=args.seed,
        figures=not args.no_figures,
        table_path=args.table,
        docs_path=args.docs,
    )


__all__ = [
    "gallery_page",
    "listing",
    "load",
    "report",
    "reproduce",
    "run",
    "run_cli",
    "summary_table",
    "verdict",
]
