"""Capturing real-world forwards: fallbacks, bound defaults, output selection, splits, cache."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import jacrev, vmap

import maxaffine
from maxaffine import InputError, UnsupportedLayerError, affine_map, as_trace, codes, trace


def _exact(model: nn.Module, x: torch.Tensor, **kw) -> None:
    """A[x] from maxaffine equals autograd's Jacobian, and f = A x + b (float64)."""
    m = affine_map(model, x, **kw)
    net = model.double()
    select = kw.get("output")

    def f(v):
        out = net(v.unsqueeze(0))
        if select is not None:
            out = select(out) if callable(select) else out[select]
        return out.reshape(-1)

    J = vmap(jacrev(f))(x.double())
    # exact up to float64 rounding of the same products in another order
    assert torch.allclose(m.A, J.reshape(m.A.shape), atol=1e-10, rtol=0)
    y = torch.stack([f(v) for v in x.double()])
    assert torch.allclose(torch.einsum("ncd,nd->nc", m.A, x.double().flatten(1)) + m.b, y,
                          atol=1e-10, rtol=0)


class ShapeBranch(nn.Module):
    """Control flow on a per-sample size (like timm's vgg head)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        if x.shape[-2] < 7:  # symbolic tracing cannot decide this
            h = F.adaptive_max_pool2d(h, 1)
        else:
            h = F.max_pool2d(h, 2)
        return self.head(h.reshape(x.size(0), -1))


def test_shape_dependent_control_flow_falls_back_to_concrete_shapes():
    torch.manual_seed(0)
    net = ShapeBranch()
    x = torch.randn(5, 2, 6, 6)
    tr = trace(net, x[:2])
    assert tr.route == "concrete shapes"
    _exact(net, x)
    # the batch size stays free: x.size(0) is a graph node, not the example's 2
    assert tr.forward(x.double()).shape == (5, 3)


def test_value_dependent_control_flow_lists_every_route():
    class ValueBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(3, 3)

        def forward(self, x):
            h = self.l(x)
            return h if h.sum() > 0 else -h

    with pytest.raises(UnsupportedLayerError, match="symbolic tracing.*concrete shapes tracing"):
        trace(ValueBranch(), torch.randn(2, 3))


def test_forward_defaults_are_bound():
    class WithMask(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x, attn_mask=None, scale: float = 2.0, *, return_features=False):
            h = torch.relu(self.a(x))
            if attn_mask is not None:
                h = h * attn_mask
            return h if return_features else self.b(h) * scale

    torch.manual_seed(1)
    net = WithMask()
    tr = trace(net, torch.randn(2, 4))
    assert tr.out_shape == (2,)
    _exact(net, torch.randn(6, 4))


def test_forward_with_required_extra_input_is_refused_with_names():
    class TwoInputs(nn.Module):
        def forward(self, x, y):
            return x + y

    with pytest.raises(InputError, match=r"\(x, y\)"):
        trace(TwoInputs(), torch.randn(2, 3))


class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 8), nn.ReLU())
        self.cls = nn.Linear(8, 4)
        self.aux = nn.Linear(8, 2)

    def forward(self, x):
        h = self.body(x)
        return {"logits": self.cls(h), "features": h, "aux": torch.tanh(self.aux(h))}


class TupleHeads(Heads):
    def forward(self, x):
        out = super().forward(x)
        return out["logits"], out["features"]


@pytest.mark.parametrize("output", ["logits", lambda o: o["logits"] - 2 * o["features"][:, :4]])
def test_dict_outputs(output):
    torch.manual_seed(2)
    net = Heads()
    x = torch.randn(5, 3)
    # the tanh head feeds only another output, so it is dropped rather than refused
    tr = trace(net, x[:2], output=output)
    assert tr.out_shape == (4,)
    _exact(net, x, output=output)


def test_tuple_outputs_and_the_error_without_output():
    torch.manual_seed(3)
    net = TupleHeads()
    x = torch.randn(4, 3)
    with pytest.raises(InputError, match="output="):
        trace(net, x[:2])
    _exact(net, x, output=1)
    _exact(net, x, output=0)
    assert codes(net, x, output=0)["body.1"].shape == (4, 8)
    with pytest.raises(InputError, match="not one of"):
        trace(net, x[:2], output=5)


def test_as_trace_refuses_a_trace_with_another_output():
    net = TupleHeads()
    tr = as_trace(net, torch.randn(2, 3), output=0)
    assert as_trace(tr, torch.randn(2, 3)) is tr
    with pytest.raises(InputError, match="differs"):
        as_trace(tr, torch.randn(2, 3), output=1)


class Splits(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, padding=1)
        self.lin = nn.Linear(6 * 5 * 5 + 5 * 2, 3)

    def forward(self, x):
        h = self.conv(x)
        a, b = h.chunk(2, dim=1)  # shufflenet-style
        c, d, e = torch.split(h, [1, 2, 3], dim=1)
        rows = h.unbind(-2)
        g = torch.cat([torch.relu(a), b.clamp(min=0.1), c, torch.maximum(d, e[:, :2])], 1)
        tail = torch.cat([rows[0][:, 0], rows[-1][:, 1]], 1)
        return self.lin(torch.cat([g.flatten(1)[:, :150], tail], 1))


def test_chunk_split_unbind_are_read_as_slices():
    torch.manual_seed(4)
    net = Splits()
    x = torch.randn(4, 2, 5, 5)
    tr = trace(net, x[:2])
    ops = {n.op for n in tr.nodes if n.kind == "var"}
    assert not ops & {"Tensor.chunk", "torch.split", "Tensor.unbind"}
    _exact(net, x)


def test_split_along_batch_is_refused_for_that_reason():
    class BatchSplit(nn.Module):
        def forward(self, x):
            a, b = x.chunk(2, 0)
            return torch.cat([a, b], 1)

    with pytest.raises(UnsupportedLayerError, match="chunk along the batch dimension"):
        trace(BatchSplit(), torch.randn(2, 3))


def test_getitem_of_an_unsupported_tuple_names_only_its_producer():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = nn.MultiheadAttention(4, 2, batch_first=True)

        def forward(self, x):
            out, _ = self.att(x, x, x)
            return out

    with pytest.raises(UnsupportedLayerError) as info:
        trace(Attn().eval(), torch.randn(2, 3, 4))
    assert "MultiheadAttention" in str(info.value)
    assert "batch dimension" not in str(info.value)


def test_module_named_flatten_is_not_the_method():
    class Quickstart(nn.Module):  # the PyTorch Quickstart model as written
        def __init__(self):
            super().__init__()
            self.flatten = nn.Flatten()
            self.linear_relu_stack = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))

        def forward(self, x):
            return self.linear_relu_stack(self.flatten(x))

    torch.manual_seed(5)
    net = Quickstart()
    _exact(net, torch.randn(4, 3, 2, 2))

    class Bad(nn.Module):
        def forward(self, x):
            return torch.flatten(x).reshape(x.shape[0], -1)

    with pytest.raises(UnsupportedLayerError, match="start_dim=0"):
        trace(Bad(), torch.randn(2, 3))


def test_hard_coded_batch_size_is_reported():
    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(6, 2)

        def forward(self, x):
            return self.l(x.view(2, -1))

    with pytest.raises(UnsupportedLayerError, match="batch"):
        trace(Fixed(), torch.randn(2, 2, 3))


# ---- the trace cache ---------------------------------------------------------------------
def _mlp() -> nn.Module:
    torch.manual_seed(6)
    return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).eval()


def test_cache_reuses_a_trace_per_model_shape_and_output():
    net = _mlp()
    x = torch.randn(5, 3)
    tr = as_trace(net, x)
    assert as_trace(net, torch.randn(9, 3)) is tr  # any batch of the same per-sample shape
    assert as_trace(net, x, dtype=torch.float32) is not tr
    assert as_trace(_mlp(), x) is not tr  # another model object
    assert affine_map(net, x).trace is tr


def test_cache_is_invalidated_by_training_steps_and_mode_changes():
    net = _mlp()
    x = torch.randn(6, 3)
    tr = as_trace(net, x)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net.train()
    with pytest.raises(maxaffine.TrainingModeError):
        as_trace(net, x)
    loss = net(x).square().sum()
    loss.backward()
    opt.step()
    net.eval()
    tr2 = as_trace(net, x)
    assert tr2 is not tr
    # the new trace sees the new weights (exact against autograd)
    _exact(net, x)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net[0].weight.add_(1.0)
    assert as_trace(net, x) is not tr2
    tr3 = as_trace(net, x)
    net.load_state_dict(state)
    assert as_trace(net, x) is not tr3
    net[3] = nn.Linear(8, 2)  # a replaced module: new parameter tensors
    assert as_trace(net, x).model[3] is not tr3.model[3]


def test_cache_sees_newly_registered_rules():
    class Twice(nn.Module):
        def forward(self, x):
            return 2 * x

    net = nn.Sequential(nn.Linear(2, 2), Twice())
    x = torch.randn(3, 2)
    tr = as_trace(net, x)
    assert as_trace(net, x) is tr
    key = ("Tensor.maxaffine_test_dummy",)
    from maxaffine.layers import REGISTRY
    from maxaffine.layers.structural import IdentityRule

    REGISTRY[key[0]] = IdentityRule()
    try:
        assert as_trace(net, x) is not tr
    finally:
        del REGISTRY[key[0]]


def test_cache_is_bounded():
    x = torch.randn(2, 3)
    nets = [_mlp() for _ in range(20)]
    first = as_trace(nets[0], x)
    for net in nets[1:]:
        as_trace(net, x)
    assert as_trace(nets[0], x) is not first  # evicted, least recently used


def test_hardswish_is_refused_as_piecewise_quadratic():
    net = nn.Sequential(nn.Linear(3, 4), nn.Hardswish(), nn.Linear(4, 2))
    with pytest.raises(UnsupportedLayerError, match="piecewise-quadratic"):
        trace(net, torch.randn(2, 3))


def test_rrelu_in_training_mode_is_refused():
    net = nn.Sequential(nn.Linear(3, 4), nn.RReLU(), nn.Linear(4, 2)).train()
    with pytest.raises(maxaffine.TrainingModeError):
        trace(net, torch.randn(2, 3))
    # oracle: the same weights with the eval-mode slope as a LeakyReLU (vmap cannot run RReLU)
    twin = copy.deepcopy(nn.Sequential(net[0], nn.LeakyReLU((net[1].lower + net[1].upper) / 2),
                                       net[2])).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    m = affine_map(net.eval(), x)
    J = vmap(jacrev(lambda v: twin(v.unsqueeze(0))[0]))(x)
    assert torch.allclose(m.A, J, atol=1e-12, rtol=0)


def test_timm_style_batchnorm_act_and_functional_convs_are_exact():
    class BNAct(nn.BatchNorm2d):
        def forward(self, x):
            x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                             self.training, 0.1, self.eps)
            return torch.relu(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 2, 3, 3))
            self.bn = BNAct(4)
            self.pad = nn.ReflectionPad2d(1)
            self.head = nn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            return self.head(self.pad(self.bn(F.conv2d(x, self.w, padding=1))).flatten(1))

    torch.manual_seed(8)
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    with pytest.raises(maxaffine.TrainingModeError):
        trace(net, torch.randn(2, 2, 4, 4))
    _exact(net.eval(), torch.randn(3, 2, 4, 4))


HEADS_FILE = '''
import torch
from torch import nn

class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 12), nn.ReLU())
        self.cls = nn.Linear(12, 3)

    def forward(self, x):
        h = self.body(x)
        return {"logits": self.cls(h), "features": h}

def make_model():
    torch.manual_seed(0)
    return Heads()
'''


def test_with_output_keeps_layer_names_and_shares_parameters():
    from maxaffine._capture import with_output

    net = Heads()
    picked = with_output(net, "logits")
    assert picked.cls.weight is net.cls.weight
    tr = trace(picked, torch.randn(2, 3))
    assert tr.piecewise == trace(net, torch.randn(2, 3), output="logits").piecewise
    assert isinstance(net(torch.randn(2, 3)), dict)  # the user's model is unchanged


def test_cli_report_output_option(tmp_path, capsys):
    import json

    from maxaffine import cli

    f = tmp_path / "heads.py"
    f.write_text(HEADS_FILE)
    out = tmp_path / "rep"
    code = cli.main(["report", "--model", f"{f}:make_model", "--data", "toy", "--output",
                     "logits", "--max-regions", "500", "--out", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    assert "complete" in json.loads((out / "numbers.json").read_text())["slice"]
