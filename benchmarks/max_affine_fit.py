"""Benchmark: MaxAffineRegressor against generic regressors, in one process.

Problems (inputs uniform in a box, noise-free test targets):

- ``planted``: a max of K = 5 random affine functions in R^3, training noise sd 0.01;
- ``sqnorm``: ||x||^2 in R^5 (smooth convex, not piecewise-affine);
- ``logsumexp``: log sum_i exp(2 x_i) in R^5 (smooth convex).

Prints fit time and test RMSE for MaxAffineRegressor (Magnani-Boyd), a single affine fit
(LinearRegression), sklearn's MLPRegressor, DecisionTreeRegressor and
HistGradientBoostingRegressor, all limited to the same number of BLAS/OpenMP threads.
Run: ``python benchmarks/max_affine_fit.py [--n 4000] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.neural_network import MLPRegressor
from sklearn.tree import DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from maxaffine.fit import MaxAffineRegressor


def problems(n: int, seed: int):
    rng = np.random.default_rng(seed)
    A, b = rng.normal(size=(5, 3)), rng.normal(size=5)
    yield "planted K=5, D=3", 3, (lambda X: (X @ A.T + b).max(1)), 0.01, 2.0
    yield "||x||^2, D=5", 5, (lambda X: (X**2).sum(1)), 0.0, 1.0
    yield "logsumexp(2x), D=5", 5, (lambda X: np.log(np.exp(2 * X).sum(1))), 0.0, 1.0


def methods(seed: int, n_pieces: int):
    return {
        f"MaxAffineRegressor(K={n_pieces})": MaxAffineRegressor(n_pieces=n_pieces,
                                                                random_state=seed),
        "LinearRegression": LinearRegression(),
        "MLPRegressor(64,64)": MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=1000,
                                            random_state=seed),
        "DecisionTree": DecisionTreeRegressor(random_state=seed),
        "HistGradientBoosting": HistGradientBoostingRegressor(random_state=seed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="training (= test) samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS/OpenMP threads for every method (1: comparable timings)")
    args = parser.parse_args()
    with threadpool_limits(limits=args.threads):
        run(args)


def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed + 1)
    header = (f"{'problem':<20} {'method':<26} {'fit time (s)':>12} {'test RMSE':>11} "
              f"{'RMSE / MA':>9}")
    print(header)
    print("-" * len(header))
    for name, d, f, noise, box in problems(args.n, args.seed):
        X = rng.uniform(-box, box, (args.n, d))
        Xte = rng.uniform(-box, box, (args.n, d))
        y = f(X) + noise * rng.normal(size=args.n)
        yte = f(Xte)
        n_pieces = 5 if name.startswith("planted") else 20
        rows = []
        for label, model in methods(args.seed, n_pieces).items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                t0 = time.perf_counter()
                model.fit(X, y)
                elapsed = time.perf_counter() - t0
            rmse = float(np.sqrt(np.mean((model.predict(Xte) - yte) ** 2)))
            rows.append((label, elapsed, rmse))
        ref = rows[0][2]
        for label, elapsed, rmse in rows:
            print(f"{name:<20} {label:<26} {elapsed:>12.3f} {rmse:>11.2e} {rmse / ref:>9.1f}")
        print()


if __name__ == "__main__":
    main()
