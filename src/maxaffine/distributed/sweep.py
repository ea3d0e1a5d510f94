"""Local complexity and code statistics of many checkpoints over one dataset (the CLI's job).

``maxaffine run-distributed`` calls :func:`run_checkpoints`: without ``ray_address`` the
checkpoints run one after the other in this process; with it, one Ray task per checkpoint
(:func:`maxaffine.distributed.sweep_checkpoints`). Both give identical numbers.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from .dataset import DatasetJob, DatasetStats, analyze_dataset

#: marks the files this command writes, so a rerun may replace them and nothing else
MARK = "maxaffine run-distributed"
FILES = ("distributed.json", "distributed.csv")


class SpecFactory:
    """A picklable model factory named by ``"file.py:name"`` or ``"module:name"``.

    Ray workers rebuild the model from the spec (the file must be readable where they run).
    """

    def __init__(self, spec: str):
        self.spec = spec

    def __call__(self):
        from ..report.user import build_model

        return build_model(self.spec)


def _check_out(out: Path) -> None:
    for name in FILES:
        path = out / name
        if path.exists():
            try:
                ours = path.suffix == ".json" and json.loads(path.read_text()).get("written_by") == MARK
                ours = ours or (path.suffix == ".csv" and (out / "distributed.json").exists()
                                and json.loads((out / "distributed.json").read_text())
                                .get("written_by") == MARK)
            except (OSError, ValueError, AttributeError):
                ours = False
            if not ours:
                raise InputError(f"{path} exists and was not written by {MARK}; choose another "
                                 f"--out folder (nothing is overwritten)")


def run_checkpoints(model_spec: str, checkpoints: Sequence[str | Path], data_spec: str | None, *,
                    out: str | Path, radius: float, n_vertices: int, batch_size: int = 256,
                    limit: int | None = None, seed: int = 0, ray_address: str | None = None,
                    workers: int | None = None, device: str = "cpu",
                    progress: bool = True) -> list[dict[str, Any]]:
    """Local complexity + code statistics of every checkpoint over the data; writes a table.

    Parameters
    ----------
    model_spec : str
        ``"file.py:factory"`` or ``"module:factory"`` building the architecture.
    checkpoints : sequence of paths
        ``state_dict`` files (``torch.load(weights_only=True)``).
    data_spec : str or None
        A ``.npz``/``.pt`` file with ``X`` (and ``y``) or a bundled dataset name, as for
        ``maxaffine report``.
    out : path
        Folder for ``distributed.json`` and ``distributed.csv``.
    radius, n_vertices : float, int
        Local-complexity parameters.
    batch_size, limit, seed
        Batches of the data, at most ``limit`` inputs, the job's seed.
    ray_address : str, optional
        ``"local"`` (start Ray on this machine with ``workers`` CPUs), ``"auto"`` or an
        address of a running cluster; None runs in this process.
    device : str
        Torch device of the analysis.

    Returns
    -------
    list of dict
        One row per checkpoint (``DatasetStats.summary()`` plus the checkpoint's path).
    """
    from ..report.user import build_model, load_data, load_weights

    out = Path(out)
    _check_out(out)
    paths = [Path(p) for p in checkpoints]
    if not paths:
        raise InputError("give at least one checkpoint (--checkpoints FILE ...)")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(2, "checkpoint not found", str(p))
    model = build_model(model_spec)
    data = load_data(data_spec, model, seed=seed)
    X = data.X if limit is None else data.X[: int(limit)]
    job = DatasetJob(local_complexity={"radius": float(radius), "n_vertices": int(n_vertices)},
                     codes=True, seed=int(seed))
    results: list[DatasetStats]
    if ray_address is None:
        results = []
        for i, p in enumerate(paths):
            if progress:
                print(f"checkpoint {i + 1}/{len(paths)}: {p}", file=sys.stderr, flush=True)
            net = load_weights(build_model(model_spec), p).eval().to(device)
            results.append(analyze_dataset(net, X, job, batch_size=batch_size, progress=progress))
    else:
        from .ray_engine import _ray, sweep_checkpoints

        ray = _ray()
        if not ray.is_initialized():
            if ray_address == "local":
                ray.init(num_cpus=workers, include_dashboard=False)
            else:
                ray.init(address=ray_address)
        results = sweep_checkpoints(SpecFactory(model_spec), paths, X, job,
                                    batch_size=batch_size, device=device)
    rows = [{"checkpoint": str(p), **r.summary()} for p, r in zip(paths, results)]
    out.mkdir(parents=True, exist_ok=True)
    meta = {"written_by": MARK, "model": model_spec, "data": data.name, "n_inputs": len(X),
            "radius": radius, "n_vertices": n_vertices, "seed": seed, "batch_size": batch_size,
            "engine": "ray" if ray_address is not None else "in-process", "rows": rows}
    (out / "distributed.json").write_text(json.dumps(meta, indent=1) + "\n")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "distributed.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return rows


__all__ = ["SpecFactory", "run_checkpoints"]
