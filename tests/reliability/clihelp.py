"""Helpers for the command-line reliability tests: run ``python -m maxaffine`` and hash trees."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import maxaffine

SRC = str(Path(maxaffine.__file__).resolve().parents[1])

MLP_FILE = '''
import torch
from torch import nn

def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(),
                         nn.Linear(8, 4))
'''


def env() -> dict[str, str]:
    """The environment of a child: the maxaffine under test first on the path, Agg plots."""
    e = dict(os.environ)
    e["PYTHONPATH"] = SRC + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e["MPLBACKEND"] = "Agg"
    e.setdefault("OMP_NUM_THREADS", "1")
    return e


def run(args: list[str], cwd: Path, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """``python -m maxaffine ARGS`` in ``cwd``; text output captured."""
    return subprocess.run([sys.executable, "-m", "maxaffine", *args], cwd=cwd, env=env(), check=False,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (links not followed) → content hash, link target or 'dir'."""
    out = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
