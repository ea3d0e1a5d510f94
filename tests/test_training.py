"""The training loop: lazy regularization (penalty_every) and the shared forward pass."""

import pytest
import torch
from torch import nn

from maxaffine.errors import InputError
from maxaffine.regularizers import orthogonality_penalty
from maxaffine.training import train


def _data(n=40, d=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    return X, torch.randint(0, c, (n,), generator=g)


def _mlp(seed=0, d=5, c=3, dropout=0.0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, c))
    return net.double()


@pytest.mark.parametrize("k", [1, 3])
def test_penalty_runs_on_every_kth_step_counted_across_epochs(k):
    X, y = _data(n=40)
    calls, seen = [], []

    def loss_fn(out, yb):
        seen.append(len(seen))  # one call per step
        return nn.functional.cross_entropy(out, yb)

    def penalty(m, xb, yb):
        calls.append(len(seen) - 1)  # the step in which it is called (after the loss)
        return sum(p.pow(2).sum() for p in m.parameters())

    # 40 samples / batch 8 = 5 steps per epoch, 3 epochs = 15 steps
    train(_mlp(), X, y, epochs=3, batch_size=8, loss_fn=loss_fn, penalty=penalty,
          penalty_weight=0.1, penalty_every=k, progress=False)
    assert len(seen) == 15
    assert calls == list(range(0, 15, k))


@pytest.mark.parametrize("k", [1, 4])
def test_lazy_penalty_weight_is_multiplied_by_k(k):
    X, y = _data(n=8)
    net = _mlp()
    w0 = net[0].weight.detach().clone()
    lam, lr = 0.3, 0.01
    # loss without gradient and penalty = sum of W1: the gradient on W1 is k·λ everywhere, and
    # the first SGD step (momentum buffer = gradient) moves W1 by exactly -lr·k·λ
    hist = train(net, X, y, epochs=1, batch_size=8, lr=lr, optimizer="sgd",
                 loss_fn=lambda out, yb: 0.0 * out.sum(),
                 penalty=lambda m, xb, yb: m[0].weight.sum(), penalty_weight=lam,
                 penalty_every=k, progress=False)
    torch.testing.assert_close(net[0].weight.detach() - w0, torch.full_like(w0, -lr * k * lam),
                               rtol=0, atol=1e-15)
    assert hist.rows[1]["loss"] == pytest.approx(k * lam * w0.sum().item(), rel=1e-12)


def _reference_train(model, X, y, *, epochs, lr, batch_size, penalty, penalty_weight, seed):
    """The training loop before lazy regularization (Adam, penalty on every step)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(X), generator=gen)
        total = 0.0
        for i in range(0, len(X), batch_size):
            idx = order[i:i + batch_size]
            xb, yb = X[idx], y[idx]
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss = loss + penalty_weight * penalty(model, xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(X))
    return losses


def test_penalty_every_one_reproduces_the_previous_loop_bit_for_bit():
    X, y = _data(n=36)
    runs = []
    for use_train in (True, False):
        net = _mlp(dropout=0.2)  # dropout: the order of the global random draws matters
        pen_gen = torch.Generator().manual_seed(7)

        def pen(m, xb, yb):
            return orthogonality_penalty(m, xb, n_probes=1, generator=pen_gen)

        torch.manual_seed(123)
        if use_train:
            hist = train(net, X, y, epochs=3, lr=1e-2, batch_size=8, penalty=pen,
                         penalty_weight=0.5, penalty_every=1, seed=3, progress=False)
            losses = hist.column("loss")[1:]
        else:
            losses = _reference_train(net, X, y, epochs=3, lr=1e-2, batch_size=8, penalty=pen,
                                      penalty_weight=0.5, seed=3)
        runs.append((losses, [p.detach().clone() for p in net.parameters()]))
    (l1, p1), (l2, p2) = runs
    assert l1 == l2
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


@pytest.mark.parametrize("k", [1, 2])
def test_shared_forward_trains_like_a_separate_forward(k):
    X, y = _data(n=32)
    params = []
    for shared in (False, True):
        net = _mlp()
        pen_gen = torch.Generator().manual_seed(5)

        def pen(m, xb, yb, shared=shared):
            return orthogonality_penalty(m, xb, n_probes=2, generator=pen_gen,
                                         return_outputs=shared)

        train(net, X, y, epochs=2, lr=1e-2, batch_size=8, penalty=pen, penalty_weight=2.0,
              penalty_every=k, penalty_returns_outputs=shared, progress=False)
        params.append([p.detach().clone() for p in net.parameters()])
    # same values; only the order of two gradient sums differs (float64 rounding)
    for a, b in zip(*params):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_penalty_every_must_be_a_positive_integer(bad):
    X, y = _data(n=8)
    with pytest.raises(InputError, match="penalty_every"):
        train(_mlp(), X, y, epochs=1, penalty=lambda m, xb, yb: torch.zeros(()),
              penalty_weight=1.0, penalty_every=bad, progress=False)
