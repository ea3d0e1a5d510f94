"""Every script in examples/ runs to completion and writes only into its working folder."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# arguments that keep a run short; every other example runs as the README shows it
QUICK_ARGS = {"partition_picture.py": ["--quick"]}


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".venv" not in p.parts
                       and "__pycache__" not in p.parts and ".git" not in p.parts):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_every_example_is_covered():
    assert {p.name for p in EXAMPLES} >= {"gelu_model.py", "partition_picture.py",
                                          "residual_cnn.py"}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_and_leaves_tracked_files_alone(script, tmp_path):
    watched = [ROOT / "docs", ROOT / "examples"]
    before = [_tree_digest(folder) for folder in watched]
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(script), *QUICK_ARGS.get(script.name, [])],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert [_tree_digest(folder) for folder in watched] == before
