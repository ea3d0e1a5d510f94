/* maxaffine partition view: a self-contained canvas viewer for exact linear-region partitions.
   No dependencies, no network. Data: one base64 blob of typed arrays (optionally deflated)
   described by a JSON index; see maxaffine/view/__init__.py. */
function maxaffineView(root) {
  "use strict";
  if (root.maxaffine) return root.maxaffine;
  var meta = JSON.parse(root.querySelector(".mv-meta").textContent);
  var text = root.querySelector(".mv-data").textContent.trim();
  var A = {};
  var R = meta.regions, L = meta.layers.length;
  var api = {ready: false, meta: meta};
  root.maxaffine = api;

  // ---- DOM -------------------------------------------------------------------------------
  function el(tag, cls, parent, txt) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (txt !== undefined) e.textContent = txt;
    if (parent) parent.appendChild(e);
    return e;
  }
  var bar = el("div", "mv-bar", root);
  var fillSel = el("select", "mv-fill", bar);
  fillSel.title = "region fill";
  var layerBox = el("span", "mv-layers", bar);
  var extraBox = el("span", "mv-extra", bar);
  var zoomIn = el("button", "mv-btn", bar, "+"), zoomOut = el("button", "mv-btn", bar, "\u2212");
  var reset = el("button", "mv-btn", bar, "reset");
  var status = el("span", "mv-status", bar, "loading\u2026");
  var main = el("div", "mv-main", root);
  var wrap = el("div", "mv-wrap", main);
  wrap.style.height = meta.height + "px";
  var canvas = el("canvas", "mv-canvas", wrap), over = el("canvas", "mv-over", wrap);
  var tip = el("div", "mv-tip", wrap);
  tip.style.display = "none";
  var side = el("div", "mv-side", main);
  var pinned = el("div", "mv-info", side, "Hover over a region; click to pin it.");
  var thumbs = el("div", "mv-thumbs", side);
  var ctx = canvas.getContext("2d"), octx = over.getContext("2d");

  // ---- data ------------------------------------------------------------------------------
  function bytesOf(b64) {
    var s = atob(b64), n = s.length, out = new Uint8Array(n);
    for (var i = 0; i < n; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function inflate(bytes) {
    if (!meta.compressed) return Promise.resolve(bytes.buffer);
    if (typeof DecompressionStream === "undefined")
      return Promise.reject(new Error("this browser cannot inflate the data (no DecompressionStream); save the view with compress=False"));
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer();
  }
  var KIND = {f4: Float32Array, i4: Int32Array, u4: Uint32Array, i2: Int16Array, u1: Uint8Array, i1: Int8Array};
  function unpack(buf) {
    Object.keys(meta.index).forEach(function (k) {
      var d = meta.index[k];
      A[k] = new KIND[d[1]](buf, d[0], d[2]);
    });
  }

  // ---- geometry helpers ------------------------------------------------------------------
  var V, OFF, PV, grid = null;
  function buildGrid() {
    var G = Math.max(1, Math.min(1024, Math.ceil(Math.sqrt(R / 2))));
    var sx = meta.span[0] / G, sy = meta.span[1] / G;
    var bb = new Int32Array(4 * R), count = new Int32Array(G * G + 1);
    for (var r = 0; r < R; r++) {
      var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
      for (var j = OFF[r]; j < OFF[r + 1]; j++) {
        var v = PV[j], x = V[2 * v], y = V[2 * v + 1];
        if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
      var c0 = Math.max(0, Math.min(G - 1, Math.floor(x0 / sx))), c1 = Math.max(0, Math.min(G - 1, Math.floor(x1 / sx)));
      var r0 = Math.max(0, Math.min(G - 1, Math.floor(y0 / sy))), r1 = Math.max(0, Math.min(G - 1, Math.floor(y1 / sy)));
      bb[4 * r] = c0; bb[4 * r + 1] = c1; bb[4 * r + 2] = r0; bb[4 * r + 3] = r1;
      for (var a = r0; a <= r1; a++) for (var b = c0; b <= c1; b++) count[a * G + b + 1]++;
    }
    for (var i = 0; i < G * G; i++) count[i + 1] += count[i];
    var fillp = count.slice(0, G * G), items = new Int32Array(count[G * G]);
    for (r = 0; r < R; r++)
      for (a = bb[4 * r + 2]; a <= bb[4 * r + 3]; a++)
        for (b = bb[4 * r]; b <= bb[4 * r + 1]; b++) items[fillp[a * G + b]++] = r;
    grid = {G: G, sx: sx, sy: sy, start: count, items: items};
  }
  function inside(r, x, y) {
    var o = OFF[r], n = OFF[r + 1] - o, tol = 1e-7 * Math.max(meta.span[0], meta.span[1]);
    for (var j = 0; j < n; j++) {
      var p = PV[o + j], q = PV[o + (j + 1) % n];
      var ex = V[2 * q] - V[2 * p], ey = V[2 * q + 1] - V[2 * p + 1];
      var cr = ex * (y - V[2 * p + 1]) - ey * (x - V[2 * p]);
      if (cr < -tol * Math.hypot(ex, ey)) return false;
    }
    return true;
  }
  function pick(x, y) {  // drawing coordinates (slice coordinates minus the domain corner)
    if (!grid || x < 0 || y < 0 || x > meta.span[0] || y > meta.span[1]) return -1;
    var b = Math.min(grid.G - 1, Math.floor(x / grid.sx)), a = Math.min(grid.G - 1, Math.floor(y / grid.sy));
    var c = a * grid.G + b;
    for (var i = grid.start[c]; i < grid.start[c + 1]; i++) if (inside(grid.items[i], x, y)) return grid.items[i];
    return -1;
  }

  // ---- paths -----------------------------------------------------------------------------
  var fillCache = {}, edgePaths = [], longPaths = [], boundaryPath = null, domainPath = null;
  function fillKey(mode) {
    if (mode === "class") return A.cls;
    if (mode === "code") return A.code_color;
    if (mode.indexOf("cell_") === 0) return A[mode];
    return null;
  }
  var CHUNK = 1500, TILES = 32, tileOrder = null;
  function regionOrder() {  // regions sorted by the tile of their first vertex (counting sort)
    if (tileOrder) return tileOrder;
    var cnt = new Int32Array(TILES * TILES + 1), tile = new Int32Array(R);
    for (var r = 0; r < R; r++) {
      var v = PV[OFF[r]];
      var tx = Math.min(TILES - 1, Math.floor(V[2 * v] / meta.span[0] * TILES));
      var ty = Math.min(TILES - 1, Math.floor(V[2 * v + 1] / meta.span[1] * TILES));
      tile[r] = (ty & 1 ? ty * TILES + TILES - 1 - tx : ty * TILES + tx);  // serpentine order
      cnt[tile[r] + 1]++;
    }
    for (var i = 0; i < TILES * TILES; i++) cnt[i + 1] += cnt[i];
    tileOrder = new Int32Array(R);
    for (r = 0; r < R; r++) tileOrder[cnt[tile[r]]++] = r;
    return tileOrder;
  }
  function fills(mode) {
    // spatially compact chunks of at most CHUNK regions per colour, each with its bounding
    // box: a few hundred fill calls at most, and those outside the view are skipped
    if (fillCache[mode]) return fillCache[mode];
    var key = fillKey(mode), open = {}, out = [], order = regionOrder();
    var pal = mode === "class" ? meta.classFills : meta.codeFills;
    for (var i = 0; i < R; i++) {
      var r = order[i], k = key ? key[r] : 0, c = open[k];
      if (!c || c.n >= CHUNK) {
        c = open[k] = {path: new Path2D(), n: 0, x0: Infinity, x1: -Infinity, y0: Infinity, y1: -Infinity,
          color: key ? pal[Number(k) % pal.length] : "#ffffff"};
        out.push(c);
      }
      c.n++;
      for (var j = OFF[r]; j < OFF[r + 1]; j++) {  // no closePath: fill() closes each subpath
        var x = V[2 * PV[j]], y = V[2 * PV[j] + 1];
        if (j === OFF[r]) c.path.moveTo(x, y); else c.path.lineTo(x, y);
        if (x < c.x0) c.x0 = x; if (x > c.x1) c.x1 = x; if (y < c.y0) c.y0 = y; if (y > c.y1) c.y1 = y;
      }
    }
    fillCache[mode] = out;
    return out;
  }
  function buildLines() {
    var E = A.edges.length / 2, minLen = Math.max(meta.span[0], meta.span[1]) / 250;
    for (var l = 0; l < L; l++) { edgePaths.push(new Path2D()); longPaths.push(new Path2D()); }
    for (var e = 0; e < E; e++) {
      var a = A.edges[2 * e], b = A.edges[2 * e + 1], l2 = A.edge_layer[e];
      var x0 = V[2 * a], y0 = V[2 * a + 1], x1 = V[2 * b], y1 = V[2 * b + 1];
      edgePaths[l2].moveTo(x0, y0); edgePaths[l2].lineTo(x1, y1);
      if (Math.hypot(x1 - x0, y1 - y0) >= minLen) { longPaths[l2].moveTo(x0, y0); longPaths[l2].lineTo(x1, y1); }
    }
    domainPath = new Path2D();
    var D = A.domain;
    domainPath.moveTo(D[0], D[1]);
    for (var i = 2; i < D.length; i += 2) domainPath.lineTo(D[i], D[i + 1]);
    domainPath.closePath();
    if (A.boundary) {
      boundaryPath = new Path2D();
      for (var s = 0; s < A.boundary.length; s += 4) {
        boundaryPath.moveTo(A.boundary[s], A.boundary[s + 1]);
        boundaryPath.lineTo(A.boundary[s + 2], A.boundary[s + 3]);
      }
    }
  }

  // ---- view state and drawing ------------------------------------------------------------
  var W = 0, H = 0, dpr = 1, k = 1, ox = 0, oy = 0, k0 = 1, hover = -1, pin = -1, moved = false;
  var show = {layers: [], boundary: true, anchors: true}, mode = "code", pending = false;
  function fit() {
    k = 0.96 * Math.min(W / meta.span[0], H / meta.span[1]);
    k0 = k;
    ox = (W - meta.span[0] * k) / 2;
    oy = H - (H - meta.span[1] * k) / 2;
  }
  function toScreen(x, y) { return [ox + x * k, oy - y * k]; }
  function toData(sx, sy) { return [(sx - ox) / k, (oy - sy) / k]; }
  function resize() {
    var w = Math.max(100, wrap.clientWidth), h = meta.height;
    dpr = window.devicePixelRatio || 1;
    var first = W === 0;
    if (!first) { var c = toData(W / 2, H / 2); }
    W = w; H = h;
    [canvas, over].forEach(function (cv) {
      cv.width = Math.round(W * dpr); cv.height = Math.round(H * dpr);
      cv.style.width = W + "px"; cv.style.height = H + "px";
    });
    // until the user zooms or pans, follow the container (a notebook may lay it out late)
    if (first || !moved) fit(); else { ox = W / 2 - c[0] * k; oy = H / 2 + c[1] * k; }
    redraw();
  }
  var snap = document.createElement("canvas"), snapView = null, settle = null;
  function redraw(fast) {
    // while zooming or panning, frames reuse the last full picture (one drawImage); the exact
    // picture is redrawn once the view has been still for a moment
    if (fast && snapView) {
      if (!pending) {
        pending = true;
        requestAnimationFrame(function () { pending = false; drawFromSnapshot(); drawOverlay(); });
      }
      clearTimeout(settle);
      settle = setTimeout(function () { draw(); drawOverlay(); }, 160);
      return;
    }
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; draw(); drawOverlay(); });
  }
  function drawFromSnapshot() {
    var f = k / snapView.k;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(f, 0, 0, f, (ox - snapView.ox * f) * dpr, (oy - snapView.oy * f) * dpr);
    ctx.drawImage(snap, 0, 0);
  }
  function draw() {
    if (!api.ready) return;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(k * dpr, 0, 0, -k * dpr, ox * dpr, oy * dpr);
    var v0 = toData(0, H), v1 = toData(W, 0);  // the visible rectangle in drawing coordinates
    fills(mode).forEach(function (f) {
      if (f.x1 < v0[0] || f.x0 > v1[0] || f.y1 < v0[1] || f.y0 > v1[1]) return;
      ctx.fillStyle = f.color; ctx.fill(f.path);
    });
    // mean region size on screen decides the level of detail
    var cellPx = Math.sqrt(meta.span[0] * meta.span[1] / Math.max(R, 1)) * k;
    var simplified = cellPx < 3;
    var lw = Math.max(0.25, Math.min(1.2, 0.25 + cellPx / 25));
    ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.globalAlpha = simplified ? 0.7 : 0.85;
    for (var l = 0; l < L; l++) {
      if (!show.layers[l]) continue;
      ctx.strokeStyle = meta.layers[l].color;
      ctx.lineWidth = lw / k;
      ctx.stroke(simplified ? longPaths[l] : edgePaths[l]);
    }
    ctx.globalAlpha = 1;
    ctx.strokeStyle = "#303030"; ctx.lineWidth = 1.2 / k; ctx.stroke(domainPath);
    if (boundaryPath && show.boundary) {
      ctx.strokeStyle = "#ffffff"; ctx.lineWidth = 3.6 / k; ctx.stroke(boundaryPath);
      ctx.strokeStyle = "#111111"; ctx.lineWidth = 2 / k; ctx.stroke(boundaryPath);
    }
    if (snap.width !== canvas.width || snap.height !== canvas.height) {
      snap.width = canvas.width; snap.height = canvas.height;
    }
    var sc = snap.getContext("2d");
    sc.clearRect(0, 0, snap.width, snap.height);
    sc.drawImage(canvas, 0, 0);
    snapView = {k: k, ox: ox, oy: oy};
        status.textContent = R.toLocaleString() + " regions \u00b7 zoom \u00d7" + (k / k0).toFixed(k / k0 < 10 ? 2 : 0) +
      (simplified ? " \u00b7 simplified (short edges hidden)" : "") + (meta.complete ? "" : " \u00b7 partial");
  }
  function outline(c, r, color, width) {
    var o = OFF[r];
    c.beginPath();
    for (var j = o; j < OFF[r + 1]; j++) {
      var p = toScreen(V[2 * PV[j]], V[2 * PV[j] + 1]);
      if (j === o) c.moveTo(p[0], p[1]); else c.lineTo(p[0], p[1]);
    }
    c.closePath();
    c.strokeStyle = color; c.lineWidth = width; c.stroke();
  }
  var anchorImgs = [];
  function drawOverlay() {
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, W, H);
    if (pin >= 0) outline(octx, pin, "#d00000", 2.5);
    if (hover >= 0 && hover !== pin) outline(octx, hover, "#000000", 2);
    if (A.anchors && show.anchors) {
      var n = A.anchors.length / 2;
      for (var i = 0; i < n; i++) {
        var p = toScreen(A.anchors[2 * i], A.anchors[2 * i + 1]);
        octx.beginPath(); octx.arc(p[0], p[1], 5, 0, 2 * Math.PI);
        octx.fillStyle = "#ffffff"; octx.fill(); octx.lineWidth = 1.5; octx.strokeStyle = "#000"; octx.stroke();
        var img = anchorImgs[i];
        if (img) {
          var s = 44, x = p[0] + 8, y = p[1] - s - 8;
          octx.imageSmoothingEnabled = false;
          octx.drawImage(img, x, y, s, s * img.height / img.width);
          octx.strokeStyle = "#000"; octx.lineWidth = 1; octx.strokeRect(x, y, s, s * img.height / img.width);
        }
        octx.font = "bold 12px sans-serif"; octx.fillStyle = "#000";
        octx.fillText("x" + (i + 1), p[0] + 7, p[1] + 14);
      }
    }
  }

  // ---- region description ----------------------------------------------------------------
  function fmt(x) {
    if (x === 0) return "0";
    var a = Math.abs(x);
    return a >= 1e4 || a < 1e-3 ? x.toExponential(2) : x.toPrecision(4);
  }
  function hex(u, n) { var s = (u >>> 0).toString(16); while (s.length < n) s = "0" + s; return s; }
  function describe(r, x, y) {
    var lines = [];
    lines.push("region " + r + " \u00b7 area " + fmt(A.area[r]) + " \u00b7 " + A.nvert[r] + " vertices");
    if (A.cls) lines.push("class " + A.cls[r] + " \u00b7 slope \u2016G\u2016 " + fmt(A.slope[r]));
    lines.push("code " + hex(A.key_hi[r], 8) + hex(A.key_lo[r], 8));
    for (var l = 0; l < L; l++) {
      var m = meta.layers[l], on = A["lon_" + l];
      lines.push("  L" + (l + 1) + " " + m.name + ": " + (on ? on[r] + "/" + m.units + " on" : m.units + " units") +
        " \u00b7 #" + hex(A["lkey_" + l][r], 8));
    }
    if (A.top) {
      var K = meta.top, s = x + meta.origin[0], t = y + meta.origin[1];
      lines.push("top classes, f = g\u00b7(s, t) + h on the slice:");
      for (var i = 0; i < K; i++) {
        var c = A.top[r * K + i], gs = A.top_g[(r * K + i) * 2], gt = A.top_g[(r * K + i) * 2 + 1];
        var h = A.top_h[r * K + i];
        lines.push("  " + (meta.outputs > 1 ? "class " + c : "output") + ": f " + fmt(gs * s + gt * t + h) +
          " \u00b7 g (" + fmt(gs) + ", " + fmt(gt) + ") \u00b7 h " + fmt(h));
      }
    }
    return lines.join("\n");
  }
  function showTip(r, sx, sy, x, y) {
    if (r < 0) { tip.style.display = "none"; tip.removeAttribute("data-region"); return; }
    tip.textContent = describe(r, x, y);
    tip.setAttribute("data-region", String(r));
    tip.style.display = "block";
    var tx = sx + 14, ty = sy + 14;
    if (tx + tip.offsetWidth > W) tx = Math.max(0, sx - tip.offsetWidth - 14);
    if (ty + tip.offsetHeight > H) ty = Math.max(0, sy - tip.offsetHeight - 14);
    tip.style.left = tx + "px"; tip.style.top = ty + "px";
  }

  // ---- interaction -----------------------------------------------------------------------
  function local(ev) { var b = over.getBoundingClientRect(); return [ev.clientX - b.left, ev.clientY - b.top]; }
  var drag = null;
  function zoomAt(f, sx, sy) {
    moved = true;
    k *= f; ox = sx - (sx - ox) * f; oy = sy - (sy - oy) * f; redraw(true);
  }
  over.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var p = local(ev);
    zoomAt(Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0015)), p[0], p[1]);
  }, {passive: false});
  over.addEventListener("pointerdown", function (ev) {
    var p = local(ev); drag = {x: p[0], y: p[1], ox: ox, oy: oy, moved: false};
    if (over.setPointerCapture && ev.pointerId !== undefined) { try { over.setPointerCapture(ev.pointerId); } catch (e) { /* synthetic events */ } }
  });
  function move(ev) {
    var p = local(ev);
    if (drag && (ev.buttons & 1)) {
      if (Math.abs(p[0] - drag.x) + Math.abs(p[1] - drag.y) > 3) drag.moved = true;
      ox = drag.ox + p[0] - drag.x; oy = drag.oy + p[1] - drag.y; moved = true;
      tip.style.display = "none"; redraw(true); return;
    }
    var d = toData(p[0], p[1]), r = pick(d[0], d[1]);
    if (r !== hover) { hover = r; drawOverlay(); }
    showTip(r, p[0], p[1], d[0], d[1]);
  }
  over.addEventListener("pointermove", move);
  over.addEventListener("mousemove", function (ev) { if (!window.PointerEvent || ev.isTrusted === false) move(ev); });
  over.addEventListener("pointerup", function (ev) {
    var wasDrag = drag && drag.moved; drag = null;
    if (!wasDrag) click(ev);
  });
  function click(ev) {
    var p = local(ev), d = toData(p[0], p[1]), r = pick(d[0], d[1]);
    pin = r;
    pinned.textContent = r >= 0 ? describe(r, d[0], d[1]) : "Hover over a region; click to pin it.";
    pinned.setAttribute("data-region", String(r));
    drawOverlay();
  }
  over.addEventListener("pointerleave", function () { hover = -1; showTip(-1); drawOverlay(); });
  over.addEventListener("dblclick", function () { moved = false; fit(); redraw(); });
  zoomIn.addEventListener("click", function () { zoomAt(1.5, W / 2, H / 2); });
  zoomOut.addEventListener("click", function () { zoomAt(1 / 1.5, W / 2, H / 2); });
  reset.addEventListener("click", function () { moved = false; fit(); redraw(); });

  function checkbox(parent, label, color, on, fn) {
    var lab = el("label", "mv-check", parent);
    var cb = el("input", null, lab);
    cb.type = "checkbox"; cb.checked = on;
    if (color) { var sw = el("span", "mv-swatch", lab); sw.style.background = color; }
    el("span", null, lab, label);
    cb.addEventListener("change", function () { fn(cb.checked); redraw(); });
    return cb;
  }
  function setupControls() {
    var opts = [];
    if (A.cls) opts.push(["class", "fill: predicted class"]);
    opts.push(["code", "fill: full code"]);
    meta.layers.forEach(function (m, l) { if (A["cell_" + l]) opts.push(["cell_" + l, "fill: cells after " + m.name]); });
    opts.push(["none", "fill: none"]);
    opts.forEach(function (o) { var op = el("option", null, fillSel, o[1]); op.value = o[0]; });
    mode = opts[0][0]; fillSel.value = mode;
    fillSel.addEventListener("change", function () { mode = fillSel.value; redraw(); });
    meta.layers.forEach(function (m, l) {
      show.layers[l] = true;
      checkbox(layerBox, "L" + (l + 1) + " " + m.name, m.color, true, function (v) { show.layers[l] = v; });
    });
    if (boundaryPath) checkbox(extraBox, "decision boundary", "#111", true, function (v) { show.boundary = v; });
    if (A.anchors) checkbox(extraBox, "anchors", null, true, function (v) { show.anchors = v; });
  }
  function setupThumbs() {
    if (!A.anchor_images) return;
    var s = meta.anchor_image_shape, h = s[0], w = s[1], c = s[2], n = A.anchors.length / 2;
    for (var i = 0; i < n; i++) {
      var cv = document.createElement("canvas");
      cv.width = w; cv.height = h;
      var g = cv.getContext("2d"), im = g.createImageData(w, h);
      for (var p = 0; p < w * h; p++) {
        var base = (i * w * h + p) * c;
        im.data[4 * p] = A.anchor_images[base];
        im.data[4 * p + 1] = A.anchor_images[base + (c === 3 ? 1 : 0)];
        im.data[4 * p + 2] = A.anchor_images[base + (c === 3 ? 2 : 0)];
        im.data[4 * p + 3] = 255;
      }
      g.putImageData(im, 0, 0);
      anchorImgs.push(cv);
      var fig = el("figure", "mv-thumb", thumbs);
      var big = el("canvas", null, fig);
      big.width = w; big.height = h;
      big.getContext("2d").putImageData(im, 0, 0);
      el("figcaption", null, fig, "x" + (i + 1));
    }
  }

  // ---- public hooks (used by tests and notebooks) -----------------------------------------
  api.pick = function (s, t) { return pick(s - meta.origin[0], t - meta.origin[1]); };
  api.toClient = function (s, t) {
    var p = toScreen(s - meta.origin[0], t - meta.origin[1]), b = over.getBoundingClientRect();
    return [b.left + p[0], b.top + p[1]];
  };
  api.view = function () { return {k: k, ox: ox, oy: oy, zoom: k / k0}; };
  api.describe = function (r) { return describe(r, 0, 0); };
  api.redrawNow = function () { draw(); drawOverlay(); };
  api.fastFrame = function () { if (snapView) drawFromSnapshot(); drawOverlay(); };

  var T = api.timings = {start: performance.now()};
  var bytes = bytesOf(text);
  T.base64 = performance.now();
  inflate(bytes).then(function (buf) {
    T.inflate = performance.now();
    unpack(buf);
    V = A.vertices; OFF = A.offsets; PV = A.polys;
    buildGrid();
    T.grid = performance.now();
    buildLines();
    T.lines = performance.now();
    setupControls();
    setupThumbs();
    api.ready = true;
    if (window.ResizeObserver) new ResizeObserver(function () { resize(); }).observe(wrap);
    resize();
    draw(); drawOverlay();
    T.drawn = performance.now();
    root.setAttribute("data-ready", "1");
    root.dispatchEvent(new CustomEvent("maxaffine-ready"));
  }).catch(function (err) {
    status.textContent = "could not load the view: " + err.message;
    root.setAttribute("data-ready", "error");
    console.error("maxaffine view: " + err.message);
  });
  return api;
}
