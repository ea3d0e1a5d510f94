"""Smoke runs (quick=True) of the issue-4 experiments: outputs exist and hold sane numbers."""

from __future__ import annotations

import csv

import matplotlib
import pytest

matplotlib.use("Agg")

from maxaffine.experiments import available, run  # noqa: E402

EXPECTED = {
    "orthogonal-templates": ["orthogonal-templates.csv", "orthogonal-templates-runs.csv",
                             "orthogonal-templates-sweep.png"],
    "augmentation-rugosity": ["augmentation-rugosity.csv", "augmentation-rugosity-epochs.csv",
                              "augmentation-rugosity-curves.png"],
    "hessian-regularizer": ["hessian-regularizer.csv", "hessian-regularizer-runs.csv",
                            "hessian-regularizer-bars.png"],
    "memorization": ["memorization.csv", "memorization-cosines.png"],
    "vq-retrieval": ["vq-retrieval.csv", "vq-retrieval-agreement.png"],
    "local-complexity-dynamics": ["local-complexity-dynamics.csv",
                                  "local-complexity-dynamics-curves.png"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_quick_run_writes_tables_and_figures(name, tmp_path):
    assert name in available()
    run(name, tmp_path, quick=True, seed=0, progress=False)
    for f in EXPECTED[name] + [f"{name}.md"]:
        assert (tmp_path / f).stat().st_size > 0, f
    rows = list(csv.DictReader(open(tmp_path / EXPECTED[name][0])))
    assert rows
    md = (tmp_path / f"{name}.md").read_text()
    assert md.startswith("# ") and "|---|" in md and ".png)" in md


def test_quick_numbers_are_sane(tmp_path):
    out = run("vq-retrieval", tmp_path, quick=True, progress=False)
    for r in out["rows"]:
        assert 0.0 <= r["5-NN agreement"] <= 1.0
    pixels = out["rows"][0]["5-NN agreement"]
    assert pixels > 0.5  # Euclidean k-NN on digits is far above chance (0.1)
    lc = run("local-complexity-dynamics", tmp_path, quick=True, progress=False)
    for r in lc["rows"]:
        # LC counts neurons: between 0 and 4*200 hidden + 10 output units
        assert all(0 <= v <= 810 for k, v in r.items() if k.startswith("lc_"))
