"""Bad inputs to the library (not the CLI): each is refused with a maxaffine error whose
message names the problem, or handled as documented (budgets: a flagged partial result and
a warning). One table: case -> expected error type and a phrase of its message."""

import itertools
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import maxaffine
from maxaffine.errors import (
    BudgetWarning,
    DegenerateSliceError,
    InputError,
    MaxAffineError,
    TrainingModeError,
    UnsupportedLayerError,
)


def _mlp(widths=(2, 8, 1), seed=0):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


def _part(widths=(2, 8, 1)):
    return maxaffine.partition_slice(_mlp(widths), maxaffine.Slice.box(), progress=False)


def _partial():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        return maxaffine.partition_slice(_mlp((2, 32, 32, 1)), maxaffine.Slice.box(),
                                         max_regions=40, progress=False)


class _InPlaceUnused(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 4), nn.Linear(4, 1)

    def forward(self, x):
        h = self.a(x)
        h.relu_()
        return self.b(h)


class _InPlaceModuleUnused(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.act, self.b = nn.Linear(2, 4), nn.ReLU(inplace=True), nn.Linear(4, 1)

    def forward(self, x):
        h = self.a(x)
        self.act(h)
        return self.b(h)


class _InPlaceThenResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 1)

    def forward(self, x):
        h = self.a(x)
        y = torch.relu_(h)
        return self.b(y + h)


def _nan_weights():
    net = _mlp()
    with torch.no_grad():
        net[2].weight[0, 1] = float("nan")
    return net


def _meta_model():
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))


def _training_bn():
    return nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)).train()


class _TwoBad(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(2, 4), nn.GELU())
        self.head = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))

    def forward(self, x):
        return self.head(self.enc(x))


X = torch.randn(4, 2, dtype=torch.float64)
BOX = maxaffine.Slice.box

# (id, call, error type, phrase of the message)
CASES = [
    # the snapping tolerance: only a documented range is accepted
    ("tol=0", lambda: maxaffine.partition_slice(_mlp(), BOX(), tol=0, progress=False),
     InputError, "tol must be a finite number in [1e-15, 1e-09]"),
    ("tol<0", lambda: maxaffine.partition_slice(_mlp(), BOX(), tol=-1e-12, progress=False),
     InputError, "tol must be a finite number"),
    ("tol=nan", lambda: maxaffine.partition_slice(_mlp(), BOX(), tol=float("nan"),
                                                  progress=False), InputError, "tol must be"),
    ("tol=1e-3", lambda: maxaffine.partition_slice(_mlp(), BOX(), tol=1e-3, progress=False),
     InputError, "[1e-15, 1e-09]"),
    ("tol=1e-4", lambda: maxaffine.partition_slice(_mlp(), BOX(), tol=1e-4, progress=False),
     InputError, "[1e-15, 1e-09]"),
    ("path tol=0", lambda: maxaffine.partition_path(_mlp(), torch.tensor([[-1.0, 0], [1, 0]]),
                                                    tol=0), InputError, "tol must be"),
    # empty batches
    ("affine_map B=0", lambda: maxaffine.affine_map(_mlp(), torch.zeros(0, 2)), InputError,
     "empty batch"),
    ("affine_map(trace) B=0", lambda: maxaffine.affine_map(maxaffine.trace(_mlp(), X),
                                                           torch.zeros(0, 2)),
     InputError, "empty batch"),
    ("codes B=0", lambda: maxaffine.codes(_mlp(), torch.zeros(0, 2)), InputError,
     "empty batch"),
    ("codes(trace) B=0", lambda: maxaffine.codes(maxaffine.trace(_mlp(), X), torch.zeros(0, 2)),
     InputError, "empty batch"),
    ("local_complexity B=0", lambda: maxaffine.local_complexity(
        _mlp(), torch.zeros(0, 2), radius=0.1, n_vertices=4), InputError, "empty batch"),
    ("trace B=0", lambda: maxaffine.trace(_mlp(), torch.zeros(0, 2)), InputError,
     "empty batch"),
    ("verify(0)", lambda: _part().verify(0), InputError, "n_samples >= 1"),
    ("verify(-1)", lambda: _part().verify(-1), InputError, "n_samples >= 1"),
    # complex values are refused, not cast
    ("affine_map complex", lambda: maxaffine.affine_map(_mlp(), X.to(torch.complex128)),
     InputError, "complex"),
    ("codes complex", lambda: maxaffine.codes(_mlp(), X.to(torch.complex64)), InputError,
     "complex"),
    ("codes(trace) complex numpy", lambda: maxaffine.codes(maxaffine.trace(_mlp(), X),
                                                           X.numpy() + 1j), InputError,
     "complex"),
    ("slice origin complex", lambda: BOX(origin=np.zeros(2) + 1j, u=[1, 0], v=[0, 1]),
     InputError, "complex"),
    ("slice bounds complex", lambda: BOX((0, 1j, 0, 1)), InputError, "complex"),
    ("path complex", lambda: maxaffine.partition_path(_mlp(), torch.zeros(2, 2,
                                                                       dtype=torch.complex128)),
     InputError, "complex"),
    ("locate complex", lambda: _part().locate(np.zeros((2, 2)) + 1j), InputError, "complex"),
    ("locate wrong shape", lambda: _part().locate(np.zeros((2, 3))), InputError, "(N, 2)"),
    # parallel directions (numerically exact parallels included)
    ("parallel u, 2u", lambda: BOX(origin=np.zeros(3), u=[1, 1, 0], v=[2, 2, 0]),
     DegenerateSliceError, "parallel"),
    ("parallel u, -0.3u", lambda: BOX(origin=np.zeros(5), u=np.arange(1.0, 6.0) / 7,
                                      v=-0.3 * np.arange(1.0, 6.0) / 7),
     DegenerateSliceError, "parallel"),
    ("zero direction", lambda: BOX(origin=np.zeros(2), u=[0, 0], v=[0, 1]),
     DegenerateSliceError, "zero or parallel"),
    # misleading messages of before
    ("in-place result unused", lambda: maxaffine.trace(_InPlaceUnused(), X),
     UnsupportedLayerError, "in-place op"),
    ("nn.ReLU(inplace=True) unused", lambda: maxaffine.trace(_InPlaceModuleUnused(), X),
     UnsupportedLayerError, "act (act): in-place op"),
    ("in-place then input reused", lambda: maxaffine.trace(_InPlaceThenResidual(), X),
     UnsupportedLayerError, "in-place op"),
    ("NaN weights", lambda: maxaffine.trace(_nan_weights(), X), InputError,
     "['2.weight'] contain NaN or inf"),
    ("meta-device model", lambda: maxaffine.trace(_meta_model(), X), InputError,
     "meta device"),
    ("verify partial", lambda: _partial().verify(3000), InputError, "partition is partial"),
    # already refused before, kept so
    ("training mode", lambda: maxaffine.trace(_training_bn(), X), TrainingModeError,
     "call model.eval()"),
    ("NaN input", lambda: maxaffine.affine_map(_mlp(), torch.tensor([[0.0, float("nan")]])),
     InputError, "NaN or inf"),
    ("inf input (trace)", lambda: maxaffine.codes(maxaffine.trace(_mlp(), X),
                                                  torch.tensor([[0.0, float("inf")]])),
     InputError, "NaN or inf"),
    ("wrong shape", lambda: maxaffine.codes(maxaffine.trace(_mlp(), X), torch.zeros(3, 5)),
     InputError, "per-sample shape (2,)"),
    ("wrong shape into a model", lambda: maxaffine.affine_map(_mlp(), torch.zeros(3, 5)),
     InputError, "Check the input shape"),
    ("unbatched 0-d input", lambda: maxaffine.trace(_mlp(), torch.tensor(1.0)), InputError,
     "batch of shape (B, *in_shape)"),
    ("not a module", lambda: maxaffine.trace(lambda x: x, X), InputError,
     "expected an nn.Module"),
    ("unsupported layers, all listed", lambda: maxaffine.trace(_TwoBad().eval(), X),
     UnsupportedLayerError, "2 unsupported operation(s)"),
    ("zero-area box", lambda: BOX((0, 0, 0, 1)), DegenerateSliceError, "zero area"),
    ("non-finite bounds", lambda: BOX((0, float("inf"), 0, 1)), DegenerateSliceError,
     "finite"),
    ("collinear anchors", lambda: maxaffine.Slice.through(np.zeros(3), np.ones(3),
                                                          2 * np.ones(3)),
     DegenerateSliceError, "collinear"),
    ("coincident anchors", lambda: maxaffine.Slice.through(np.zeros(3), np.zeros(3),
                                                           np.ones(3)),
     DegenerateSliceError, "coincide"),
    ("non-convex domain", lambda: maxaffine.Slice.polygon(
        [[0, 0], [2, 0], [1, 0.2], [2, 2], [0, 2]], origin=np.zeros(2), u=[1, 0], v=[0, 1]),
     InputError, "convex"),
    ("slice/model shape mismatch", lambda: maxaffine.partition_slice(
        _mlp(), BOX(origin=np.zeros(3), u=[1, 0, 0], v=[0, 1, 0]), progress=False),
     InputError, "Check the input shape"),
    ("not a slice", lambda: maxaffine.partition_slice(_mlp(), (0, 1, 0, 1), progress=False),
     InputError, "must be a maxaffine.Slice"),
    ("unknown layer", lambda: maxaffine.partition_slice(_mlp(), BOX(), layers=["nope"],
                                                        progress=False),
     InputError, "nope"),
    ("max_regions=0", lambda: maxaffine.partition_slice(_mlp(), BOX(), max_regions=0,
                                                        progress=False),
     InputError, "max_regions must be positive"),
    ("path of one point", lambda: maxaffine.partition_path(_mlp(), torch.zeros(1, 2)),
     DegenerateSliceError, "at least two points"),
    ("path with a repeated point", lambda: maxaffine.partition_path(
        _mlp(), torch.tensor([[0.0, 0], [0, 0], [1, 1]])), DegenerateSliceError,
     "zero length"),
    ("no output map on a layer view", lambda: _part((2, 4, 4, 1)).upto(0).output(
        [[0.0, 0.0]], [0]), InputError, "output map"),
]


@pytest.mark.parametrize("call,error,phrase", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_clear_message(call, error, phrase):
    with pytest.raises(error) as info:
        call()
    assert phrase in str(info.value)
    assert isinstance(info.value, MaxAffineError)


# accepted inputs that were refused or wrong before
def test_far_and_tiny_boxes_are_accepted_with_exact_areas():
    far = BOX((1e8, 1e8 + 1, 1e8, 1e8 + 1))
    assert far.area == 1.0
    tiny = BOX((0.3, 0.3 + 1e-10, 0.3, 0.3 + 1e-10))
    # the bounds themselves round at 0.3's ulp (5.6e-17 of 1e-10: 6e-7 relative)
    assert abs(tiny.area - 1e-20) <= 2e-6 * 1e-20


@pytest.mark.parametrize("centre,size", [(5.0, 1e-7), (0.3, 1e-10), (1e4, 1e-3)])
def test_small_boxes_far_from_the_origin_partition_with_exact_areas(centre, size):
    torch.manual_seed(0)
    net = _mlp((2, 16, 1))
    with torch.no_grad():  # lines through the box
        c = torch.full((2,), centre + size / 2, dtype=torch.float64)
        net[0].bias.copy_(-(net[0].weight @ c) + 0.3 * size * torch.randn(16).double())
    slc = BOX((centre, centre + size, centre, centre + size))
    part = maxaffine.partition_slice(net, slc, progress=False)
    assert part.n_regions > 20
    # relative 1e-12: the shoelace about each polygon's own vertex keeps the digits
    assert abs(part.areas.sum() - slc.area) <= 1e-12 * slc.area
    assert part.areas.min() > 0
    part.verify(1000)


def test_random_exactly_parallel_directions_are_all_refused():
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(1000):
        u = rng.standard_normal(5)
        try:
            BOX(origin=np.zeros(5), u=u, v=rng.standard_normal() * 10 ** rng.uniform(-3, 3) * u)
        except DegenerateSliceError:
            refused += 1
    assert refused == 1000
    # and independent ones are all accepted, also at a small angle
    for _ in range(200):
        u, v = rng.standard_normal(5), rng.standard_normal(5)
        BOX(origin=np.zeros(5), u=u, v=v)
    BOX(origin=np.zeros(3), u=[1.0, 0, 0], v=[1.0, 1e-6, 0])


def test_in_place_ops_whose_result_is_used_still_trace():
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(inplace=True), nn.Linear(4, 1)).double().eval()
    tr = maxaffine.trace(net, X)
    assert torch.allclose(tr(X), net(X))


def test_lazy_affine_map_has_no_autograd_graph_unless_asked():
    net = _mlp()
    lazy = maxaffine.affine_map(net, X, materialize=False)
    assert not lazy.A.requires_grad and lazy.A.grad_fn is None
    tr = maxaffine.trace(net, X, dtype=None)
    diff = maxaffine.affine_map(tr, X, materialize=False, differentiable=True)
    assert diff.A.requires_grad
    assert torch.allclose(lazy.A, maxaffine.affine_map(net, X).A)


def test_budget_exceeded_gives_a_flagged_partial_result_and_a_warning():
    with pytest.warns(BudgetWarning, match="partial"):
        part = maxaffine.partition_slice(_mlp((2, 32, 32, 1)), BOX(), max_regions=40,
                                         progress=False)
    assert not part.complete and part.G is None
    assert abs(part.areas.sum() - 4.0) <= 1e-12 * 4.0


def test_empty_point_sets_return_empty_results():
    part = _part()
    assert part.locate(np.zeros((0, 2))).shape == (0,)
