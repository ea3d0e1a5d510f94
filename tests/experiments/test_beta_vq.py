"""Smoke test of the beta-vq experiment in quick mode."""

from __future__ import annotations

import csv

import matplotlib

matplotlib.use("Agg")

from maxaffine.experiments import (
    available,  # noqa: E402
    beta_vq,  # noqa: E402
)


def test_beta_vq_quick_writes_sane_outputs(tmp_path):
    assert "beta-vq" in available()
    out = beta_vq.run(tmp_path, quick=True, seed=0, progress=False)
    for name in ("beta-vq-results.csv", "beta-vq-beta.csv", "beta-vq-trajectory.csv",
                 "beta-vq.md", "beta-vq-hist.png", "beta-vq-epochs.png"):
        path = tmp_path / name
        assert path.exists() and path.stat().st_size > 0, name
    rows = list(csv.DictReader(open(tmp_path / "beta-vq-results.csv")))
    assert len(rows) == 3 * len(beta_vq.ACTIVATIONS)  # 3 settings x activations x 1 seed
    for row in rows:
        assert 0.0 <= float(row["test_acc"]) <= 1.0
    # every setting is above chance (10 classes) for at least one activation after 2 epochs
    for setting, accs in out["test_acc"].items():
        assert max(m for m, _ in accs.values()) > 0.15, (setting, accs)
    betas = list(csv.DictReader(open(tmp_path / "beta-vq-beta.csv")))
    # 3 settings x 2 learned activations x 2 layers
    assert len(betas) == 12
    for row in betas:
        lo, med, hi = float(row["beta_q05"]), float(row["beta_q50"]), float(row["beta_q95"])
        assert 0.0 < lo <= med <= hi < 1.0
        init = float(row["activation"].split("-")[1])
        # two epochs of Adam at lr 1e-3 move a logit by at most ~2 * steps * lr
        assert abs(float(row["beta_mean"]) - init) < 0.2
    md = (tmp_path / "beta-vq.md").read_text()
    assert "| digits-mlp |" in md and "swish-0.5" in md
