"""The interactive partition view in a real headless Chromium (Debian's ``chromium``).

The page is the standalone HTML of :func:`maxaffine.view.save_html` with a probe injected:
it records console messages and errors, waits for the view to draw, moves the mouse onto a
known region (found by Python, not by the page), reads the hover panel, zooms with the
wheel and compares the canvas before and after. The browser runs with a proxy that does not
exist, and the page's resource timing list must be empty: nothing is fetched. Oracles: the
partition's own tables (region id, code key, units on per layer from the codes) and the
model's forward pass (predicted class at the hovered point).
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess

import numpy as np
import torch
from torch import nn

import maxaffine
from maxaffine import view
from maxaffine.partition.export import code_keys
from tests.test_report_browser import CHROMIUM_FLAGS, PROBE, _chromium

ACT = """<script>(function(){
function done(o){var d=document.createElement("pre");d.id="mv-probe";
d.textContent=JSON.stringify(o);document.body.appendChild(d);}
function run(){var root=document.querySelector(".maxaffine-view"),api=root.maxaffine;
if(root.getAttribute("data-ready")!=="1"){if(root.getAttribute("data-ready")==="error"){
done({error:"view failed"});return;}setTimeout(run,50);return;}
api.redrawNow();
var cv=root.querySelector(".mv-canvas"),over=root.querySelector(".mv-over");
function sum(){var u=cv.toDataURL(),s=0;
for(var i=0;i<u.length;i+=7)s=(s*31+u.charCodeAt(i))%1000000007;return s;}
var out={pick:api.pick(__S__,__T__)};
var p=api.toClient(__S__,__T__);
over.dispatchEvent(new MouseEvent("mousemove",{clientX:p[0],clientY:p[1],bubbles:true}));
var tip=root.querySelector(".mv-tip");
out.tipRegion=tip.getAttribute("data-region");out.tip=tip.textContent;
out.tipShown=tip.style.display;
var b=over.getBoundingClientRect();
out.before=api.view().zoom;out.sumBefore=sum();
over.dispatchEvent(new WheelEvent("wheel",{deltaY:-400,clientX:b.left+b.width/2,
clientY:b.top+b.height/2,bubbles:true,cancelable:true}));
api.redrawNow();
out.after=api.view().zoom;out.sumAfter=sum();
out.resources=performance.getEntriesByType("resource").map(function(e){return e.name;});
out.layers=root.querySelectorAll(".mv-layers input").length;
out.thumbs=root.querySelectorAll(".mv-thumb canvas").length;
out.status=root.querySelector(".mv-status").textContent;
done(out);}
window.addEventListener("load",function(){setTimeout(run,0);});})();</script>"""

OFFLINE = ["--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]


def _open(part, tmp_path, s, t, name="view"):
    page = tmp_path / f"{name}.html"
    view.save_html(part, page)
    html = page.read_text(encoding="utf-8")
    # self-contained: no external references at all
    assert not re.search(r"""(src|href)\s*=|https?://|@import|url\(""", html)
    probed = tmp_path / f"probe-{name}.html"
    act = ACT.replace("__S__", repr(float(s))).replace("__T__", repr(float(t)))
    probed.write_text(html.replace("<head>", "<head>" + PROBE, 1)
                      .replace("</body>", act + "</body>", 1), encoding="utf-8")
    proc = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, *OFFLINE, f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1200,900", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=20000", "--dump-dom", probed.as_uri()],
        check=False, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]

    def grab(tag):
        m = re.search(rf'<pre id="{tag}">(.*?)</pre>', proc.stdout, re.DOTALL)
        assert m, f"no {tag} output; the page did not finish ({proc.stderr[-1500:]})"
        txt = m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
        return json.loads(txt.replace("&amp;", "&"))

    return grab("mv-probe"), grab("maxaffine-probe"), proc.stderr


def _mlp(sizes, seed):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


def _check(part, net, probe, page, stderr, r, st):
    assert page["errors"] == [] and "CONSOLE" not in stderr, (page, stderr[-1500:])
    assert probe.get("error") is None, probe
    assert probe["resources"] == []
    assert probe["pick"] == r and probe["tipRegion"] == str(r) and probe["tipShown"] == "block"
    tip = probe["tip"]
    assert tip.startswith(f"region {r} ")
    assert f"code {code_keys(part)[r]}" in tip
    for k in part.layers:
        on = int(part.codes[k][r].sum())
        assert f"{on}/{part.codes[k][r].numel()} on" in tip
    with torch.no_grad():
        y = net(part.slice.points(st[None]))[0]
    if part.G is not None:
        assert f"class {int(y.argmax())} " in tip
    assert probe["after"] > 1.5 * probe["before"]
    assert probe["sumAfter"] != probe["sumBefore"]  # the canvas changed
    assert probe["layers"] == len(part.layers)


def test_view_hover_zoom_offline(tmp_path):
    net = _mlp([2, 16, 16, 3], seed=7)
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    r = int(np.argmax(part.areas))  # a big region: the hovered pixel is well inside it
    st = part.interior[r]
    probe, page, stderr = _open(part, tmp_path, *st)
    _check(part, net, probe, page, stderr, r, st)
    assert probe["thumbs"] == 0


def test_view_of_an_image_slice_shows_anchor_thumbnails(tmp_path):
    net = nn.Sequential(nn.Flatten(), *_mlp([64, 12, 10, 4], seed=3)).double().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64)
    part = maxaffine.partition_slice(net, maxaffine.Slice.through(x[0], x[1], x[2], margin=0.3),
                                     progress=False)
    r = int(np.argmax(part.areas))
    probe, page, stderr = _open(part, tmp_path, *part.interior[r], name="image")
    _check(part, net, probe, page, stderr, r, part.interior[r])
    assert probe["thumbs"] == 3


def test_view_of_a_per_layer_subdivision(tmp_path):
    net = _mlp([2, 10, 10, 2], seed=1)
    part = maxaffine.partition_slice(net, maxaffine.Slice.box((-2, 2, -2, 2)), progress=False)
    sub = part.upto(0)
    r = int(np.argmax(sub.areas))
    probe, page, stderr = _open(sub, tmp_path, *sub.interior[r], name="sub")
    _check(sub, net, probe, page, stderr, r, sub.interior[r])
    assert "class" not in probe["tip"]


def test_probe_sees_a_failing_view(tmp_path):
    """The check can fail: corrupt data makes the view report an error to the console."""
    net = _mlp([2, 6, 2], seed=0)
    part = maxaffine.partition_slice(net, maxaffine.Slice.box(), progress=False)
    page = tmp_path / "bad.html"
    view.save_html(part, page)
    html = page.read_text()
    html = re.sub(r'(class="mv-data">)([A-Za-z0-9+/=]{40})', r"\1AAAA\2", html, count=1)
    page.write_text(html)
    proc = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, *OFFLINE, f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
         page.as_uri()], check=False, capture_output=True, text=True, timeout=240)
    assert 'data-ready="error"' in proc.stdout
    assert "maxaffine view" in proc.stderr
