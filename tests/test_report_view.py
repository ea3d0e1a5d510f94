"""The interactive partition view inside an HTML report, in headless Chromium."""

from __future__ import annotations

import torch
from torch import nn

import maxaffine
from maxaffine import view
from maxaffine.report.html import Report
from tests.test_report_browser import _probe_page


def test_report_embeds_the_view(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 12), nn.ReLU(), nn.Linear(12, 3)).double().eval()
    part = maxaffine.partition_slice(net, maxaffine.Slice.box(), progress=False)
    rep = Report("view test")
    rep.section("Interactive view")
    rep.component(view.partition_html(part), "Linear regions", "Hover a region.")
    page = tmp_path / "index.html"
    page.write_text(rep.render(), encoding="utf-8")
    text = page.read_text()
    assert text.count('class="maxaffine-view"') == 1 and "Hover a region." in text
    result, stderr = _probe_page(page, tmp_path)
    assert result["errors"] == [] and "CONSOLE" not in stderr
