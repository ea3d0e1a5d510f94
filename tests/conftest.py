"""Shared test settings: deterministic, single-threaded BLAS, Agg plots, bounded hypothesis."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

torch.set_num_threads(1)
settings.register_profile(
    "maxaffine",
    deadline=None,
    max_examples=int(os.environ.get("MAXAFFINE_HYPOTHESIS_EXAMPLES", "25")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.load_profile("maxaffine")


#: the devices of the device-parametrized tests: CPU always, CUDA when present
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each available torch device in turn (the same tests prove CPU and GPU)."""
    return torch.device(request.param)
