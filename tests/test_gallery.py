"""The gallery: every claim is checked statistically at the quick size, and every check can fail.

Each entry runs once per session at its ``quick`` size with the fixed key 0
(`measured`). A claim's test asserts that all of its checks pass (tolerances of
3 standard errors, from the draws) and then feeds the same data a wrong claim
(a wrong exponent, a wrong limit, swapped estimators) to show the check rejects it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from divjax import cli
from divjax.gallery import ENTRIES, entry

ROOT = Path(__file__).resolve().parent.parent
_RESULTS = {}


def measured(name):
    if name not in _RESULTS:
        _RESULTS[name] = entry(name).measure("quick", jax.random.key(0))
    return _RESULTS[name]


def failing(checks):
    return [c.what for c in checks if not c.holds]


def test_every_entry_has_its_parts():
    for name in ENTRIES:
        mod = entry(name)
        assert mod.NAME == name
        assert {"quick", "full"} <= set(mod.SIZES)
        for attr in ("TITLE", "SOURCE", "STATEMENT", "measure", "figure", "checks"):
            assert hasattr(mod, attr), (name, attr)
        lines = (ROOT / "divjax" / "gallery" / f"{name}.py").read_text().count("\n")
        assert lines < 400, (name, lines)


def test_import_divjax_does_not_import_the_gallery_or_matplotlib():
    code = (
        "import sys, divjax; "
        "print(sorted(m for m in sys.modules if 'gallery' in m or m == 'matplotlib'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_stl_zero_variance_at_p_and_quadratic_growth():
    r = measured("stl")
    assert not failing(r.checks), failing(r.checks)
    st, rp = r.data["stats"]["stl"], r.data["stats"]["reparam"]
    assert np.all(st["var"][0] <= 1e-8 * rp["var"][0])
    wrong = entry("stl").checks(r.data, claimed_slope=0.0)  # "the variance stays flat near p"
    assert sum("grows like t^2" in w for w in failing(wrong)) == 2


def test_iwae_snr_decays_like_one_over_sqrt_k():
    r = measured("iwae_snr")
    assert not failing(r.checks), failing(r.checks)
    snr = np.exp(r.data["log_snr"][:, 0])
    assert np.all(np.diff(snr) < 0)
    mod = entry("iwae_snr")
    for wrong in (0.0, 0.5, -1.0):
        assert failing(mod.checks(r.data, claimed=wrong)), wrong


def test_dreg_snr_grows_like_sqrt_k_and_snis_dreg_is_narrower():
    r = measured("dreg")
    assert not failing(r.checks), failing(r.checks)
    assert r.verdict == "narrower"
    mod = entry("dreg")
    for wrong in (0.0, -0.5):
        assert failing(mod.checks(r.data, claimed=wrong)), wrong
    labels = list(r.data["snis"])
    near, far = (mod.var_ratio(r.data, label)[0] for label in labels)
    assert np.all(near < 1) and np.all(far > 1)


def test_snis_bias_is_order_one_over_k_and_msc_is_unbiased():
    r = measured("snis_msc")
    assert not failing(r.checks), failing(r.checks)
    mod = entry("snis_msc")
    assert failing(mod.checks(r.data, claimed=-0.5))
    moved = dict(r.data, c=r.data["c"] * 2.0)  # a wrong limit of K x bias
    assert sum("tends to the exact c" in w for w in failing(mod.checks(moved))) == 2
    biased_msc = dict(r.data, grads=dict(r.data["grads"], msc=r.data["grads"]["snis"]))
    assert any("MSC" in w for w in failing(mod.checks(biased_msc)))


def test_cubo_bound_infinite_region_and_mc_bias():
    r = measured("cubo")
    assert not failing(r.checks), failing(r.checks)
    mod = entry("cubo")
    assert failing(mod.checks(dict(r.data, limit=0.0)))  # "the estimate is unbiased"
    assert failing(
        mod.checks(dict(r.data, cubo=r.data["cubo"] - 1.0))
    )  # a bound that dips below log Z


def test_renyi_limits_and_the_three_minima_at_one_half():
    r = measured("renyi")
    assert not failing(r.checks), failing(r.checks)
    mod = entry("renyi")
    assert failing(
        mod.checks(dict(r.data, kl_fwd=r.data["kl_rev"]))
    )  # the wrong limit as alpha -> 0
    assert failing(
        mod.checks(dict(r.data, kl_rev=r.data["kl_fwd"]))
    )  # the wrong limit as alpha -> 1


def test_score_function_wins_on_a_comb_and_loses_on_smooth_targets():
    r = measured("score_vs_pathwise")
    assert not failing(r.checks), failing(r.checks)
    mod = entry("score_vs_pathwise")
    swapped = {}
    for key in ("smooth", "rough"):
        st = dict(r.data[key])
        st["log_ratio"] = -st["log_ratio"]
        swapped[key] = st
    assert len(failing(mod.checks(dict(r.data, **swapped)))) >= 2


def test_seed_page_claims_are_found_wrong():
    r = measured("seed_page")
    assert not failing(r.checks), failing(r.checks)
    assert r.verdict == "wrong"
    mod = entry("seed_page")
    assert failing(mod.checks(dict(r.data, pos=np.zeros(2))))  # what "always negative" would give
    assert failing(mod.checks(dict(r.data, numeric=r.data["numeric"] * 1.001)))


def test_cli_list_and_one_entry_end_to_end(tmp_path, capsys):
    assert cli.main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ENTRIES)
    assert cli.main(["reproduce", "nope"]) == 2
    code = cli.main(
        [
            "reproduce",
            "seed_page",
            "--quick",
            "--no-cache",
            "--out",
            str(tmp_path / "out"),
            "--table",
            str(tmp_path / "table.md"),
            "--docs",
            str(tmp_path / "docs" / "gallery.md"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "verdict: no: divjax finds it wrong" in out
    rec = json.loads((tmp_path / "out" / "seed_page.json").read_text())
    assert rec["confirmed"] and (tmp_path / "out" / "seed_page.png").stat().st_size > 10_000
    assert "| claim | source | measured | holds? |" in (tmp_path / "table.md").read_text()
    page = (tmp_path / "docs" / "gallery.md").read_text()
    assert "](img/seed_page.png)" in page and (tmp_path / "docs" / "img" / "seed_page.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ENTRIES)
def test_figure(name, tmp_path):
    fig = entry(name).figure(measured(name))
    fig.savefig(tmp_path / f"{name}.png", dpi=60)
    assert (tmp_path / f"{name}.png").stat().st_size > 5_000


@pytest.mark.slow
def test_snis_msc_fits():
    mod = entry("snis_msc")
    r = mod.measure("quick", jax.random.key(0), fit_ks=(16, 64), fit_seeds=64, fit_steps=3000)
    assert not failing(r.checks), failing(r.checks)
    assert any("fits" in c.what for c in r.checks)


@pytest.mark.slow
def test_cubo_optima_and_fits():
    r = entry("cubo").measure(
        "quick", jax.random.key(0), optima=True, fit_ks=(16,), fit_seeds=32, fit_steps=2000
    )
    assert not failing(r.checks), failing(r.checks)
    assert any("wider" in c.what for c in r.checks)


@pytest.mark.slow
def test_renyi_optimum_path():
    r = entry("renyi").measure("quick", jax.random.key(0), optima_alphas=(0.05, 0.5, 1.0))
    assert not failing(r.checks), failing(r.checks)
    assert len(r.data["optima"][0.5]) == 3  # renyi_reverse at alpha = 1/2 has three local minima


@pytest.mark.slow
@pytest.mark.parametrize("name", ["stl", "iwae_snr", "dreg", "score_vs_pathwise"])
def test_other_keys(name):
    """The claims hold for other keys too (not one lucky draw)."""
    r = entry(name).measure("quick", jax.random.key(7))
    assert not failing(r.checks), failing(r.checks)


@pytest.mark.slow
def test_papers_notebook_executes(monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = ROOT / "notebooks" / "papers.ipynb"
    nb = nbformat.read(path, as_version=4)
    stored = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert sum("image/png" in o.get("data", {}) for o in stored) >= 3, "stored with its outputs"
    monkeypatch.setenv("DIVJAX_QUICK", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    assert "sizes: quick" in "".join(o.get("text", "") for o in outputs)
