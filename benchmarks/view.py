"""Responsiveness of the interactive partition view in headless Chromium.

Builds the view of a 2 → w → w → w → 4 ReLU MLP (seed 0) on [−4, 4]² for a few widths (the
largest has about 71,500 regions; ``--widths`` for others), opens it in headless Chromium
driven over the DevTools protocol (``--remote-debugging-pipe``, no network), and reports:
the HTML size, the seconds Python needs to build it, the time from navigation to the first
drawn frame, a full (exact) redraw at the fitted view, a frame while panning or zooming
(the last full picture, transformed), a full redraw zoomed ×8 (medians of 15, each ending in
a pixel read so the drawing has really happened), one hover (a real mouse move dispatched
through the browser's input pipeline, until the panel shows the region) and one region
look-up (mean of 10,000). Headless Chromium draws with the CPU here (``--disable-gpu``).

Run: python benchmarks/view.py [--widths 32,64,144]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import maxaffine
from maxaffine import view


class Browser:
    """Minimal DevTools client over ``--remote-debugging-pipe`` (NUL-separated JSON)."""

    def __init__(self, profile: Path):
        exe = shutil.which("chromium") or shutil.which("chromium-browser") or "google-chrome"
        self.r_in, self.w_in = os.pipe()  # we write commands, the browser reads fd 3
        self.r_out, self.w_out = os.pipe()  # the browser writes fd 4, we read
        cmd = (f"exec {exe} --headless --no-sandbox --disable-gpu --no-first-run "
               f"--disable-background-networking --proxy-server=http://127.0.0.1:9 "
               f"--user-data-dir={profile} --window-size=1200,900 --remote-debugging-pipe "
               f"3<&{self.r_in} 4>&{self.w_out}")
        self.proc = subprocess.Popen(["bash", "-c", cmd], pass_fds=(self.r_in, self.w_out),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(self.r_in)
        os.close(self.w_out)
        self.buf, self.next_id, self.session = b"", 0, None

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.w_in, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self.buf:
                chunk = os.read(self.r_out, 1 << 20)
                if not chunk:
                    raise RuntimeError("the browser closed the pipe")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply.get("result", {})

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        self.session = self.send("Target.attachToTarget",
                                 {"targetId": target["targetId"], "flatten": True},
                                 session=False)["sessionId"]
        self.send("Page.enable")
        self.send("Page.navigate", {"url": url})

    def eval(self, expr: str):
        res = self.send("Runtime.evaluate", {"expression": expr, "awaitPromise": True,
                                             "returnByValue": True})
        if "exceptionDetails" in res:
            raise RuntimeError(res["exceptionDetails"])
        return res["result"].get("value")

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except RuntimeError:
            pass
        self.proc.wait(timeout=30)


READY = """new Promise(function (ok) { (function wait() {
  var r = document.querySelector('.maxaffine-view');
  if (r && r.getAttribute('data-ready') === '1')
    requestAnimationFrame(function () { ok(performance.now()); });
  else setTimeout(wait, 10); })(); })"""

FRAMES = """(function () { var api = document.querySelector('.maxaffine-view').maxaffine, t = [];
  var c = document.querySelector('.mv-canvas').getContext('2d');
  for (var i = 0; i < 15; i++) { var a = performance.now(); api.redrawNow(); c.getImageData(0, 0, 1, 1); t.push(performance.now() - a); }
  t.sort(function (a, b) { return a - b; }); return t[7]; })()"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", default="32,64,144")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="maxaffine-view-"))
    rows = []
    for w in (int(v) for v in args.widths.split(",")):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(2, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(),
                            nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 4)).double()
        part = maxaffine.partition_slice(net, maxaffine.Slice.box((-4, 4, -4, 4)), progress=False)
        page = tmp / f"view-{w}.html"
        t = time.perf_counter()
        view.save_html(part, page)
        t_build = time.perf_counter() - t
        r = int(part.areas.argmax())
        s, tt = part.interior[r]
        b = Browser(tmp / f"profile-{w}")
        try:
            b.open(page.as_uri())
            t_ready = b.eval(READY)
            t_fit = b.eval(FRAMES)
            t_fast = b.eval(FRAMES.replace("redrawNow", "fastFrame"))
            x, y = b.eval(f"document.querySelector('.maxaffine-view').maxaffine.toClient({s}, {tt})")
            t0 = time.perf_counter()
            b.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
            got = b.eval("document.querySelector('.mv-tip').getAttribute('data-region')")
            t_hover = time.perf_counter() - t0
            assert got == str(r), (got, r)
            b.send("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": x, "y": y,
                                                "deltaX": 0, "deltaY": -1400})
            zoom = b.eval("document.querySelector('.maxaffine-view').maxaffine.view().zoom")
            t_zoom = b.eval(FRAMES)
            t_pick = b.eval("""(function () { var api = document.querySelector('.maxaffine-view').maxaffine;
              var a = performance.now();
              for (var i = 0; i < 10000; i++) api.pick(-4 + 8 * ((i * 0.618) % 1), -4 + 8 * ((i * 0.382) % 1));
              return (performance.now() - a) / 10000; })()""")
        finally:
            b.close()
        rows.append((part.n_regions, page.stat().st_size / 1e6, t_build, t_ready / 1e3, t_fit,
                     t_fast, zoom, t_zoom, t_hover * 1e3, t_pick * 1e3))
        page.unlink()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'regions':>8} {'MB':>6} {'build s':>8} {'first frame s':>14} {'redraw ms':>10} "
          f"{'pan/zoom frame ms':>18} {'zoom':>5} {'redraw zoomed ms':>17} {'hover ms':>9} "
          f"{'pick us':>8}")
    for n, mb, tb, tr, tf, tq, z, tz, th, tp in rows:
        print(f"{n:>8,} {mb:>6.2f} {tb:>8.2f} {tr:>14.2f} {tf:>10.1f} {tq:>18.1f} {z:>5.1f} "
              f"{tz:>17.1f} {th:>9.1f} {tp:>8.2f}")


if __name__ == "__main__":
    main()
