"""The divjax command line: tables written, one-line errors."""

import json

import pytest

from divjax import cli


def test_compare_writes_tables(tmp_path, capsys):
    rc = cli.main(
        [
            "compare",
            "--weights",
            "1,1",
            "--locs=-3,3",
            "--scales",
            "1,1",
            "--divergences",
            "kl_reverse",
            "--estimators",
            "exact,reparam",
            "--num-samples",
            "4",
            "--seeds",
            "4",
            "--steps",
            "50",
            "--grad-draws",
            "64",
            "--no-figures",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    rows = json.loads((tmp_path / "table.json").read_text())
    assert [(r["estimator"], r["num_samples"]) for r in rows] == [("exact", 0), ("reparam", 4)]
    assert (tmp_path / "table.csv").read_text().startswith("divergence,estimator")
    out = capsys.readouterr().out
    assert "kl_reverse" in out and "%glob" in out


@pytest.mark.parametrize(
    "argv,match",
    [
        (
            ["compare", "--weights", "1,-1", "--locs", "0,1", "--scales", "1,1"],
            "weights must be positive",
        ),
        (
            ["compare", "--weights", "1", "--locs", "0", "--scales", "1", "--divergences", "kl"],
            "valid choices",
        ),
        (["compare", "--weights", "a", "--locs", "0", "--scales", "1"], "comma-separated"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_flags_give_one_line_error(argv, match, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        code = cli.main(argv + (["--out", str(tmp_path)] if argv[0] == "compare" else []))
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err and "Traceback" not in err


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit):
        cli.main(["compare", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--weights",
        "--locs",
        "--scales",
        "--divergences",
        "--estimators",
        "--num-samples",
        "--seeds",
        "--steps",
        "--learning-rate",
        "--momentum",
        "--optimizer",
        "--out",
        "--float64",
    ):
        assert flag in text
