"""Ray engine: dataset analyses over a Ray Data actor pool, checkpoint sweeps as Ray tasks.

Two shapes of work:

- :func:`map_batches` — one model over a large dataset. The dataset becomes a Ray Dataset
  with one row per batch; ``Dataset.map_batches`` runs an actor pool whose actors each
  hold (and trace) the model once, and the per-batch accumulators are merged on the driver.
- :func:`sweep_checkpoints` — many checkpoints of one architecture over one dataset: one
  Ray task per checkpoint (weights loaded with ``torch.load(weights_only=True)``), the
  dataset shipped to the object store once.

Both compute exactly what :func:`maxaffine.distributed.analyze_dataset` computes in one
process (batch ``j`` is seeded by ``batch_seed(seed, j)`` wherever it runs, and the
accumulators merge exactly), and both survive worker deaths through Ray's retries: a
killed actor is restarted and its batch re-run, a failed task is re-submitted.

Requires the ``ray`` extra (``pip install 'maxaffine[ray]'``); the rest of maxaffine never
imports Ray.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .accumulators import merge_all
from .dataset import DatasetJob, DatasetStats, indexed_batches


def _ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - the test extra installs ray
        raise InputError("maxaffine.distributed.ray_engine needs Ray; install it with "
                         "pip install 'maxaffine[ray]'") from exc
    return ray


def _pack(x: Any, y: Any) -> bytes:
    """One batch as bytes (numpy arrays), so rows of any shape travel as a binary column."""
    x = torch.as_tensor(x).detach().cpu().numpy()
    y = None if y is None else torch.as_tensor(y).detach().cpu().numpy()
    return pickle.dumps((x, y), protocol=pickle.HIGHEST_PROTOCOL)


def _as_module(model: nn.Module | Callable[[], nn.Module]) -> nn.Module:
    net = model if isinstance(model, nn.Module) else model()
    if not isinstance(net, nn.Module):
        raise InputError(f"the model factory returned a {type(net).__name__}, not an nn.Module")
    return net.eval()


class BatchWorker:
    """The callable class of the actor pool: holds one traced model, runs a job per batch.

    Parameters
    ----------
    model : nn.Module or callable returning one
        Shipped once per actor (through the object store).
    job : DatasetJob
    device : str
        Torch device of the actor (``"cuda"`` for a GPU actor).
    """

    def __init__(self, model: nn.Module | Callable[[], nn.Module], job: DatasetJob,
                 device: str = "cpu"):
        self.model = _as_module(model).to(device)
        self.job = job
        self.trace = None

    def run(self, index: int, blob: bytes) -> DatasetStats:
        from .dataset import _traced

        x, y = pickle.loads(blob)
        if self.trace is None:
            self.trace = _traced(self.model, torch.from_numpy(x))
        return self.job.run(self.trace, int(index), torch.from_numpy(x),
                            None if y is None else torch.from_numpy(y))

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stats = [pickle.dumps(self.run(j, blob)) for j, blob in zip(rows["index"], rows["batch"])]
        return {"index": np.asarray(rows["index"], dtype=np.int64),
                "stats": np.array(stats, dtype=object)}


def _batch_rows(data: Any, y: Any, batch_size: int | None) -> list[dict[str, Any]]:
    return [{"index": j, "batch": _pack(xb, yb)} for j, xb, yb in indexed_batches(data,
                                                                                 batch_size, y)]


def map_batches(model: nn.Module | Callable[[], nn.Module], data: Any, job: DatasetJob, *,
                y: Any = None, batch_size: int | None = None, num_workers: int = 2,
                device: str = "cpu", worker_class: type = BatchWorker) -> DatasetStats:
    """Run ``job`` over ``data`` on a Ray Data actor pool of ``num_workers`` actors.

    Parameters
    ----------
    model : nn.Module or callable returning one
        Sent once to each actor, which traces it once and reuses the trace for every batch.
    data : Tensor (N, *in_shape) or iterable of batches
        As in :func:`maxaffine.distributed.analyze_dataset` (a tensor is cut into
        ``batch_size`` rows, default 256). Each batch becomes one row of a Ray Dataset.
    job : DatasetJob
    y : Tensor (N,), optional
        Labels of a tensor ``data``.
    num_workers : int
        Actors in the pool (each takes one CPU, or one GPU with ``device="cuda"``).
    device : str
        Torch device of the actors.
    worker_class : type
        The actor's callable class (a subclass of :class:`BatchWorker`).

    Returns
    -------
    DatasetStats
        Identical to ``analyze_dataset(model, data, job, ...)`` with the same batches.

    Raises
    ------
    InputError
        If Ray is not installed or the dataset has no batches.

    Notes
    -----
    Ray Data restarts an actor whose process died and re-runs its batch on the new one
    (``max_restarts=-1``, ``max_task_retries=-1`` for actor pools), so a lost worker
    costs time, not results. Call ``ray.init(...)`` first to choose the cluster (``ray.init(address="auto")`` on a
    cluster); otherwise Ray starts a local one.
    """
    ray = _ray()
    rows = _batch_rows(data, y, batch_size)
    if not rows:
        raise InputError("the dataset has no batches")
    gpu = torch.device(device).type == "cuda"
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    out = ds.map_batches(worker_class, batch_size=1, concurrency=int(num_workers),
                         fn_constructor_args=(model, job, device),
                         num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0)
    parts = sorted(((int(r["index"]), pickle.loads(r["stats"])) for r in out.take_all()),
                   key=lambda t: t[0])
    if [j for j, _ in parts] != [r["index"] for r in rows]:
        raise InputError("the Ray pipeline lost or duplicated batches; rerun the job")
    return merge_all(s for _, s in parts)


def _run_checkpoint(factory: Callable[[], nn.Module], path: str, blobs: list[bytes],
                    job: DatasetJob, device: str) -> DatasetStats:
    from ..report.user import load_weights
    from .dataset import _traced

    net = load_weights(_as_module(factory), path).eval().to(device)
    tr = None
    parts = []
    for j, blob in enumerate(blobs):
        x, y = pickle.loads(blob)
        x = torch.from_numpy(x)
        if tr is None:
            tr = _traced(net, x)
        parts.append(job.run(tr, j, x, None if y is None else torch.from_numpy(y)))
    return merge_all(parts)


def sweep_checkpoints(model_factory: Callable[[], nn.Module], checkpoints: Sequence[str | Path],
                      data: Any, job: DatasetJob, *, y: Any = None,
                      batch_size: int | None = None, device: str = "cpu",
                      max_retries: int = 3, task: Callable | None = None) -> list[DatasetStats]:
    """Run ``job`` over ``data`` for every checkpoint, one Ray task per checkpoint.

    Parameters
    ----------
    model_factory : callable returning an nn.Module
        Builds the architecture (importable by the workers, or defined in ``__main__``).
    checkpoints : sequence of paths
        ``state_dict`` files, loaded with ``torch.load(weights_only=True)``.
    data, y, batch_size
        As in :func:`map_batches`; the batches are put in the object store once.
    device : str
        Torch device of the tasks (one GPU per task with ``"cuda"``).
    max_retries : int
        Re-submissions of a task whose worker died.
    task : callable, optional
        The function run per checkpoint (default: load, trace, run the job on every batch).

    Returns
    -------
    list of DatasetStats
        In the order of ``checkpoints``; each equals ``analyze_dataset`` of that checkpoint.
    """
    ray = _ray()
    paths = [str(Path(p)) for p in checkpoints]
    for p in paths:
        if not Path(p).is_file():
            raise InputError(f"checkpoint {p} does not exist")
    blobs = [_pack(xb, yb) for _, xb, yb in indexed_batches(data, batch_size, y)]
    if not blobs:
        raise InputError("the dataset has no batches")
    gpu = torch.device(device).type == "cuda"
    remote = ray.remote(task or _run_checkpoint).options(
        num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0, max_retries=int(max_retries),
        retry_exceptions=False)
    data_ref = ray.put(blobs)
    refs = [remote.remote(model_factory, p, data_ref, job, device) for p in paths]
    return list(ray.get(refs))


__all__ = ["BatchWorker", "map_batches", "sweep_checkpoints"]
