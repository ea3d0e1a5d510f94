"""``maxaffine run-distributed``: checkpoints × dataset, in this process (Ray: test_ray.py)."""

from __future__ import annotations

import json

import torch
from torch import nn

from maxaffine.cli import main
from maxaffine.distributed import DatasetJob, analyze_dataset

FACTORY = '''
from torch import nn

def make_model():
    return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(),
                         nn.Linear(12, 3))
'''


def make_files(tmp_path, n_ckpt=2):
    (tmp_path / "net.py").write_text(FACTORY)
    X = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    torch.save({"X": X}, tmp_path / "data.pt")
    paths, nets = [], []
    for k in range(n_ckpt):
        torch.manual_seed(k)
        net = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(),
                            nn.Linear(12, 3))
        torch.save(net.state_dict(), tmp_path / f"ep{k}.pt")
        paths.append(str(tmp_path / f"ep{k}.pt"))
        nets.append(net.eval())
    return X, paths, nets


def expected(nets, X):
    job = DatasetJob(local_complexity={"radius": 0.5, "n_vertices": 6}, codes=True, seed=3)
    return [analyze_dataset(n, X.double(), job, batch_size=16).summary() for n in nets]


def test_run_distributed_in_process(tmp_path, capsys):
    X, paths, nets = make_files(tmp_path)
    out = tmp_path / "out"
    rc = main(["run-distributed", "--model", str(tmp_path / "net.py") + ":make_model",
               "--checkpoints", *paths, "--data", str(tmp_path / "data.pt"), "--radius", "0.5",
               "--n-vertices", "6", "--batch-size", "16", "--seed", "3", "--out", str(out), "-q"])
    assert rc == 0
    meta = json.loads((out / "distributed.json").read_text())
    assert meta["engine"] == "in-process" and meta["n_inputs"] == 40
    got = [{k: v for k, v in r.items() if k != "checkpoint"} for r in meta["rows"]]
    assert got == expected(nets, X)  # JSON keeps floats exactly
    assert (out / "distributed.csv").read_text().splitlines()[0].startswith("checkpoint,n,")
    # a rerun replaces its own files; a foreign file is never overwritten
    assert main(["run-distributed", "--model", str(tmp_path / "net.py") + ":make_model",
                 "--checkpoints", paths[0], "--data", str(tmp_path / "data.pt"),
                 "--n-vertices", "4", "--out", str(out), "-q"]) == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "distributed.json").write_text("{}")
    assert main(["run-distributed", "--model", str(tmp_path / "net.py") + ":make_model",
                 "--checkpoints", paths[0], "--data", str(tmp_path / "data.pt"),
                 "--n-vertices", "4", "--out", str(foreign), "-q"]) == 2
    assert (foreign / "distributed.json").read_text() == "{}"
    assert "not written by" in capsys.readouterr().err


def test_run_distributed_bad_input(tmp_path, capsys):
    make_files(tmp_path, 1)
    rc = main(["run-distributed", "--model", str(tmp_path / "net.py") + ":make_model",
               "--checkpoints", str(tmp_path / "missing.pt"), "--data", str(tmp_path / "data.pt"),
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "missing.pt" in capsys.readouterr().err
