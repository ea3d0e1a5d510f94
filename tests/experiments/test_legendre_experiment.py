"""Smoke test of the legendre experiment in quick mode (< 30 s)."""

from __future__ import annotations

import csv

import matplotlib

matplotlib.use("Agg")

from maxaffine.experiments import available, run  # noqa: E402


def test_legendre_quick_writes_tables_figures_and_headline(tmp_path):
    assert "legendre" in available()
    result = run("legendre", tmp_path, quick=True, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "legendre.csv")))
    assert len(rows) == len(result["rows"]) == 9
    assert (tmp_path / "legendre.md").read_text().count("\n") == 2 + len(rows)
    for name in ("legendre-error.png", "legendre-accuracy.png", "legendre-templates.png"):
        assert (tmp_path / name).stat().st_size > 1000
    for r in result["rows"]:
        assert 0.0 <= r["acc_fhat"] <= 1.0 and r["mean_abs_err"] >= 0 and r["build_s"] > 0
    # k-means planes: the error shrinks as the budget grows (nested in expectation, checked here
    # on the quick setting's fixed seed) and 100 planes keep >= 95% of the accuracy
    km = sorted((r["n_planes"], r["mean_abs_err"], r["acc_ratio"]) for r in result["rows"]
                if r["select"] == "kmeans")
    assert km[-1][1] < km[0][1]
    assert km[-1][2] >= 0.95
    assert result["headline"]["kmeans"] is not None
