"""The divjax command line: tables that count every fit, one-line errors, --version, python -m."""

import json
import subprocess
import sys

import pytest

import divjax
from divjax import cli

COMPARE = [
    "compare", "--weights", "1", "1", "--locs", "-3", "3", "--scales", "1", "1",
    "--divergences", "chi2_reverse", "--estimators", "exact", "reparam",
    "--num-samples", "4", "--seeds", "4", "--steps", "50", "--grad-draws", "64",
    "--no-figures", "--no-cache", "--q0", "0", "5",
]  # fmt: skip


def test_compare_writes_tables_that_count_every_fit(tmp_path, capsys):
    assert cli.main(COMPARE + ["--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "table.json").read_text())
    assert [(r["divergence"], r["estimator"], r["num_samples"]) for r in rows] == [
        ("chi2_reverse", "exact", 0),
        ("chi2_reverse", "reparam", 4),
    ]
    assert (tmp_path / "table.csv").read_text().startswith("divergence,estimator")
    for r in rows:
        assert r["num_fits"] == 4
        outcomes = [r[k] for k in r if k.startswith("pct_")]
        assert sum(outcomes) == pytest.approx(100.0)
    # chi2(q0 || p) is infinite at q0 = N(0, 5): the exact fit cannot step; its row
    # covers no fit and says why in its own column instead of a made-up median.
    exact = rows[0]
    assert exact["num_in_stat"] == 0 and exact["pct_diverged"] == 100.0
    assert exact["median"] == "nan"  # JSON keeps nan and inf apart, as strings
    assert rows[1]["snr_loc"] in ("inf", "nan") or isinstance(rows[1]["snr_loc"], float)
    out = capsys.readouterr().out
    assert "in stat" in out and "one program" in out and "time:" in out
    assert "chi2(q||p)" not in out or "inf" in out


def test_bad_input_is_one_line_on_stderr(capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["compare", "--weights", "a", "--locs", "0", "--scales", "1"])
    assert err.value.code == 2
    msg = capsys.readouterr().err.strip().splitlines()
    assert len(msg) == 1 and msg[0].startswith("divjax: error:")
    bad = [
        "compare",
        "--weights",
        "1",
        "--locs",
        "0",
        "--scales",
        "1",
        "--divergences",
        "kl_sideways",
    ]
    assert cli.main(bad + ["--no-cache"]) == 2
    assert "valid choices" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value, valid",
    [("--preset", "nope", "page"), ("--parameterization", "foo", "expectation")],
)
def test_explore_flags_are_checked_before_a_window_opens(capsys, monkeypatch, flag, value, valid):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    assert cli.main(["explore", flag, value, "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert f"{value!r}" in err and "valid choices" in err and valid in err


def test_version_and_module_entry_point(capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["--version"])
    assert err.value.code == 0
    assert capsys.readouterr().out.strip() == f"divjax {divjax.__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "divjax", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"divjax {divjax.__version__}"


def test_cache_location_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli.cache_dir() == tmp_path / "divjax" / "jax"


def test_demo_works_on_divergences_two_at_a_time_with_the_same_numbers():
    """`run_demo` with two worker threads: the rows of one thread at a time, in order."""
    import jax

    from divjax import demo

    p, q0 = divjax.default_target(), divjax.Gaussian.from_loc_variance(0.0, 5.0)
    fits = [("kl_forward", "snis"), ("kl_reverse", "exact"), ("kl_reverse", "reparam")]
    kw = dict(num_samples=(4,), num_seeds=3, num_steps=20, grad_draws=16, key=jax.random.key(2))
    rows = {w: demo.run_demo(p, q0, fits, workers=w, echo=lambda s: None, **kw) for w in (1, 2)}
    assert [r[:3] for r in rows[2].rows] == [
        ("kl_forward", "snis", 4),
        ("kl_reverse", "exact", 0),
        ("kl_reverse", "reparam", 4),
    ]
    for a, b in zip(rows[1].rows, rows[2].rows):
        assert repr(a) == repr(b)  # every field, NaN included
    assert rows[2].timing.workers == 2 and rows[1].timing.workers == 1
    with pytest.raises(ValueError, match="workers"):
        demo.run_demo(p, q0, fits, workers=0, **kw)
    with pytest.raises(ValueError, match="nope"):  # before any thread starts
        demo.run_demo(p, q0, fits + [("kl_forward", "nope")], **kw)
