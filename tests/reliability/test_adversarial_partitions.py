"""Adversarial partitions checked against independent oracles.

Families built to be degenerate: zero biases, duplicated / scaled / negated units, integer
weights, lines on the box edges and diagonals, dead nets, parallel lines 1e-9 to 1e-13
apart, plus random nets. Every case checks, against the model itself:

- areas: positive, summing to the domain (relative 1e-9: float64 shoelace sums);
- codes: the stored code of every region equals ``maxaffine.codes`` at its interior point
  (except at units whose input is at a breakpoint up to rounding: see :func:`_ties`);
- the snapping tolerance: the default on most cases, both ends of the accepted range
  [1e-15, 1e-9] on the others;
- dense sampling: every sample farther than 1e-9 (relative) from its region's boundary has
  the code of the region that contains it (found by geometry), no code seen in the samples
  is missing from the regions, and the region's map gives the model's output.

The default run has a few hundred cases; ``MAXAFFINE_SLOW=1`` runs 5,000 (about 15 per
second on one core).
"""

import os

import numpy as np
import pytest
import torch
from torch import nn

import maxaffine

FAMILIES = ("zero_bias", "duplicated", "scaled", "negated", "integer", "box_edges",
            "diagonals", "dead", "close_lines", "random", "mixed_activations")
N_CASES = 5000 if os.environ.get("MAXAFFINE_SLOW") else 330


class Abs(nn.Module):
    def forward(self, x):
        return torch.abs(x)


def _act(name):
    return {"relu": nn.ReLU(), "leaky": nn.LeakyReLU(0.2), "abs": Abs(),
            "hardtanh": nn.Hardtanh(-0.5, 0.7)}[name]


def _build(case: int):
    """The case's network and box, from its index (deterministic)."""
    family = FAMILIES[case % len(FAMILIES)]
    g = torch.Generator().manual_seed(case)
    rng = np.random.default_rng(case)
    depth = int(rng.integers(1, 4))
    widths = [2] + [int(rng.integers(2, 9)) for _ in range(depth)] + [int(rng.integers(1, 4))]
    acts = ["relu"] * depth
    if family == "mixed_activations":
        acts = [str(a) for a in rng.choice(["relu", "leaky", "abs", "hardtanh"], depth)]
    layers = []
    for i in range(len(widths) - 1):
        lin = nn.Linear(widths[i], widths[i + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g))
            lin.bias.copy_(0.5 * torch.randn(lin.bias.shape, generator=g))
        layers.append(lin)
        if i < depth:
            layers.append(_act(acts[i]))
    net = nn.Sequential(*layers).double().eval()
    lins = [m for m in net if isinstance(m, nn.Linear)]
    half = float(rng.choice([1.0, 2.0, 0.5]))
    box = (-half, half, -half, half)
    with torch.no_grad():
        first = lins[0]
        n1 = first.weight.shape[0]
        if family == "zero_bias":
            for m in lins:
                m.bias.zero_()
        elif family in ("duplicated", "scaled", "negated"):
            for m in lins[:-1]:
                k = m.weight.shape[0]
                if k < 2:
                    continue
                src = torch.randint(0, k, (k // 2,), generator=g)
                dst = torch.arange(k - k // 2, k)[: len(src)]
                c = {"duplicated": torch.ones(len(src)), "negated": -torch.ones(len(src)),
                     "scaled": torch.rand(len(src), generator=g).double() * 3 + 0.1}[family]
                m.weight[dst] = c.double()[:, None] * m.weight[src]
                m.bias[dst] = c.double() * m.bias[src]
        elif family == "integer":
            for m in lins:
                m.weight.copy_(torch.round(2 * m.weight))
                m.bias.copy_(torch.round(m.bias) if case % 2 else torch.zeros_like(m.bias))
        elif family == "box_edges":
            # first-layer lines on the box's edges (and one through a corner)
            for j in range(n1):
                kind = j % 5
                w = [(1.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)][kind]
                off = [half, half, -half, -half, 2 * half][kind]
                first.weight[j] = torch.tensor(w) * (1 + j)
                first.bias[j] = off * (1 + j)
        elif family == "diagonals":
            for j in range(n1):
                s = 1.0 if j % 2 else -1.0
                first.weight[j] = torch.tensor([1.0, s]) * (0.5 + j)
                first.bias[j] = 0.0 if j < 3 else float(rng.choice([-half, half])) * (0.5 + j)
        elif family == "dead":
            # every unit of one layer (or all) off on the whole box
            which = lins[: int(rng.integers(1, len(lins)))] if len(lins) > 1 else lins
            for m in which[-1:]:
                m.bias.fill_(-100.0)
            if case % 2:
                for m in lins:
                    m.bias.zero_()
                lins[0].bias.fill_(-100.0)
        elif family == "close_lines":
            # pairs of parallel lines 1e-9 .. 1e-13 apart (in units of the box), and
            # a nearly parallel pair crossing in the box
            gap = 10.0 ** -float(rng.integers(9, 14))
            for j in range(0, n1 - 1, 2):
                first.weight[j + 1] = first.weight[j]
                first.bias[j + 1] = first.bias[j] + gap * first.weight[j].norm() * half
            if n1 >= 3:
                first.weight[-1] = first.weight[0] + gap * torch.tensor([1.0, -1.0])
                first.bias[-1] = first.bias[0]
    return family, net, maxaffine.Slice.box(box)


#: Where each activation switches (its unit input's breakpoints).
BREAKS = {nn.ReLU: (0.0,), nn.LeakyReLU: (0.0,), Abs: (0.0,), nn.Hardtanh: (-0.5, 0.7)}


def _ties(net, x, layers) -> dict:
    """{layer name: (N, units) bool} for the partition's ``layers`` (one per activation
    module, in order): units whose input is at a breakpoint up to rounding but not exactly
    (within 1e-9 of the unit's largest distance from it over the batch), found with forward
    hooks on the model itself. There the model's own code is the sign of rounding noise, which
    even depends on the batch (a unit identically zero on a region of an integer-weight
    net evaluates to +4e-16 in one batch and -2e-15 alone), so any code is right."""
    seen, hooks = {}, []
    for name, m in net.named_children():
        if type(m) in BREAKS:
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: seen.__setitem__(name, inp[0].detach())))
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    out = []
    for name, u in seen.items():
        d = torch.stack([(u - p).abs() for p in BREAKS[type(net.get_submodule(name))]]).amin(0)
        # an exact zero is no tie: its code is the convention's (off), and must match
        out.append((d > 0) & (d <= 1e-9 * d.amax(0, keepdim=True)))
    assert len(out) == len(layers)
    return dict(zip(layers, out))


def _same_codes(stored, model, ties, what):
    for k in stored:
        n = len(model[k])
        bad = (stored[k].reshape(n, -1) != model[k].reshape(n, -1)) & ~ties[k].reshape(n, -1)
        assert not bad.any(), f"{int(bad.any(1).sum())} {what} have another code (layer {k})"


def _tol(case: int) -> float:
    """Both ends of the accepted tolerance range on some cases, the default on the rest."""
    return {3: 1e-15, 5: 1e-9}.get(case % 7, 1e-12)


def check_case(case: int, n_samples: int = 600) -> str:
    family, net, slc = _build(case)
    tol = _tol(case)
    part = maxaffine.partition_slice(net, slc, progress=False, tol=tol)
    dom = slc.area
    assert part.complete
    assert part.areas.min() > 0, "a region of zero or negative area"
    assert abs(part.areas.sum() - dom) <= 1e-9 * dom, "areas do not sum to the domain"
    # codes at the interior points, by an independent forward pass
    x = slc.points(part.interior)
    _same_codes(part.codes, maxaffine.codes(net, x), _ties(net, x, part.layers),
                "interior points")
    # dense sampling: random points and a grid
    m = int(np.sqrt(n_samples))
    s = np.linspace(slc.domain[:, 0].min(), slc.domain[:, 0].max(), m + 2)[1:-1]
    grid = np.stack(np.meshgrid(s, s), -1).reshape(-1, 2)
    st = np.concatenate([slc.sample(n_samples, seed=case), grid])
    reg, depth = part._locator.locate(st)
    inner = depth > 1e-9 * slc.scale
    assert np.all(reg >= 0), "samples in no region"
    x = slc.points(st[inner])
    got = maxaffine.codes(net, x)
    ties = _ties(net, x, part.layers)
    mine = torch.from_numpy(reg[inner])
    _same_codes({k: v[mine] for k, v in part.codes.items()}, got, ties,
                "samples (than the region containing them)")
    clean = ~torch.stack([t.reshape(len(x), -1).any(1) for t in ties.values()]).any(0)
    seen = np.unique(got.flat().numpy()[clean.numpy()], axis=0)
    have = np.unique(part.codes.flat().numpy(), axis=0)
    missing = {r.tobytes() for r in seen} - {r.tobytes() for r in have}
    assert not missing, f"{len(missing)} codes seen in samples belong to no region"
    y = net(slc.points(st[inner])).detach().numpy()
    err = np.abs(part.output(st[inner], reg[inner]) - y).max()
    # snapping moves a vertex by up to tol (relative) onto a line, and the map solved from
    # the vertex values inherits that: 20 tol, at least 1e-9
    assert err <= max(1e-9, 20 * tol) * max(1.0, np.abs(y).max()), f"output map off by {err:.3g}"
    return family


@pytest.mark.parametrize("case", range(N_CASES))
def test_adversarial_partition(case):
    check_case(case)


def test_the_families_are_degenerate_as_built():
    # the oracle would pass trivially on nets without the degeneracies: check they are there
    _, net, slc = _build(FAMILIES.index("duplicated"))
    W = net[0].weight
    assert any(torch.equal(W[i], W[j]) for i in range(len(W)) for j in range(i))
    _, net, slc = _build(FAMILIES.index("close_lines"))
    part = maxaffine.partition_slice(net, slc, progress=False)
    assert part.n_snapped > 0 or part.n_regions > 1
    _, net, slc = _build(FAMILIES.index("zero_bias"))
    assert all(float(m.bias.detach().abs().max()) == 0 for m in net if isinstance(m, nn.Linear))
