"""The quick demo report renders in a real headless browser (Debian's ``chromium``).

Runs ``maxaffine demo --quick`` once, checks the report's content and numbers against an
independent oracle, then opens it in headless Chromium with background networking off:
every image must load and no console message may appear. A screenshot is saved to
``test-artifacts/report-screenshot.png``. Without chromium the test fails (CI installs it:
``apt-get install -y chromium``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from maxaffine import cli, demo

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

# Injected first in <head>: records console errors/warnings, uncaught errors and failed
# resource loads, then after 'load' writes the image status into the DOM for --dump-dom.
PROBE = """<script>(function(){var errs=[];
["error","warn"].forEach(function(k){var f=console[k];console[k]=function(){
errs.push(k+": "+Array.prototype.join.call(arguments," "));f.apply(console,arguments);};});
window.addEventListener("error",function(e){errs.push("error event: "+(e.message||
(e.target&&(e.target.alt||e.target.src||e.target.tagName))));},true);
window.addEventListener("load",function(){var bad=[],imgs=document.images;
for(var i=0;i<imgs.length;i++){var m=imgs[i];if(!(m.complete&&m.naturalWidth>0))
bad.push(m.alt||String(i));}var d=document.createElement("pre");d.id="maxaffine-probe";
d.textContent=JSON.stringify({images:imgs.length,broken:bad,errors:errs});
document.body.appendChild(d);});})();</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is required for this test but was not found on PATH; "
                "install it with `apt-get update && apt-get install -y chromium` "
                "(.ci/run does this)")


def _probe_page(html_file: Path, tmp_path: Path) -> tuple[dict, str]:
    """Open ``html_file`` (with the probe injected) and return (probe result, stderr)."""
    html = html_file.read_text(encoding="utf-8")
    probed = tmp_path / f"probe-{html_file.stem}.html"
    probed.write_text(html.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    proc = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile-dom'}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--dump-dom",
         probed.as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="maxaffine-probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, "the page never finished loading (no probe output)"
    text = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
    return json.loads(text.replace("&amp;", "&")), proc.stderr


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "report"
    assert cli.main(["demo", "--quick", "--out", str(out), "-q"]) == 0
    return out


def test_demo_report_content(demo_report):
    figures = {p.name for p in (demo_report / "figures").iterdir()}
    assert {"demo-final.png", "demo-evolution.png", "demo-evolution-anim.gif",
            "demo-power-templates.png", "demo-complexity.png", "demo-digits-slice.png",
            "demo-digits-templates.png"} <= figures
    gif = (demo_report / "figures" / "demo-evolution-anim.gif").read_bytes()
    assert gif[:6] in (b"GIF87a", b"GIF89a") and gif.count(b"\x21\xf9\x04") > 3  # frames
    numbers = json.loads((demo_report / "numbers.json").read_text())
    toy = numbers["toy"]
    assert toy["architecture"] == [2, 45, 3, 4]
    assert toy["regions_final"] >= toy["regions_layer1"] > 45
    rows = list((demo_report / "toy_epochs.csv").read_text().splitlines())
    assert len(rows) == 1 + 20 + 1  # header + epochs 0..20 of the quick setting


def test_zero_bias_initialization_is_a_fan_of_cones(demo_report):
    """Oracle: with zero biases the net is positively homogeneous, so every region is a cone
    at the origin and meets a circle around it in one arc; count code changes on the circle."""
    toy = json.loads((demo_report / "numbers.json").read_text())["toy"]
    net = demo.toy_network(0 + 1000 * toy["restarts"]).double()
    m = toy["window"][1]
    theta = np.linspace(0, 2 * np.pi, 400_000, endpoint=False)
    pts = torch.as_tensor(0.9 * m * np.stack([np.cos(theta), np.sin(theta)], 1))
    with torch.no_grad():
        code = torch.cat([net[0](pts) > 0, net[:3](pts) > 0], 1)
    changes = int((code != torch.roll(code, 1, 0)).any(1).sum())
    assert changes == toy["regions_init"]


def test_report_renders_in_headless_chromium(demo_report, tmp_path):
    result, stderr = _probe_page(demo_report / "index.html", tmp_path)
    n_figures = len(list((demo_report / "figures").iterdir()))
    assert result["images"] == n_figures
    assert result["broken"] == []
    assert result["errors"] == []
    assert "CONSOLE" not in stderr, [l for l in stderr.splitlines() if "CONSOLE" in l]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-screenshot.png"
    shot.unlink(missing_ok=True)
    proc = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile-shot'}",
         "--window-size=1280,2000", f"--screenshot={shot}",
         (demo_report / "index.html").as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_detects_broken_images_and_console_errors(tmp_path):
    """The browser check can fail: a page with a broken image and a script error."""
    page = tmp_path / "bad.html"
    page.write_text('<html><head></head><body><img alt="broken" '
                    'src="data:image/png;base64,AAAA"><script>console.error("boom");'
                    "</script></body></html>")
    result, stderr = _probe_page(page, tmp_path)
    assert result["broken"] == ["broken"]
    assert any("boom" in e for e in result["errors"])
    assert "CONSOLE" in stderr
