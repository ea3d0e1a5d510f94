"""The Ray engine on a real single-node Ray: equal to the single-process fold, survives a
killed actor, one task per checkpoint.

One Ray session per test module (and per xdist worker), with its own temporary folder;
nothing is written outside it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest
import torch
from torch import nn

ray = pytest.importorskip("ray")

from maxaffine.distributed import DatasetJob, analyze_dataset
from maxaffine.distributed.ray_engine import BatchWorker, map_batches, sweep_checkpoints


def make_net() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(),
                         nn.Linear(24, 3))


class DiesOnce(BatchWorker):
    """An actor whose process exits on its first batch, once in the whole job."""

    marker = ""

    def __call__(self, rows):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().__call__(rows)


@pytest.fixture(scope="module")
def ray_session():
    tmp = tempfile.mkdtemp(prefix="mray")  # short: Ray's socket paths must stay < 108 chars
    env = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_DISABLE_DOCKER_CPU_WARNING": "1", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from ray import cloudpickle

    # the test module's classes travel by value (the workers cannot import tests/)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False,
             configure_logging=False, object_store_memory=200 * 2**20)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield tmp
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = make_net().eval()
    X = torch.randn(150, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (150,))
    job = DatasetJob(local_complexity={"radius": 0.4, "n_vertices": 6}, codes=True,
                     memorization=True, hessian={"sigma": 0.05}, seed=11)
    local = analyze_dataset(net, X, job, y=y, batch_size=32)
    return net, X, y, job, local


def test_map_batches_equals_single_process(ray_session, setup):
    net, X, y, job, local = setup
    got = map_batches(net, X, job, y=y, batch_size=32, num_workers=2)
    assert got == local  # bit for bit: every accumulator, every float sum
    assert got.summary() == local.summary()
    assert got.n == 150 and got.codes.n_regions > 1


def test_map_batches_survives_a_killed_actor(ray_session, setup, tmp_path):
    net, X, y, job, local = setup
    DiesOnce.marker = str(tmp_path / "died")
    got = map_batches(net, X, job, y=y, batch_size=32, num_workers=2, worker_class=DiesOnce)
    assert os.path.exists(DiesOnce.marker)  # an actor really died
    assert got == local


def test_sweep_checkpoints_one_task_per_checkpoint(ray_session, setup, tmp_path):
    _, X, y, job, _ = setup
    paths, expected = [], []
    for k in range(3):
        torch.manual_seed(100 + k)
        net = make_net().eval()
        path = tmp_path / f"epoch{k}.pt"
        torch.save(net.state_dict(), path)
        paths.append(path)
        expected.append(analyze_dataset(net, X, job, y=y, batch_size=50))
    got = sweep_checkpoints(make_net, paths, X, job, y=y, batch_size=50)
    assert got == expected
    assert len({g.summary()["lc_mean"] for g in got}) == 3  # the checkpoints really differ


def test_cli_run_distributed_on_ray(ray_session, tmp_path):
    import json

    from test_cli_run import expected, make_files

    from maxaffine.cli import main

    X, paths, nets = make_files(tmp_path)
    out = tmp_path / "out"
    rc = main(["run-distributed", "--model", str(tmp_path / "net.py") + ":make_model",
               "--checkpoints", *paths, "--data", str(tmp_path / "data.pt"), "--radius", "0.5",
               "--n-vertices", "6", "--batch-size", "16", "--seed", "3", "--out", str(out),
               "--ray", "local", "-q"])
    assert rc == 0
    meta = json.loads((out / "distributed.json").read_text())
    assert meta["engine"] == "ray"
    got = [{k: v for k, v in r.items() if k != "checkpoint"} for r in meta["rows"]]
    assert got == expected(nets, X)  # identical numbers to the in-process computation
