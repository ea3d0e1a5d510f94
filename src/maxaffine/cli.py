"""The ``maxaffine`` command line: ``demo``, ``report``, ``experiment``, ``layers`` and
``run-distributed``.

Every command has ``--help``. Bad input (missing files, wrong shapes, unsupported layers,
pickled checkpoints) ends with one clear message on stderr and a non-zero exit code, never
a traceback; ``-v`` shows the traceback for debugging.

Exit codes: 0 success, 1 analysis error (:class:`maxaffine.errors.MaxAffineError`),
2 bad command line, input file or output folder, 130 interrupted (Ctrl-C), 128 + N on
signal N (SIGTERM: 143).

``--out`` is checked before any work: a report goes into a new or empty folder, or replaces
a previous maxaffine report with ``--overwrite``; a folder holding anything else is refused
(rules in :mod:`maxaffine.report.output`). The CLI is also ``python -m maxaffine``.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import InputError, MaxAffineError

EXIT_OK = 0
EXIT_ANALYSIS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**32 - 1, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


#: Options whose value may start with "-" (negative indices): "--points -1,-2,-3".
_NEGATIVE_VALUES = {"--points": re.compile(r"^-\d+(,\s*-?\d+)*$")}


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--points -1,-2`` as ``--points=-1,-2`` (argparse takes "-1,-2" for an option)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        pattern = _NEGATIVE_VALUES.get(arg)
        if pattern is not None and i + 1 < len(argv) and pattern.match(argv[i + 1]):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def _add_out(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", type=Path, default=Path(default), metavar="DIR",
                   help=(f"output folder (default: {default}); must be new, empty, or a "
                         "previous maxaffine report (with --overwrite)"))
    p.add_argument("--overwrite", action="store_true",
                   help=("replace the previous maxaffine report in --out (refused if the "
                         "folder holds files maxaffine did not write)"))


def _add_common(p: argparse.ArgumentParser, *, out_default: str | None) -> None:
    if out_default is not None:
        _add_out(p, out_default)
    p.add_argument("--seed", type=_nonnegative_int, default=0,
                   help="random seed, 0 to 2**32 - 1 (default: 0)")
    p.add_argument("--device", default="cpu",
                   help="torch device for training (default: cpu); geometry runs in float64 on CPU")
    verbosity = p.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           help="no progress bars, print only the result's path")
    verbosity.add_argument("-v", "--verbose", action="store_true",
                           help="more output; show tracebacks on errors")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maxaffine",
        description=("Exact max-affine spline (MASO) geometry of deep networks: partitions, "
                     "decision boundaries, templates and complexity as an HTML report."),
        epilog="Start with:  maxaffine demo --out maxaffine-demo",
    )
    parser.add_argument("--version", action="version", version=f"maxaffine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="the talk's toy example and a digits CNN as an HTML report",
        description=("Train the toy network 2 -> 45 -> 3 -> 4 (ReLU, zero initial biases) on a "
                     "2D 4-class dataset and a small CNN on scikit-learn digits, then write an "
                     "HTML report of their exact partitions, decision boundaries, templates "
                     "and complexity. Takes about half a minute on 2 idle CPU cores (--quick: about 15 s)."))
    _add_common(demo, out_default="maxaffine-demo")
    demo.add_argument("--quick", action="store_true",
                      help=("fewer epochs and coarser pictures (for tests; about 15 s); the "
                            "digits slice stops at a 20,000-region budget"))

    report = sub.add_parser(
        "report", help="analyse your own model and write an HTML report",
        description=("Analyse a user's model: exact partitions of 2D slices through chosen data "
                     "points, the decision boundary, class templates, local complexity and VQ "
                     "code statistics, written as one self-contained index.html plus JSON/CSV. "
                     "Weights are loaded with torch.load(weights_only=True): save a state_dict, "
                     "not a pickled model."),
        epilog=("example: maxaffine report --model examples/residual_cnn.py:make_model "
                "--weights residual_cnn.pt --data digits --points 0,1255,511"))
    report.add_argument("--model", required=True, metavar="MODULE_OR_FILE:FACTORY",
                        help=("a factory returning the nn.Module: 'path/to/file.py:make_model' "
                              "or 'package.module:make_model' (called without arguments)"))
    report.add_argument("--weights", type=Path, metavar="FILE",
                        help="a state_dict saved with torch.save(model.state_dict(), FILE)")
    report.add_argument("--data", default=None, metavar="FILE|digits|mnist1d|toy",
                        help=("a .npz or .pt file holding tensors X (N, *in_shape) and optionally "
                              "y (N,), or a bundled dataset name (default: guessed from the "
                              "model's input shape)"))
    report.add_argument("--points", default=None, metavar="I,J,K",
                        help=("indices of three data points spanning the 2D slice (negative "
                              "counts from the end); default: the first points of three "
                              "different classes, or 0,1,2 without labels"))
    report.add_argument("--max-regions", type=_positive_int, default=50_000, metavar="N",
                        help=("budget of the exact slice partition; beyond it the subdivision "
                              "is partial, flagged in the report and on the console, and "
                              "without a decision boundary (default: 50000)"))
    report.add_argument("--output", default=None, metavar="INDEX|KEY",
                        help=("for a forward returning a tuple or dict: the index or key of the "
                              "output to analyse, e.g. --output logits"))
    _add_common(report, out_default="maxaffine-report")

    exp = sub.add_parser(
        "experiment", help="run one of the reproducible experiments",
        description="Run a reproducible experiment, writing its tables and figures to --out.")
    exp.add_argument("name", nargs="?", help="experiment name (see --list)")
    exp.add_argument("--list", action="store_true", help="list the experiments and exit")
    exp.add_argument("--quick", action="store_true", help="small settings (smoke test)")
    _add_common(exp, out_default=None)
    exp.add_argument("--out", type=Path, default=None, metavar="DIR",
                     help="output folder (default: experiments-out/NAME)")

    sub.add_parser("layers", help="list the supported torch layers and how each is handled",
                   description=("Print every supported op (module, function or method) and how "
                                "maxaffine reads it: affine, shape, or piecewise (MASO), and the "
                                "refused ops with the suggested way out."))

    dist = sub.add_parser(
        "run-distributed", help="local complexity + code statistics of many checkpoints",
        description=("Local complexity and VQ code statistics (distinct regions per layer and "
                     "overall, active fractions) of every checkpoint over one dataset, in this "
                     "process or as one Ray task per checkpoint (--ray). Writes "
                     "distributed.json and distributed.csv to --out. Checkpoints are loaded "
                     "with torch.load(weights_only=True)."),
        epilog=("example: maxaffine run-distributed --model net.py:make_model "
                "--checkpoints ep1.pt ep2.pt --data data.pt --radius 0.005 --ray local"))
    dist.add_argument("--model", required=True, metavar="MODULE_OR_FILE:FACTORY",
                      help="a factory returning the nn.Module (as for 'maxaffine report')")
    dist.add_argument("--checkpoints", required=True, nargs="+", type=Path, metavar="FILE",
                      help="state_dict files saved with torch.save(model.state_dict(), FILE)")
    dist.add_argument("--data", default=None, metavar="FILE|digits|mnist1d|toy",
                      help="a .npz or .pt file holding X (N, *in_shape), or a bundled dataset")
    dist.add_argument("--radius", type=float, default=0.1, help="local-complexity radius")
    dist.add_argument("--n-vertices", type=int, default=20,
                      help="vertices of each cross-polytope (default: 20)")
    dist.add_argument("--batch-size", type=int, default=256, metavar="N")
    dist.add_argument("--limit", type=int, default=None, metavar="N",
                      help="use only the first N inputs")
    dist.add_argument("--ray", default=None, metavar="ADDRESS|local|auto",
                      help="run on Ray: 'local' starts it here, else a cluster address")
    dist.add_argument("--workers", type=int, default=None, metavar="K",
                      help="CPUs of a --ray local cluster (default: all)")
    _add_common(dist, out_default="maxaffine-distributed")
    return parser


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False)


def _check_device(name: str) -> str:
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return str(device)


def _check_out(args: argparse.Namespace) -> None:
    """Refuse a bad ``--out`` before any work (a file, a folder of the user's files, ...)."""
    from .report.output import check_destination

    check_destination(args.out, overwrite=args.overwrite)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .report.demo_report import run_demo

    device = _check_device(args.device)
    _check_out(args)
    t0 = time.perf_counter()
    path = run_demo(args.out, quick=args.quick, seed=args.seed, device=device,
                    progress=_progress(args), verbose=args.verbose, overwrite=args.overwrite)
    _done(args, path, time.perf_counter() - t0)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from ._capture import parse_output
    from .report import build_model_report

    device = _check_device(args.device)
    _check_out(args)
    t0 = time.perf_counter()
    path = build_model_report(args.model, args.out, weights=args.weights, data=args.data,
                              points=args.points, seed=args.seed, device=device,
                              max_regions=args.max_regions, progress=_progress(args),
                              verbose=args.verbose, output=parse_output(args.output),
                              overwrite=args.overwrite)
    _done(args, path, time.perf_counter() - t0)
    return EXIT_OK


def _cmd_experiment(args: argparse.Namespace) -> int:
    from . import experiments

    if args.list or not args.name:
        table = experiments.available()
        if not args.list and not args.name:
            print("maxaffine experiment: give an experiment NAME (or --list); available:",
                  file=sys.stderr)
        _print_table(table, ("experiment", "description"),
                     file=sys.stdout if args.list else sys.stderr)
        return EXIT_OK if args.list else EXIT_USAGE
    _check_device(args.device)
    out = args.out if args.out is not None else Path("experiments-out") / args.name
    t0 = time.perf_counter()
    result = experiments.run(args.name, out, quick=args.quick, seed=args.seed,
                             progress=_progress(args))
    if args.verbose and result:
        for key, value in result.items():
            print(f"  {key}: {value}")
    _done(args, Path(out), time.perf_counter() - t0)
    return EXIT_OK


def _cmd_layers(args: argparse.Namespace) -> int:
    from .layers import registry

    _print_table(registry.supported_layers(), ("op", "how maxaffine reads it"))
    refused = registry.refused_layers()
    if refused:
        print()
        print("Refused, with the reason and the way out:")
        _print_table(refused, ("op", "way out"))
    return EXIT_OK


def _print_table(rows: dict[str, str], header: tuple[str, str], file=None) -> None:
    file = file or sys.stdout
    width = max([len(header[0])] + [len(k) for k in rows])
    print(f"{header[0]:<{width}}  {header[1]}", file=file)
    print(f"{'-' * width}  {'-' * len(header[1])}", file=file)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}", file=file)


def _done(args: argparse.Namespace, path: Path, seconds: float) -> None:
    path = Path(path)
    if args.quiet:
        print(path)
    else:
        partial = " (partial: see the note above)" if args._notes else ""
        print(f"Done in {seconds:.1f} s{partial}. Report: {path.resolve()}")


def _cmd_run_distributed(args: argparse.Namespace) -> int:
    from .distributed.sweep import run_checkpoints

    device = _check_device(args.device)
    t0 = time.perf_counter()
    rows = run_checkpoints(args.model, args.checkpoints, args.data, out=args.out,
                           radius=args.radius, n_vertices=args.n_vertices,
                           batch_size=args.batch_size, limit=args.limit, seed=args.seed,
                           ray_address=args.ray, workers=args.workers, device=device,
                           progress=_progress(args))
    if not args.quiet:
        keys = [k for k in ("checkpoint", "n", "lc_mean", "lc_std", "regions") if k in rows[0]]
        print("  ".join(keys))
        for r in rows:
            print("  ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys))
    _done(args, Path(args.out) / "distributed.json", time.perf_counter() - t0)
    return EXIT_OK


_COMMANDS = {"demo": _cmd_demo, "report": _cmd_report, "experiment": _cmd_experiment,
             "layers": _cmd_layers, "run-distributed": _cmd_run_distributed}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also used by the console script).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on an analysis error, 2 on bad input, 130 when interrupted.
    """
    parser = _parser()
    args = parser.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None
                                                        else argv)))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    verbose = getattr(args, "verbose", False)
    args._notes = []
    try:
        with _terminate_as_interrupt(), warnings.catch_warnings():
            warnings.showwarning = _note_printer(args, verbose)
            return _COMMANDS[args.command](args)
    except _Terminated as exc:
        print(f"maxaffine: stopped by signal {exc.signum}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("maxaffine: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (InputError, OSError) as exc:
        _fail(args.command, exc, verbose)
        return EXIT_USAGE
    except MaxAffineError as exc:
        _fail(args.command, exc, verbose)
        return EXIT_ANALYSIS


class _Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP, raised like Ctrl-C so that every cleanup (``finally``) runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _terminate_as_interrupt:
    """While a command runs, SIGTERM and SIGHUP unwind the stack instead of killing Python
    outright, so staging folders are removed (the CLI may change process-wide state)."""

    _names = ("SIGTERM", "SIGHUP")

    def __enter__(self):
        import threading

        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for name in self._names:
                num = getattr(signal, name, None)
                if num is not None:
                    self._old[num] = signal.signal(num, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise _Terminated(signum)

    def __exit__(self, *exc):
        for num, handler in self._old.items():
            signal.signal(num, handler)
        return False


def _note_printer(args: argparse.Namespace, verbose: bool):
    """Budget warnings become one-line notes; other warnings keep Python's format."""
    from .errors import BudgetWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, BudgetWarning) and not verbose:
            args._notes.append(str(message))
            print(f"maxaffine {args.command}: note: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def _fail(command: str, exc: BaseException, verbose: bool) -> None:
    if verbose:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if isinstance(exc, OSError) and exc.filename:
        message = f"{exc.strerror or exc}: {exc.filename}"
    elif isinstance(exc, OSError):
        message = exc.strerror or str(exc)
    else:
        message = str(exc)
    print(f"maxaffine {command}: error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
