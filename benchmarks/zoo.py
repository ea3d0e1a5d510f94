"""maxaffine on torchvision / timm models: tracing cost and affine_map vs vmap(jacrev).

Per model, in this process, in float64, random init, 3x32x32 inputs, 10 classes:

- ``trace / fwd``: ``maxaffine.trace(model, x[:2])`` (capture, rule binding and the check)
  over one float64 forward of the model at batch 2 (torch's own kernels);
- ``affine_map B=3`` and ``B=64``: ``maxaffine.affine_map(model, x)`` called with the *model*
  (as users call it: the cached trace is looked up and validated every call) over
  ``vmap(jacrev(model))(x) + model(x)``; best of ``--repeat`` after one warm-up call each;
  ratios < 1 mean maxaffine is faster (and it also returns b[x] and every code);
- ``codes`` and ``local_complexity`` (8 vertices, radius 0.1) times at batch 64.

torchvision's compiled ops are a CUDA build that does not load next to the CPU torch; its
model definitions are pure Python, so ``torchvision._meta_registrations`` is stubbed first.

Run: python benchmarks/zoo.py [--repeat N] [--models resnet18,mobilenet_v2] [--batches 3,64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types

import torch

sys.modules.setdefault("torchvision._meta_registrations",
                       types.ModuleType("torchvision._meta_registrations"))

import maxaffine

DEFAULT = ("tv:resnet18", "tv:vgg11_bn", "tv:mobilenet_v2", "tv:squeezenet1_0",
           "tv:regnet_x_400mf", "tv:shufflenet_v2_x0_5", "tv:mnasnet0_5", "tv:densenet121",
           "timm:resnet10t", "timm:mobilenetv2_050", "timm:dla34")


def build(name: str) -> torch.nn.Module:
    src, _, arch = name.partition(":")
    torch.manual_seed(0)
    if src == "tv":
        import torchvision

        return torchvision.models.get_model(arch, weights=None, num_classes=10).eval()
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=10).eval()


def best_of(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(name: str, batches: tuple[int, ...], repeat: int) -> dict:
    model = build(name).double()
    torch.manual_seed(1)
    xs = {b: torch.randn(b, 3, 32, 32, dtype=torch.float64) for b in batches}
    x2 = xs[max(batches)][:2]
    row: dict = {"model": name}
    with torch.no_grad():
        fwd = best_of(lambda: model(x2), repeat)
    t0 = time.perf_counter()
    maxaffine.trace(model, x2)
    row["trace_s"] = time.perf_counter() - t0
    row["trace/fwd"] = row["trace_s"] / fwd

    def f(v):
        return model(v.unsqueeze(0))[0]

    jac = torch.func.vmap(torch.func.jacrev(f))
    for b in batches:
        x = xs[b]

        def alternative(x=x):
            with torch.no_grad():
                y = model(x)
            return jac(x), y

        ours = best_of(lambda x=x: maxaffine.affine_map(model, x), repeat)
        theirs = best_of(alternative, repeat)
        row[f"affine_map B={b}"] = ours / theirs
        row[f"ms B={b}"] = (1e3 * ours, 1e3 * theirs)
    xb = xs[max(batches)]
    row["codes_s"] = best_of(lambda: maxaffine.codes(model, xb), repeat)
    row["lc_s"] = best_of(lambda: maxaffine.local_complexity(model, xb, radius=0.1,
                                                             n_vertices=8, seed=0), 1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", default=",".join(DEFAULT))
    ap.add_argument("--batches", default="3,64")
    args = ap.parse_args()
    batches = tuple(int(b) for b in args.batches.split(","))
    rows = []
    for name in args.models.split(","):
        try:
            rows.append(run(name, batches, args.repeat))
        except maxaffine.MaxAffineError as exc:
            print(f"{name}: refused: {str(exc).splitlines()[0]}", file=sys.stderr)
            continue
        r = rows[-1]
        print(f"{name}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in r.items() if k != "model"), file=sys.stderr)
    head = ["model", "trace (s)", "trace / fwd"] + [f"affine_map / jacrev B={b}" for b in batches]
    head += [f"codes B={max(batches)} (s)", f"LC B={max(batches)} (s)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["model"], f"{r['trace_s']:.2f}", f"{r['trace/fwd']:.1f}"]
        cells += [f"{r[f'affine_map B={b}']:.2f}" for b in batches]
        cells += [f"{r['codes_s']:.3f}", f"{r['lc_s']:.2f}"]
        print("| " + " | ".join(cells) + " |")
    if rows:
        for b in batches:
            vals = [r[f"affine_map B={b}"] for r in rows]
            print(f"\naffine_map / (vmap(jacrev) + forward) at B={b}: median "
                  f"{statistics.median(vals):.2f}, max {max(vals):.2f}")


if __name__ == "__main__":
    main()
