"""Every zoo model traces and is exact, or is refused naming each non-affine module type.

The default run covers a fast subset; ``MAXAFFINE_ZOO=full`` runs every torchvision
classification model and the curated timm list (and the partition checks).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from .models import FULL, build, check_model, names

pytest.importorskip("torchvision")
pytest.importorskip("timm")

import maxaffine


@pytest.mark.parametrize("name", names())
def test_zoo_model(name):
    row = check_model(name)
    if row["status"] == "skipped":
        pytest.skip(row["detail"])


PARTITION = ("tv:resnet18", "tv:vgg11_bn", "local:cifar_net", "tv:mobilenet_v2", "local:unet")


@pytest.mark.skipif(not FULL, reason="partition checks run with MAXAFFINE_ZOO=full")
@pytest.mark.parametrize("name", PARTITION)
def test_zoo_partition_through_three_inputs(name):
    model, size = build(name)
    torch.manual_seed(2)
    x = torch.randn(3, 3, size, size, dtype=torch.float64)
    slc = maxaffine.Slice.through(x[0], x[1], x[2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", maxaffine.BudgetWarning)
        part = maxaffine.partition_slice(model, slc, max_regions=500, progress=False)
    assert part.n_regions >= 1
    try:
        part.verify(200)
    except maxaffine.InputError:
        # a partial partition stopped inside a layer is not yet that layer's cells
        assert not part.complete
