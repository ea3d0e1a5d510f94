"""Each claim of SECURITY.md, tested: safe loading, model files run on purpose, where reports
write, escaped and self-contained HTML, no network."""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from torch import nn

import maxaffine
from maxaffine.errors import InputError
from maxaffine.report import Report, load_data, load_weights
from maxaffine.report.output import MANIFEST
from maxaffine.report.user import build_model

PACKAGE = Path(maxaffine.__file__).resolve().parent
ROOT = Path(__file__).resolve().parents[1]

MLP_FILE = '''
import torch
from torch import nn

def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 12), nn.ReLU(), nn.Linear(12, 4))
'''


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_security_md_exists_and_names_the_loaders():
    text = (ROOT / "SECURITY.md").read_text()
    for phrase in ("weights_only=True", "allow_pickle=False", "run on purpose",
                   MANIFEST, "HTML-escaped", "--overwrite"):
        assert phrase in text, phrase


def test_every_loader_in_the_package_refuses_pickles():
    """Source check: torch.load has weights_only=True, np.load allow_pickle=False, no pickle."""
    calls = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            # the Ray engine pickles its own in-memory batches between its workers; nothing
            # else may use pickle, and nothing anywhere unpickles a file (pickle.load)
            in_ray = path.parent.name == "distributed"
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not in_ray:
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in ("pickle", "dill", "cloudpickle", "joblib")
                               for n in names), f"{path}: imports a pickle module"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    isinstance(node.func.value, ast.Name) and node.func.value.id == "pickle":
                assert node.func.attr in ("dumps", "loads") and in_ray, \
                    f"{path}:{node.lineno}: pickle.{node.func.attr}"
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.attr == "load"):
                continue
            owner = node.func.value.id
            kw = {k.arg: k.value for k in node.keywords}
            if owner == "torch":
                ok = isinstance(kw.get("weights_only"), ast.Constant) and \
                    kw["weights_only"].value is True
            elif owner in ("np", "numpy"):
                ok = "allow_pickle" not in kw or (isinstance(kw["allow_pickle"], ast.Constant)
                                                  and kw["allow_pickle"].value is False)
            else:
                continue
            calls.append(path.name)
            assert ok, f"{path}:{node.lineno}: {owner}.load without the safe flag"
    assert "user.py" in calls  # the check looked at the report loaders


def test_pickled_weights_and_data_run_no_code(tmp_path):
    marker = tmp_path / "PWNED"
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"w": _Marker(str(marker))}, fh)
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(InputError, match="not a plain state_dict"):
        load_weights(model, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="weights_only=True"):
        load_data(str(tmp_path / "evil.pt"), model)
    np.save(tmp_path / "x.npy", np.array([_Marker(str(marker))] * 3, dtype=object),
            allow_pickle=True)
    np.savez(tmp_path / "evil.npz", X=np.array([_Marker(str(marker))] * 3, dtype=object))
    with pytest.raises(InputError, match="cannot read"):
        load_data(str(tmp_path / "evil.npz"), model)
    assert not marker.exists()


def test_model_files_are_run_as_python_code(tmp_path):
    marker = tmp_path / "ran"
    f = tmp_path / "m.py"
    f.write_text(MLP_FILE + f"\nfrom pathlib import Path\nPath({str(marker)!r}).touch()\n")
    assert isinstance(build_model(f"{f}:make_model"), nn.Module)
    assert marker.exists()  # documented: the file is imported, so its code runs


def test_report_writes_only_its_files_inside_out_and_escapes_strings(tmp_path):
    d = tmp_path / "proj"
    d.mkdir()
    evil = d / "m<script>alert(1)<.py"
    evil.write_text(MLP_FILE)
    X = np.random.default_rng(0).standard_normal((40, 2))
    np.savez(d / "d<img src=x>.npz", X=X, y=np.arange(40) % 4)
    out = d / "rep"
    from maxaffine import cli

    code = cli.main(["report", "--model", f"{evil}:make_model", "--data",
                     str(d / "d<img src=x>.npz"), "--out", str(out), "-q"])
    assert code == 0
    assert sorted(p.name for p in d.iterdir()) == sorted(["rep", evil.name, "d<img src=x>.npz"])
    manifest = json.loads((out / MANIFEST).read_text())["files"]
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written - {MANIFEST} == set(manifest)
    html = (out / "index.html").read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;" in html
    assert "<img src=x>" not in html and "&lt;img src=x&gt;" in html
    assert "<script" not in html  # no scripts at all
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html  # nothing fetched when the page opens


def test_report_text_and_tables_are_escaped():
    payloads = [f"<x-evil{i} onload=alert({i})>" for i in range(9)]
    rep = Report(payloads[0], payloads[1])
    rep.section(payloads[2], payloads[3])
    rep.table("t", [payloads[4]], [(payloads[5],)], caption=payloads[6])
    rep.figure(b"png", "n", payloads[7], payloads[8])
    html = rep.render()
    for p in payloads:
        assert p not in html
        assert p.replace("<", "&lt;").replace(">", "&gt;") in html


def test_a_report_makes_no_network_request(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(MLP_FILE)
    code = f'''
import socket, sys
def refuse(*a, **k):
    raise RuntimeError("network access attempted")
socket.socket.connect = socket.socket.connect_ex = socket.socket.sendto = refuse
socket.create_connection = socket.getaddrinfo = refuse
from maxaffine import cli
sys.exit(cli.main(["report", "--model", {str(f)!r} + ":make_model", "--data", "toy",
                   "--out", {str(tmp_path / "rep")!r}, "-q"]))
'''
    import os

    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=str(PACKAGE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rep" / "index.html").exists()
