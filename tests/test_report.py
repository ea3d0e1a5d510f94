"""The HTML report builder and ``maxaffine report`` on user models (loading, failures, output)."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from maxaffine import cli  # noqa: E402
from maxaffine.errors import InputError  # noqa: E402
from maxaffine.report import Report, load_data, load_factory, load_weights  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

MLP_FILE = '''
import torch
from torch import nn

def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(),
                         nn.Linear(8, 4))
'''


# -- the document builder ------------------------------------------------------------------
def test_report_inlines_images_and_writes_numbers(tmp_path):
    import matplotlib.pyplot as plt

    rep = Report("t", "lead <b>escaped</b>")
    rep.section("S", "text & more")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    rep.figure(fig, "line", "A line", "caption")
    rep.table("tab", ["a", "b"], [(1, 0.5), (2, float("nan"))], caption="c")
    rep.record("x", {"v": np.arange(3), "nan": float("nan")})
    index = rep.write(tmp_path / "out")
    html = index.read_text()
    # the image is inlined and decodes to the PNG written beside it
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == 1
    png = (tmp_path / "out" / "figures" / "line.png").read_bytes()
    assert base64.b64decode(uris[0]) == png and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "&lt;b&gt;escaped&lt;/b&gt;" in html and "text &amp; more" in html
    assert json.loads((tmp_path / "out" / "numbers.json").read_text()) == {
        "x": {"v": [0, 1, 2], "nan": None}}
    rows = list(csv.reader(open(tmp_path / "out" / "tab.csv")))
    assert rows[0] == ["a", "b"] and rows[1] == ["1", "0.5"]
    assert "http" not in html.replace("http-equiv", "")  # nothing fetched from the network


def test_report_write_replaces_previous_files_and_leaves_no_staging(tmp_path):
    out = tmp_path / "r"
    for title in ("first", "second"):
        rep = Report(title)
        rep.record("title", title)
        rep.write(out, overwrite=True)  # replacing a previous report is asked for explicitly
    assert "second" in (out / "index.html").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


# -- loading --------------------------------------------------------------------------------
def test_factory_spec_errors(tmp_path):
    with pytest.raises(InputError, match="FILE.py:FACTORY"):
        load_factory("no_colon_here")
    with pytest.raises(FileNotFoundError):
        load_factory(str(tmp_path / "missing.py") + ":make")
    f = tmp_path / "m.py"
    f.write_text(MLP_FILE)
    with pytest.raises(InputError, match="no callable 'other'.*make_model"):
        load_factory(f"{f}:other")
    assert isinstance(load_factory(f"{f}:make_model")(), nn.Module)


def test_pickled_model_checkpoint_is_refused(tmp_path):
    model = load_factory(f"{EXAMPLES / 'residual_cnn.py'}:make_model")()
    torch.save(model, tmp_path / "full.pt")  # a pickled module, not a state_dict
    with pytest.raises(InputError, match=r"not a plain state_dict.*model.state_dict\(\)"):
        load_weights(model, tmp_path / "full.pt")


def test_state_dict_roundtrip_and_mismatch(tmp_path):
    src = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    load_weights(dst, tmp_path / "w.pt")
    assert torch.equal(dst[0].weight, src[0].weight)
    wrong = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(InputError, match="do not fit the model"):
        load_weights(wrong, tmp_path / "w.pt")


def test_data_files_and_shape_errors(tmp_path):
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))
    X = np.random.default_rng(0).standard_normal((20, 2))
    np.savez(tmp_path / "d.npz", X=X, y=np.arange(20) % 3)
    data = load_data(str(tmp_path / "d.npz"), model)
    assert data.X.dtype == torch.float64 and torch.equal(data.y, torch.arange(20) % 3)
    torch.save({"X": torch.as_tensor(X)}, tmp_path / "d.pt")
    assert load_data(str(tmp_path / "d.pt"), model).y is None
    np.savez(tmp_path / "bad.npz", X=np.zeros((20, 5)))
    with pytest.raises(InputError, match=r"per-sample shape \(5,\)"):
        load_data(str(tmp_path / "bad.npz"), model)
    with pytest.raises(InputError, match="neither a file nor one of"):
        load_data("imagenet", model)


# -- the command line on user models ------------------------------------------------------------
def test_report_on_small_mlp_is_complete_and_consistent(tmp_path, capsys):
    f = tmp_path / "mlp.py"
    f.write_text(MLP_FILE)
    out = tmp_path / "rep"
    code = cli.main(["report", "--model", f"{f}:make_model", "--data", "toy", "--out",
                     str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    numbers = json.loads((out / "numbers.json").read_text())
    assert numbers["slice"]["complete"] is True
    # independent check of the region count: the partition's regions hold every distinct
    # code found by dense sampling of the same box (a lower bound on the exact count)
    from maxaffine.report.user import build_model

    net = build_model(f"{f}:make_model").double()
    X = load_data("toy", net).X
    lo, hi = X.min(0).values, X.max(0).values
    pad = 0.08 * (hi - lo)
    g = [torch.linspace(float(lo[i] - pad[i]), float(hi[i] + pad[i]), 300) for i in range(2)]
    pts = torch.stack(torch.meshgrid(*g, indexing="xy"), -1).reshape(-1, 2).double()
    with torch.no_grad():
        codes = torch.cat([(net[0](pts) > 0), (net[:3](pts) > 0)], 1)
    sampled = len(torch.unique(codes, dim=0))
    assert sampled <= numbers["slice"]["regions"] <= 1 + 12 + 66 + 8 * 200
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == len(list((out / "figures").iterdir()))
    assert (out / "codes.csv").exists() and (out / "local_complexity.csv").exists()


def test_report_on_residual_cnn_with_budget(tmp_path, capsys):
    model = load_factory(f"{EXAMPLES / 'residual_cnn.py'}:make_model")()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "res"
    code = cli.main(["report", "--model", f"{EXAMPLES / 'residual_cnn.py'}:make_model",
                     "--weights", str(tmp_path / "w.pt"), "--data", "digits", "--points",
                     "5,6,7", "--max-regions", "1500", "--out", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    numbers = json.loads((out / "numbers.json").read_text())
    assert numbers["model"]["points"] == [5, 6, 7]
    assert numbers["model"]["layers"]  # relu, block relus, pool
    assert (out / "figures" / "templates-5.png").exists()


def test_gelu_model_fails_listing_offenders_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "gelu"
    code = cli.main(["report", "--model", f"{EXAMPLES / 'gelu_model.py'}:make_model",
                     "--data", "digits", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_ANALYSIS
    assert "GELU" in err and "SiLU" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 3  # headline + one line per offender
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_pickled_checkpoint_fails_cleanly_on_the_command_line(tmp_path, capsys):
    model = load_factory(f"{EXAMPLES / 'residual_cnn.py'}:make_model")()
    torch.save(model, tmp_path / "full.pt")
    code = cli.main(["report", "--model", f"{EXAMPLES / 'residual_cnn.py'}:make_model",
                     "--weights", str(tmp_path / "full.pt"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert "state_dict" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--weights", "missing.pt"], "weights file not found"),
    (["--data", "missing.npz"], "data file not found"),
    (["--points", "1,1,2"], "three distinct indices"),
    (["--points", "0,1,99999"], "out of range"),
])
def test_bad_inputs_exit_with_one_message(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    data = [] if "--data" in args else ["--data", "digits"]
    code = cli.main(["report", "--model", f"{EXAMPLES / 'residual_cnn.py'}:make_model",
                     *data, *args, "--out", "o"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_report_accuracy_is_labelled_by_split_and_default_points_span_three_classes(
        tmp_path, capsys):
    f = tmp_path / "mlp.py"
    f.write_text(MLP_FILE)
    out = tmp_path / "rep"
    assert cli.main(["report", "--model", f"{f}:make_model", "--data", "toy", "--out",
                     str(out), "-q"]) == 0, capsys.readouterr().err
    numbers = json.loads((out / "numbers.json").read_text())["model"]
    data = load_data("toy", load_factory(f"{f}:make_model")())
    n_test = numbers["n_test"]
    assert n_test == data.n_test and 0 < n_test < len(data.X)
    net = load_factory(f"{f}:make_model")().double().eval()
    with torch.no_grad():
        hit = (net(data.X).argmax(1) == data.y).double()
    assert numbers["test_accuracy"] == pytest.approx(float(hit[:n_test].mean()), abs=1e-12)
    assert numbers["accuracy"] == pytest.approx(float(hit.mean()), abs=1e-12)
    html = (out / "index.html").read_text()
    assert f"on its test split (the first {n_test} points)" in html
    # the documented default of --points: the first points of three different classes
    labels = [int(data.y[i]) for i in numbers["points"]]
    assert len(set(labels)) == 3
    assert numbers["points"] == [int((data.y == c).nonzero()[0, 0]) for c in labels]
