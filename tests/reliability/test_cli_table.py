"""Bad command lines and input files: one table, run through ``python -m maxaffine``.

Each row: the arguments, the exit code, a phrase of the one-line message, and always "no
traceback on stderr". Rows that already passed before the reliability fixes stay here so they
keep passing.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from clihelp import MLP_FILE, run, tree

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RESIDUAL = f"{EXAMPLES / 'residual_cnn.py'}:make_model"
GELU = f"{EXAMPLES / 'gelu_model.py'}:make_model"


class _Marker:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    (d / "m.py").write_text(MLP_FILE)
    (d / "exit3.py").write_text("import sys\nsys.exit(3)\n")
    (d / "exit_factory.py").write_text("import sys\ndef make_model():\n    sys.exit(4)\n")
    (d / "afile").write_text("a file, not a folder")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 2))
    np.savez(d / "strings.npz", X=X, y=np.array(["cat", "dog", "eel"] * 10))
    np.savez(d / "floats.npz", X=X, y=np.arange(30) % 4 + 0.5)
    np.savez(d / "integral.npz", X=X, y=(np.arange(30) % 4).astype(np.float64))
    np.savez(d / "range.npz", X=X, y=np.arange(30))
    np.savez(d / "negative.npz", X=X, y=-(np.arange(30) % 4))
    np.savez(d / "strx.npz", X=np.array([["a", "b"]] * 30))
    np.savez(d / "nan.npz", X=np.where(np.arange(60).reshape(30, 2) == 7, np.nan, X))
    np.savez(d / "wide.npz", X=rng.standard_normal((30, 5)))
    np.savez(d / "objects.npz", X=np.array([{"a": 1}] * 30, dtype=object))
    torch.save(torch.nn.Linear(2, 2), d / "module.pt")  # a pickled module, not a state_dict
    with open(d / "evil.pt", "wb") as fh:
        pickle.dump(_Marker(str(d / "PWNED")), fh)
    return d


# (id, argv, exit code, phrase). "{w}" is the work folder.
REPORT = ["report", "--model", "{w}/m.py:make_model"]
CASES = [
    # -- the output folder, checked before any work -----------------------------------------
    ("out-under-a-file", REPORT + ["--out", "afile/sub"], 2, "is a file, so no folder"),
    ("out-is-a-file", REPORT + ["--out", "afile"], 2, "is a file, not a folder"),
    ("out-is-a-file-checked-first", ["report", "--model", GELU, "--data", "digits", "--out",
                                     "afile"], 2, "is a file, not a folder"),
    ("out-is-a-folder-of-user-files", REPORT + ["--out", "."], 2, "holds no maxaffine report"),
    ("demo-out-is-a-file", ["demo", "--out", "afile"], 2, "is a file, not a folder"),
    # -- numbers on the command line -----------------------------------------------------------
    ("negative-seed", REPORT + ["--seed", "-1"], 2, "--seed: must be between 0"),
    ("huge-seed", REPORT + ["--seed", str(2 ** 40)], 2, "--seed: must be between 0"),
    ("zero-max-regions", REPORT + ["--max-regions", "0"], 2, "at least 1"),
    ("points-repeated", REPORT + ["--data", "toy", "--points", "1,1,2", "--out", "o1"], 2,
     "three distinct indices"),
    ("points-out-of-range", REPORT + ["--data", "toy", "--points", "0,1,99999", "--out", "o3"],
     2, "out of range"),
    ("bad-device", REPORT + ["--device", "nonsense"], 2, "unknown device 'nonsense'"),
    # -- the model file ----------------------------------------------------------------------
    ("model-exits-at-import", ["report", "--model", "{w}/exit3.py:make_model", "--out", "o4"],
     2, "called sys.exit(3)"),
    ("factory-exits", ["report", "--model", "{w}/exit_factory.py:make_model", "--out", "o5"],
     2, "called sys.exit(4)"),
    ("model-spec-without-colon", ["report", "--model", "{w}/m.py"], 2, "FILE.py:FACTORY"),
    ("model-file-missing", ["report", "--model", "{w}/none.py:make"], 2, "model file not found"),
    ("smooth-model", ["report", "--model", GELU, "--data", "digits", "--out", "o6"], 1, "GELU"),
    # -- weights and data ---------------------------------------------------------------------
    ("weights-missing", ["report", "--model", RESIDUAL, "--weights", "none.pt"], 2,
     "weights file not found"),
    ("weights-pickled-module", ["report", "--model", "{w}/m.py:make_model", "--weights",
                                "module.pt"], 2, "not a plain state_dict"),
    ("weights-pickle-payload", ["report", "--model", "{w}/m.py:make_model", "--weights",
                                "evil.pt"], 2, "not a plain state_dict"),
    ("data-missing", REPORT + ["--data", "none.npz"], 2, "data file not found"),
    ("data-unknown-name", REPORT + ["--data", "imagenet"], 2, "neither a file nor one of"),
    ("labels-strings", REPORT + ["--data", "strings.npz"], 2, "not class indices"),
    ("labels-floats", REPORT + ["--data", "floats.npz"], 2, "non-integer labels"),
    ("labels-out-of-range", REPORT + ["--data", "range.npz"], 2, "model has 4 outputs"),
    ("labels-negative", REPORT + ["--data", "negative.npz"], 2, "labels from -3"),
    ("inputs-strings", REPORT + ["--data", "strx.npz"], 2, "inputs must be real numbers"),
    ("inputs-objects-not-unpickled", REPORT + ["--data", "objects.npz"], 2, "cannot read"),
    ("inputs-nan", REPORT + ["--data", "nan.npz"], 2, "NaN or infinite"),
    ("inputs-wrong-shape", REPORT + ["--data", "wide.npz"], 2, "per-sample shape (5,)"),
    # -- other commands --------------------------------------------------------------------------
    ("experiment-without-name", ["experiment"], 2, "give an experiment NAME"),
]


@pytest.mark.parametrize("argv, code, phrase", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_message(work, argv, code, phrase):
    before = tree(work)
    proc = run([a.replace("{w}", str(work)) for a in argv], cwd=work)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert phrase in proc.stderr, proc.stderr
    assert tree(work) == before  # nothing written, nothing changed
    assert not (work / "PWNED").exists()  # no pickled code ran


def test_integral_float_labels_and_negative_points(work, tmp_path):
    # "--points -1,-2,-3" (value in its own argument) works like "--points=-1,-2,-3";
    # labels stored as floats 0.0, 1.0, ... are class indices; a budget-truncated report
    # says so on the console instead of only "Done"
    out = tmp_path / "rep"
    proc = run(["report", "--model", f"{work}/m.py:make_model", "--data", "integral.npz",
                "--points", "-1,-2,-3", "--max-regions", "5", "--out", str(out)], cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "note: the slice partition is partial (stopped at" in proc.stderr
    assert "max_regions=5" in proc.stderr and "raise --max-regions" in proc.stderr
    assert "partial" in proc.stdout and "Report:" in proc.stdout
    import json

    numbers = json.loads((out / "numbers.json").read_text())
    assert numbers["model"]["points"] == [29, 28, 27]
    assert numbers["model"]["accuracy"] is not None  # the labels were used, not dropped
    assert numbers["slice"]["complete"] is False
    html = (out / "index.html").read_text()
    assert "no decision boundary is drawn" in html
    assert "Linear regions and decision boundary" not in html  # no boundary drawn: no claim


def test_python_dash_m_maxaffine(tmp_path):
    proc = run(["--version"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("maxaffine "), proc.stderr
    proc = run(["report", "--help"], cwd=tmp_path)
    assert proc.returncode == 0 and "--overwrite" in proc.stdout
    assert "first points of three different classes" in " ".join(proc.stdout.split())


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_unwinds_and_leaves_no_staging(tmp_path):
    import signal
    import subprocess

    from clihelp import env

    out = tmp_path / "parent" / "rep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "maxaffine", "report", "--model", RESIDUAL, "--data", "digits",
         "--max-regions", "200000", "--out", str(out)],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stderr.read(1)  # the first progress output: analysis under way
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by signal" in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "parent").exists()
