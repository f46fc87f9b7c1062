"""The ``cmicrograd`` command: ``cmicrograd train`` trains an MLP as micrograd's demo does.

Bad input (options, data files, model files) is answered with one line on stderr and
exit code 2, never a traceback. Progress goes to stderr, the summary to stdout.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

# Training never calls BLAS; numpy's OpenBLAS threads would only spin on the other cores
# and slow the run down. Users can still choose otherwise in the environment.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
from typing import List, Optional, Sequence, TextIO

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input: reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
        raise UsageError(message)


# ---- option types: each refuses bad values with a message saying what is wrong ------
def _whole(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def _steps(text: str) -> int:
    return _whole(text, 0)


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _noise(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _seed(text: str) -> int:
    return _whole(text, 0)


def _hidden(text: str) -> List[int]:
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    if not parts:
        raise argparse.ArgumentTypeError("expected layer sizes such as 16,16")
    sizes = []
    for p in parts:
        try:
            n = int(p)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected layer sizes such as 16,16, got {text!r}") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"layer sizes must be at least 1, got {n}")
        sizes.append(n)
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cmicrograd",
        description="micrograd's scalar autograd engine with its graph in C.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    t = commands.add_parser(
        "train",
        help="train an MLP on two-class data (micrograd's moons demo by default)",
        description="Train MLP(2, [16, 16, 1]) on 100 moons points for 100 steps, as micrograd's demo, "
        "or a network and data of your choice.",
    )
    t.add_argument("--steps", type=_steps, default=100, help="training steps (default 100)")
    t.add_argument("--lr", type=_positive_float, default=1.0,
                   help="initial learning rate; it decays linearly to 10%% (default 1.0)")
    t.add_argument("--seed", type=_seed, default=42, help="seed for data, weights and batches (default 42)")
    t.add_argument("--hidden", type=_hidden, default=None, help="hidden layer sizes (default 16,16)")
    t.add_argument("--activation", choices=("relu", "tanh", "sigmoid", "linear"), default=None,
                   help="hidden-layer activation (default relu)")
    t.add_argument("--batch-size", type=_positive_int, default=None,
                   help="rows per step, drawn at random (default: all rows)")
    t.add_argument("--engine", choices=("compiled", "python"), default=None,
                   help="compiled (default when built) or the pure-Python reference")
    t.add_argument("--data", metavar="FILE.csv", default=None,
                   help="train on a CSV of feature columns plus a last label column (-1/+1 or 0/1)")
    t.add_argument("--samples", type=_positive_int, default=100, help="moons points (default 100)")
    t.add_argument("--noise", type=_noise, default=0.1, help="moons noise (default 0.1)")
    t.add_argument("--alpha", type=_noise, default=1e-4, help="L2 regularization strength (default 1e-4)")
    t.add_argument("--save", metavar="MODEL.json", default=None, help="write the trained model as JSON")
    t.add_argument("--load", metavar="MODEL.json", default=None,
                   help="start from a model saved with --save (its architecture is used)")
    t.add_argument("--plot", metavar="BOUNDARY.png", default=None,
                   help='draw the decision boundary (needs matplotlib: pip install "cmicrograd[plot]")')
    t.add_argument("--eager", action="store_true",
                   help="build the graph anew every step instead of replaying a recording")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


# ---- progress ------------------------------------------------------------------------
class Progress:
    """A one-line progress bar with loss and accuracy; plain lines when not a terminal."""

    def __init__(self, total: int, stream: TextIO, enabled: bool = True) -> None:
        self.total = total
        self.stream = stream
        self.enabled = enabled and total > 0
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.every = max(1, total // 10)

    def update(self, k: int, loss: float, acc: float) -> None:
        if not self.enabled:
            return
        done = k + 1
        if not self.tty and done % self.every and done != self.total:
            return
        width = 24
        filled = int(width * done / self.total)
        bar = "#" * filled + "." * (width - filled)
        line = f"[{bar}] {done:>{len(str(self.total))}}/{self.total}  loss {loss:.4f}  accuracy {acc * 100:5.1f}%"
        if self.tty:
            self.stream.write("\r" + line)
            if done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# ---- the train command ---------------------------------------------------------------
def _engine_modules(choice: Optional[str]):
    import cmicrograd

    from .reference import nn as reference_nn

    if choice == "python":
        return reference_nn, "python"
    try:
        from . import _engine  # noqa: F401
    except ImportError as exc:
        if choice == "compiled":
            raise UsageError(f"the compiled engine is not available ({exc}); use --engine python") from None
        return reference_nn, "python"
    if cmicrograd.IMPLEMENTATION != "cython":
        if choice == "compiled":
            raise UsageError("CMICROGRAD_PURE_PYTHON is set, which forces the pure-Python engine: "
                             "unset it or use --engine python")
        return reference_nn, "python"
    from . import nn as compiled_nn
    return compiled_nn, "compiled"


def _unreadable(option: str, path: str, kind: str, exc: OSError) -> UsageError:
    """The one-line error for a file an option names that cannot be read."""
    if isinstance(exc, FileNotFoundError):
        return UsageError(f"{option}: no such file: {path}")
    if isinstance(exc, IsADirectoryError):
        return UsageError(f"{option}: {path} is a directory, not {kind}")
    return UsageError(f"{option}: cannot read {path}: {exc.strerror or exc}")


def _load_data(args: argparse.Namespace):
    from .datasets import DataError, load_csv, make_moons, signed_labels

    if args.data is None:
        return make_moons(args.samples, args.noise, seed=args.seed), f"{args.samples} moons points"
    try:
        X, y = load_csv(args.data)
        y = signed_labels(y)
    except OSError as exc:
        raise _unreadable("--data", args.data, "a CSV file", exc) from None
    except DataError as exc:
        raise UsageError(f"--data: {exc}") from None
    if len(X) < 1:
        raise UsageError(f"--data: {args.data} has no rows")
    return (X, y), f"{len(X)} rows of {os.path.basename(args.data)}"


def _model(args: argparse.Namespace, nn, nin: int):
    if args.load is not None:
        if args.hidden is not None or args.activation is not None:
            raise UsageError("--load takes the architecture from the model file; drop --hidden/--activation")
        try:
            model = nn.MLP.load(args.load)
        except OSError as exc:
            raise _unreadable("--load", args.load, "a model file", exc) from None
        except ValueError as exc:
            raise UsageError(f"--load: {exc}") from None
        if model.nin != nin:
            raise UsageError(f"--load: the model takes {model.nin} inputs but the data has {nin} features")
        if model.nouts[-1] != 1:
            raise UsageError(f"--load: the model has {model.nouts[-1]} outputs; training needs 1")
        return model
    random.seed(args.seed)  # micrograd draws weights from Python's global random
    hidden = args.hidden if args.hidden is not None else [16, 16]
    return nn.MLP(nin, hidden + [1], activation=args.activation or "relu")


def _describe(model) -> str:
    return f"MLP({model.nin}, {model.nouts})"


def run_train(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .train import train

    if args.plot is not None:
        from .plot import PLOT_HINT, require_matplotlib

        try:
            require_matplotlib()
        except ImportError:
            raise UsageError(f"--plot: {PLOT_HINT}") from None
    nn, engine_name = _engine_modules(args.engine)
    (X, y), data_name = _load_data(args)
    if args.batch_size is not None and args.batch_size > len(X):
        raise UsageError(f"--batch-size {args.batch_size} is larger than the data ({len(X)} rows)")
    if args.plot is not None and X.shape[1] != 2:
        raise UsageError(f"--plot draws 2 features; the data has {X.shape[1]}")
    model = _model(args, nn, X.shape[1])
    progress = Progress(args.steps, err, enabled=not args.quiet)
    try:
        result = train(model, X, y, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                       alpha=args.alpha, seed=args.seed, on_step=progress.update,
                       compiled=not args.eager)
    except ArithmeticError as exc:
        err.write(f"cmicrograd: training diverged: {exc} (try a smaller --lr)\n")
        return 1
    out.write(
        f"trained {_describe(model)} on {data_name} for {args.steps} steps in "
        f"{result.seconds:.2f} s ({engine_name} engine, {'eager' if args.eager else 'compiled step'}): "
        f"loss {result.final_loss:.4f}, "
        f"accuracy {result.final_accuracy * 100:.1f}%\n"
    )
    if args.save is not None:
        try:
            model.save(args.save)
        except OSError as exc:
            raise UsageError(f"--save: cannot write {args.save}: {exc.strerror or exc}") from None
        out.write(f"saved the model to {args.save}\n")
    if args.plot is not None:
        from .plot import plot_decision_boundary

        try:
            plot_decision_boundary(model, X, y, args.plot,
                                   title=f"{_describe(model)}: {result.final_accuracy * 100:.0f}% accuracy")
        except OSError as exc:
            raise UsageError(f"--plot: cannot write {args.plot}: {exc.strerror or exc}") from None
        out.write(f"wrote the decision boundary to {args.plot}\n")
    return 0


def main(argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None,
         err: Optional[TextIO] = None) -> int:
    """Run the command line; returns the exit code."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        if args.command is None:
            raise UsageError("choose a command: train (see cmicrograd --help)")
        return run_train(args, out, err)
    except UsageError as exc:
        err.write(f"cmicrograd: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("cmicrograd: interrupted\n")
        return 130


__all__ = ["main", "build_parser"]
