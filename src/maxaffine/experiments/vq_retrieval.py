"""The VQ distance as a retrieval metric: k-NN label agreement on digits.

For every test image the k nearest training images are retrieved under: Euclidean distance on
pixels, Euclidean distance on the trained CNN's penultimate features, and the VQ distance
(fraction of units with a different code) per piecewise layer and combined over all layers —
for the trained CNN and, as a control, for the same CNN at initialisation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..datasets import digits
from ..templates import vq_distance
from ..trace import trace
from ..training import accuracy, train
from ._common import cnn_digits, figure, save, write_markdown, write_table

NAME = "vq-retrieval"
DESCRIPTION = "k-NN label agreement on digits: VQ distance per layer/combined vs Euclidean"


def _knn_scores(d: torch.Tensor, y_query: torch.Tensor, y_db: torch.Tensor, k: int,
                gen: torch.Generator) -> tuple[float, float]:
    """(mean fraction of the k neighbours with the query's label, 1-NN accuracy).

    Ties (frequent for the discrete VQ distance) are broken at random by a jitter far below
    the distance resolution.
    """
    jitter = torch.rand(d.shape, generator=gen, dtype=torch.float64) * 1e-9
    idx = (d + jitter).topk(k, dim=1, largest=False).indices
    same = (y_db[idx] == y_query[:, None]).double()
    return float(same.mean()), float(same[:, 0].mean())


def run(out_dir: Path, *, quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    torch.set_num_threads(1)
    ds = digits(image=True)
    k = 5
    Xdb, ydb = (ds.X_train[:200], ds.y_train[:200]) if quick else (ds.X_train, ds.y_train)
    Xq, yq = (ds.X_test[:50], ds.y_test[:50]) if quick else (ds.X_test, ds.y_test)
    torch.manual_seed(seed)
    init = cnn_digits(8).eval()
    torch.manual_seed(seed)
    net = cnn_digits(8)
    train(net, Xdb, ydb, epochs=1 if quick else 20, lr=1e-3, seed=seed, progress=False)
    net.eval()
    gen = torch.Generator().manual_seed(seed)
    rows = []

    def add(method: str, d: torch.Tensor) -> None:
        agree, nn1 = _knn_scores(d, yq, ydb, k, gen)
        rows.append({"distance": method, f"{k}-NN agreement": agree, "1-NN accuracy": nn1})

    add("euclidean (pixels)", torch.cdist(Xq.flatten(1).double(), Xdb.flatten(1).double()))
    with torch.no_grad():
        fq, fdb = net[:-1](Xq).double(), net[:-1](Xdb).double()
    add("euclidean (penultimate features)", torch.cdist(fq, fdb))
    for tag, model in (("trained", net), ("init", init)):
        tr = trace(model, Xq[:2])
        for layer in tr.piecewise:
            add(f"VQ {tag} layer {layer} ({tr.node(layer).op})", vq_distance(tr, Xq, Xdb, layers=[layer]))
        add(f"VQ {tag} all layers", vq_distance(tr, Xq, Xdb))
    table = write_table(rows, out_dir, NAME, title=f"{len(Xq)} test queries against {len(Xdb)} "
                        f"training images (CNN test accuracy {accuracy(net, Xq, yq):.4f})")
    fig, axes = figure(1, 1, size=(7.5, 3.6))
    ax = axes[0][0]
    ax.barh(range(len(rows)), [r[f"{k}-NN agreement"] for r in rows])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["distance"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{k}-NN label agreement")
    save(fig, out_dir, f"{NAME}-agreement.png")
    write_markdown(out_dir, NAME, "VQ distance for retrieval", [
        "VQ distance d(x, x') = Σ_ℓ w_ℓ (1/K_ℓ) Σ_k 1[q_k(x) ≠ q_k(x')] (uniform w_ℓ = 1/L for "
        "'all layers'). Ties broken at random.", table, f"![agreement]({NAME}-agreement.png)"])
    return {"rows": rows}
