"""The zoo: model builders, the fast subset, and the oracle for which models must trace.

A model must trace iff every op in it is piecewise-affine; the oracle reads that from its
module types (independently of maxaffine's registry) and from the few functional ops known
per architecture family (``FUNCTIONAL_NON_AFFINE``).
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

FULL = os.environ.get("MAXAFFINE_ZOO", "") == "full"

#: module types that are affine or continuous piecewise-affine (in eval mode)
PIECEWISE_AFFINE = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm1d,
    nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Identity, nn.Flatten,
    nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.Hardsigmoid,
)
#: library modules that are affine or the identity in eval mode, known by class name
AFFINE_BY_NAME = ("StochasticDepth", "DropPath", "Permute", "Flatten", "Identity")

#: models too large for a CI machine in float64 (parameters > 100M), never traced here
MAX_PARAMS = 100_000_000

#: (source, name) -> input size; default 32
SIZES = {("tv", "inception_v3"): 75, ("tv", "alexnet"): 64}

FAST = ("tv:resnet18", "tv:squeezenet1_1", "tv:shufflenet_v2_x0_5", "tv:mobilenet_v3_small",
        "tv:vit_b_16", "timm:resnet10t", "local:cifar_net", "local:quickstart")

TIMM = ("resnet10t", "resnet18", "resnet18d", "resnet26", "resnet34", "resnet50", "resnet50d",
        "seresnet18", "resnext26ts", "dla34", "dla46_c", "vgg11", "vgg11_bn", "vgg13",
        "mobilenetv2_050", "mobilenetv2_100", "efficientnet_lite0", "cspresnet50",
        "regnetx_002", "regnetx_004", "densenet121", "dpn68", "hrnet_w18_small", "repvgg_a0",
        "selecsls42b", "tinynet_e", "mnasnet_050", "spnasnet_100", "res2net50_14w_8s",
        "ghostnet_050", "darknet17", "cspdarknet53", "rexnet_100", "lcnet_050")


class CifarNet(nn.Module):
    """The network of the PyTorch CIFAR-10 tutorial, as written there."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class Quickstart(nn.Module):
    """The network of the PyTorch Quickstart, as written there (an attribute named flatten)."""

    def __init__(self, d=3 * 32 * 32):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, 64),
                                               nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))


class UNet(nn.Module):
    """A two-level U-Net with a ConvTranspose2d decoder and a skip concatenation."""

    def __init__(self, c=4):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, 2, 1))

    def forward(self, x):
        a = self.enc1(x)
        b = self.enc2(a)
        return self.dec(torch.cat([a, self.up(b)], 1)).flatten(1)


LOCAL = {"cifar_net": CifarNet, "quickstart": Quickstart, "unet": UNet}


def names() -> list[str]:
    """Every zoo model (``source:name``) in the full run, else the fast subset."""
    if not FULL:
        return list(FAST)
    import torchvision

    tv = [f"tv:{n}" for n in torchvision.models.list_models(module=torchvision.models)]
    return tv + [f"timm:{n}" for n in TIMM] + [f"local:{n}" for n in LOCAL]


def build(name: str) -> tuple[nn.Module, int]:
    """The model in eval mode (random init, seed 0, 10 classes) and its input size."""
    src, _, arch = name.partition(":")
    torch.manual_seed(0)
    size = SIZES.get((src, arch), 32)
    if src == "local":
        return LOCAL[arch]().eval(), size
    if src == "tv":
        import torchvision

        kwargs = {"weights": None, "num_classes": 10}
        if arch.startswith("vit_"):
            kwargs["image_size"] = 32
        if arch in ("googlenet", "inception_v3"):
            kwargs["aux_logits"] = False
            kwargs["init_weights"] = False
        return torchvision.models.get_model(arch, **kwargs).eval(), size
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=10).eval(), size


def offending_modules(model: nn.Module) -> dict[str, str]:
    """Leaf modules that are not piecewise-affine (by this file's own list): path -> type."""
    bad = {}
    for path, m in model.named_modules():
        if isinstance(m, PIECEWISE_AFFINE) or any(m.children()):
            continue
        if type(m).__name__ in AFFINE_BY_NAME:
            continue
        bad[path] = type(m).__name__
    return bad


def check_model(name: str) -> dict:
    """Run the zoo checks on one model; returns a table row (raises on a failed check).

    ``status`` is ``exact`` (traced; A[x] equals autograd to 1e-10, codes and local
    complexity run), ``refused`` (the error names every non-affine module type), or
    ``skipped`` (too large)."""
    import time

    from torch.func import jacrev, vmap

    import maxaffine

    model, size = build(name)
    n_params = sum(p.numel() for p in model.parameters())
    row = {"model": name, "input": f"3x{size}x{size}", "params": n_params, "status": "",
           "detail": ""}
    if n_params > MAX_PARAMS:
        row.update(status="skipped", detail="over 100M parameters")
        return row
    torch.manual_seed(1)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    bad = offending_modules(model)
    t0 = time.perf_counter()
    try:
        tr = maxaffine.trace(model, x)
    except maxaffine.UnsupportedLayerError as exc:
        message = str(exc)
        # each offending module is named by its path (function calls inside it by
        # "path:node"), so every path must appear
        missing = [f"{p} ({t})" for p, t in bad.items() if f"- {p} " not in message
                   and f"- {p}:" not in message]
        if not bad:
            raise AssertionError(f"{name}: refused but every module is piecewise-affine:\n"
                                 f"{message}") from exc
        if missing:
            raise AssertionError(f"{name}: refusal does not name {missing}:\n{message}") from exc
        ops = sorted(set(re.findall(r"^\s+- \S+ \(([^)]*)\):", message, flags=re.MULTILINE)))
        row.update(status="refused", detail=", ".join(ops))
        return row
    if bad:
        raise AssertionError(f"{name}: traced although it holds {sorted(set(bad.values()))}")
    row["trace_s"] = time.perf_counter() - t0
    m = maxaffine.affine_map(tr, x)
    net = model.double()
    J = vmap(jacrev(lambda v: net(v.unsqueeze(0))[0]))(x)
    err = float((m.A - J.reshape(m.A.shape)).abs().max())
    # A[x] and autograd multiply the same float64 factors in other orders
    assert err <= 1e-10, f"{name}: max |A - J| = {err}"
    with torch.no_grad():
        y = net(x)
    f = torch.einsum("ncd,nd->nc", m.A, x.flatten(1)) + m.b
    assert float((f - y.reshape(f.shape)).abs().max()) <= 1e-10 * max(1.0, float(y.abs().max()))
    q = maxaffine.codes(tr, x)
    assert torch.equal(q.region_ids(), m.codes.region_ids())
    lc = maxaffine.local_complexity(tr, x, radius=1e-3, n_vertices=4, seed=0)
    assert lc.total.shape == (len(x),)
    row.update(status="exact", detail=f"{len(tr.piecewise)} piecewise layers, "
               f"max abs(A - J) = {err:.1e}", route=tr.route)
    return row
