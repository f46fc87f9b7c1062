"""The ``cmicrograd`` command: ``cmicrograd train`` trains an MLP as micrograd's demo does,
on the moons, a spiral, the yin-yang or a CSV file.

Bad input (options, data files, model files, sizes that cannot fit in memory, output
files that cannot be written) is answered with one line on stderr and exit code 2,
never a traceback, and is found before training starts. A run whose loss becomes NaN or
infinite stops with one line and exit code 1. Progress and warnings go to stderr, the
summary to stdout.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, TextIO, Tuple

# Training never calls BLAS; numpy's OpenBLAS threads would only spin on the other cores
# and slow the run down. Users can still choose otherwise in the environment (numpy is
# imported later, inside the commands).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

EXIT_USAGE = 2
EXIT_DIVERGED = 1


class UsageError(Exception):
    """Bad input: reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
        raise UsageError(message)


@dataclass
class Defaults:
    """What a dataset trains with unless options say otherwise."""

    samples: int
    noise: float
    classes: int
    steps: int
    optimizer: str
    hidden: List[int] = field(default_factory=lambda: [16, 16])


# moons: micrograd's demo. spiral, yin-yang: 300 points and Adam reach >= 99% training
# accuracy in ~1-2 s (measured over several seeds on a 2-vCPU VM).
DATASETS = {
    "moons": Defaults(samples=100, noise=0.1, classes=2, steps=100, optimizer="sgd"),
    "spiral": Defaults(samples=300, noise=0.2, classes=3, steps=300, optimizer="adam"),
    "yinyang": Defaults(samples=300, noise=0.0, classes=3, steps=300, optimizer="adam"),
}


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


def _samples(text: str) -> int:
    return _whole(text, 2)


def _classes(text: str) -> int:
    return _whole(text, 2)


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
    from . import __version__
    from .train import DEFAULT_LR

    parser = _Parser(
        prog="cmicrograd",
        description="micrograd's scalar autograd engine with its graph in C.",
    )
    parser.add_argument("--version", action="version", version=f"cmicrograd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    t = commands.add_parser(
        "train",
        help="train an MLP on two or more classes (micrograd's moons demo by default)",
        description="Train MLP(2, [16, 16, 1]) on 100 moons points for 100 steps, as micrograd's demo, "
        "or a network and data of your choice. Defaults per dataset: moons 100 points, noise 0.1, "
        "100 steps, sgd; spiral 300 points in 3 classes, noise 0.2, 300 steps, adam; yinyang 300 "
        "points in 3 classes, noise 0, 300 steps, adam; all with hidden layers 16,16. "
        "Two classes train a one-output model with micrograd's hinge loss, K >= 3 classes a "
        "K-output model with cross-entropy.",
    )
    data = t.add_mutually_exclusive_group()
    data.add_argument("--dataset", choices=tuple(DATASETS), default=None,
                      help="generated data to train on (default moons)")
    data.add_argument("--data", metavar="FILE.csv", default=None,
                      help="train on a CSV of feature columns plus a last label column: -1/+1 or 0/1 for "
                      "two classes, class indices 0..K-1 for K")
    t.add_argument("--classes", type=_classes, default=None,
                   help="number of classes: spiral any K >= 2 (default 3); moons is 2, yinyang 3; "
                   "for --data inferred from the labels")
    t.add_argument("--samples", type=_samples, default=None,
                   help="points to generate (default 100 for moons, 300 for spiral and yinyang)")
    t.add_argument("--noise", type=_noise, default=None,
                   help="noise of the generated points (default moons 0.1, spiral 0.2 radians, yinyang 0)")
    t.add_argument("--steps", type=_steps, default=None,
                   help="training steps (default 100 for moons and two-class --data, 300 otherwise)")
    t.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default=None,
                   help="the update rule (default sgd for two classes, adam for more)")
    t.add_argument("--lr", type=_positive_float, default=None,
                   help="initial learning rate; it decays linearly to 10%% (default "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_LR.items()) + ")")
    t.add_argument("--seed", type=_seed, default=42, help="seed for data, weights and batches (default 42)")
    t.add_argument("--hidden", type=_hidden, default=None, help="hidden layer sizes (default 16,16)")
    t.add_argument("--activation", choices=("relu", "tanh", "sigmoid", "linear"), default=None,
                   help="hidden-layer activation (default relu)")
    t.add_argument("--batch-size", type=_positive_int, default=None,
                   help="rows per step, drawn at random (default: all rows)")
    t.add_argument("--alpha", type=_noise, default=1e-4, help="L2 regularization strength (default 1e-4)")
    t.add_argument("--engine", choices=("compiled", "python"), default=None,
                   help="compiled (default when built) or the pure-Python reference")
    steps_kind = t.add_mutually_exclusive_group()
    steps_kind.add_argument("--eager", action="store_true",
                            help="build the graph anew every step")
    steps_kind.add_argument("--compiled", action="store_true",
                            help="record the graph once and replay it (default: decided after the first "
                            "step, by whether recording pays for the remaining steps)")
    t.add_argument("--save", metavar="MODEL.json", default=None, help="write the trained model as JSON")
    t.add_argument("--load", metavar="MODEL.json", default=None,
                   help="start from a model saved with --save (its architecture is used)")
    t.add_argument("--plot", metavar="BOUNDARY.png", default=None,
                   help="draw the decision regions; the suffix picks the format, .png if none "
                   '(needs matplotlib: pip install "cmicrograd[plot]")')
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


# ---- checks made before anything is trained ------------------------------------------
# Bytes one training step holds per (parameter x row of its batch), as lower bounds:
# measured (RSS) with MLP(2, [64, 64, 1]) on 200 rows, the compiled engine's graph takes
# ~70 (its recording as much again), the pure engine's ~500.
GRAPH_BYTES = {"compiled": 64, "python": 400}


def _available_memory() -> Optional[int]:
    """Bytes of memory available now (Linux, Windows), or the machine's total (other
    Unixes), or None if nothing says."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if sys.platform == "win32":
        import ctypes

        class MemoryStatus(ctypes.Structure):
            _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                        ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                        ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                        ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                        ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

        status = MemoryStatus()
        status.dwLength = ctypes.sizeof(MemoryStatus)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return int(status.ullAvailPhys)
        return None
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return ""  # unreachable


def _check_memory(sizes: List[int], rows: int, engine_name: str) -> None:
    """Refuse a network and data whose graph cannot fit in memory. Every row counts, not
    only a batch's: the final loss and accuracy are measured on all of them at once."""
    params = sum((sizes[i] + 1) * sizes[i + 1] for i in range(len(sizes) - 1))
    need = params * rows * GRAPH_BYTES[engine_name]
    available = _available_memory()
    if available is not None and need > available:
        raise UsageError(f"MLP({sizes[0]}, {sizes[1:]}) has {params:,} parameters; its graph over {rows:,} "
                         f"rows needs at least {_bytes(need)} of memory and {_bytes(available)} is available "
                         "(use smaller --hidden or --samples)")


def _check_writable(option: str, path: str) -> None:
    """Refuse an output path that cannot be written, before training."""
    if os.path.isdir(path):
        raise UsageError(f"{option}: cannot write {path}: it is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{option}: cannot write {path}: no such directory {parent}")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"{option}: cannot write {path}: permission denied")


def _plot_file(path: str) -> str:
    from .plot import PLOT_HINT, plot_path

    if os.path.isdir(path):
        raise UsageError(f"--plot: cannot write {path}: it is a directory")
    try:
        name = plot_path(path)
    except ImportError:
        raise UsageError(f"--plot: {PLOT_HINT}") from None
    except ValueError as exc:
        raise UsageError(f"--plot: {exc}") from None
    _check_writable("--plot", name)
    return name


def _unreadable(option: str, path: str, kind: str, exc: OSError) -> UsageError:
    """The one-line error for a file an option names that cannot be read."""
    if isinstance(exc, FileNotFoundError):
        return UsageError(f"{option}: no such file: {path}")
    if isinstance(exc, IsADirectoryError):
        return UsageError(f"{option}: {path} is a directory, not {kind}")
    return UsageError(f"{option}: cannot read {path}: {exc.strerror or exc}")


# ---- the train command ---------------------------------------------------------------
def _engine_modules(choice: Optional[str]) -> Tuple[Any, str]:
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


def _outputs(classes: int) -> int:
    """Model outputs for that many classes: one score for two (the hinge), K logits for K."""
    return 1 if classes == 2 else classes


def _generated_classes(args: argparse.Namespace, name: str) -> int:
    fixed = {"moons": 2, "yinyang": 3}.get(name)
    if args.classes is not None and fixed is not None and args.classes != fixed:
        raise UsageError(f"--classes: {name} has {fixed} classes; --classes {args.classes} needs --dataset spiral "
                         "or --data")
    return args.classes or DATASETS[name].classes


def _generate(name: str, samples: int, noise: float, classes: int, seed: int):
    from .datasets import make_moons, make_spiral, make_yinyang

    if samples < classes:
        raise UsageError(f"--samples: {samples} points cannot hold {classes} classes")
    if name == "moons":
        return make_moons(samples, noise, seed=seed)
    if name == "spiral":
        return make_spiral(samples, classes, noise, seed=seed)
    return make_yinyang(samples, noise, seed=seed)


def _csv_labels(path: str, y, classes: Optional[int]):
    """(labels, K) from a CSV's label column: two classes as -1/+1, K as indices."""
    import numpy as np

    from .datasets import DataError, class_indices, signed_labels

    values = set(np.unique(y).tolist())
    if classes in (None, 2) and (values <= {-1.0, 1.0} or values <= {0.0, 1.0}):
        return signed_labels(y), 2
    if classes == 2:
        raise UsageError(f"--data: {path}: --classes 2 needs labels -1/+1 or 0/1")
    try:
        return class_indices(y, classes)
    except DataError as exc:
        kinds = "" if classes else "labels must be two classes (-1/+1 or 0/1) or class indices 0..K-1: "
        raise UsageError(f"--data: {path}: {kinds}{exc}") from None


def _load_csv(path: str):
    from .datasets import DataError, load_csv

    try:
        return load_csv(path)
    except OSError as exc:
        raise _unreadable("--data", path, "a CSV file", exc) from None
    except DataError as exc:
        raise UsageError(f"--data: {exc}") from None


def _load_model(path: str, nn):
    try:
        return nn.MLP.load(path)
    except OSError as exc:
        raise _unreadable("--load", path, "a model file", exc) from None
    except ValueError as exc:
        raise UsageError(f"--load: {exc}") from None


def _describe(model) -> str:
    return f"MLP({model.nin}, {model.nouts})"


def _warnings(y, classes: int, model, X, trained: bool) -> List[str]:
    """What makes a 100% accuracy meaningless: one class, too few points, or a model
    that is right everywhere before training."""
    import numpy as np

    from .plot import predict_classes

    present = len(np.unique(y))
    if present == 1:
        return [f"the data has only one class (label {y[0]:g}): any model that always predicts it is 100% right"]
    if len(y) < 2 * classes:
        return [f"only {len(y)} points for {classes} classes: a perfect score on so few says little"]
    if not trained and np.array_equal(predict_classes(model, X), y):
        return ["the untrained model already classifies every point right: the accuracy says little about training"]
    return []


def run_train(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import numpy as np

    from .train import TrainingDiverged, train

    # -- options that depend on each other, outputs, engine: before any work
    name = args.dataset or ("moons" if args.data is None else None)
    if args.data is not None and (args.samples is not None or args.noise is not None):
        raise UsageError("--samples and --noise make generated data; --data reads yours")
    if args.load is not None and (args.hidden is not None or args.activation is not None):
        raise UsageError("--load takes the architecture from the model file; drop --hidden/--activation")
    plot_file = _plot_file(args.plot) if args.plot is not None else None
    if args.save is not None:
        _check_writable("--save", args.save)
    nn, engine_name = _engine_modules(args.engine)
    loaded = _load_model(args.load, nn) if args.load is not None else None

    # -- data: generated ones are sized (and refused if they cannot fit) before they exist
    if name is not None:
        defaults = DATASETS[name]
        classes = _generated_classes(args, name)
        samples = args.samples if args.samples is not None else defaults.samples
        nin = 2
    else:
        X, y = _load_csv(args.data)
        y, classes = _csv_labels(args.data, y, args.classes)
        defaults = DATASETS["moons" if classes == 2 else "spiral"]
        samples, nin = len(X), X.shape[1]
    if args.batch_size is not None and args.batch_size > samples:
        raise UsageError(f"--batch-size {args.batch_size} is larger than the data ({samples} rows)")
    if plot_file is not None and nin != 2:
        raise UsageError(f"--plot draws 2 features; the data has {nin}")
    hidden = args.hidden if args.hidden is not None else defaults.hidden
    sizes = [loaded.nin] + loaded.nouts if loaded is not None else [nin] + hidden + [_outputs(classes)]
    _check_memory(sizes, samples, engine_name)
    if name is not None:
        noise = args.noise if args.noise is not None else defaults.noise
        X, y = _generate(name, samples, noise, classes, args.seed)
        if not np.isfinite(X).all():
            raise UsageError(f"--noise {noise:g} is too large: some points are not finite numbers")
        data_name = f"{samples} {'yin-yang' if name == 'yinyang' else name} points"
    else:
        data_name = f"{samples} row{'' if samples == 1 else 's'} of {os.path.basename(args.data)}"
    if classes > 2:
        data_name += f" in {classes} classes"

    # -- the model
    if loaded is not None:
        if loaded.nin != nin:
            raise UsageError(f"--load: the model takes {loaded.nin} inputs but the data has {nin} features")
        if loaded.nouts[-1] != _outputs(classes):
            raise UsageError(f"--load: the model has {loaded.nouts[-1]} outputs; {classes} classes need "
                             f"{_outputs(classes)}")
        model = loaded
    else:
        random.seed(args.seed)  # micrograd draws weights from Python's global random
        model = nn.MLP(nin, hidden + [_outputs(classes)], activation=args.activation or "relu")
    for warning in _warnings(y, classes, model, X, trained=loaded is not None):
        err.write(f"cmicrograd: warning: {warning}\n")

    # -- training
    steps = args.steps if args.steps is not None else defaults.steps
    optimizer = args.optimizer or defaults.optimizer
    compiled = True if args.compiled else False if args.eager else None
    try:
        result = train(model, X, y, steps=steps, lr=args.lr, batch_size=args.batch_size, alpha=args.alpha,
                       seed=args.seed, compiled=compiled, optimizer=optimizer,
                       progress=False if args.quiet else err)
    except ArithmeticError as exc:  # TrainingDiverged, or an overflow on the way there
        reason = str(exc) if isinstance(exc, TrainingDiverged) else f"{type(exc).__name__}: {exc}"
        err.write(f"cmicrograd: error: training diverged: {reason} (try a smaller --lr)\n")
        return EXIT_DIVERGED
    from .progress import format_number

    how = ("compiled step" if result.compiled else "eager" if compiled is False or steps == 0
           else "eager, compiling would not pay")
    out.write(
        f"trained {_describe(model)} on {data_name} for {steps} step{'' if steps == 1 else 's'} in "
        f"{result.seconds:.2f} s ({engine_name} engine, {how}, {optimizer}): "
        f"loss {format_number(result.final_loss)}, accuracy {result.final_accuracy * 100:.1f}%\n"
    )
    if args.save is not None:
        try:
            model.save(args.save)
        except OSError as exc:
            raise UsageError(f"--save: cannot write {args.save}: {exc.strerror or exc}") from None
        out.write(f"saved the model to {args.save}\n")
    if plot_file is not None:
        from .plot import plot_decision_boundary

        try:
            plot_decision_boundary(model, X, y, plot_file,
                                   title=f"{_describe(model)}: {result.final_accuracy * 100:.0f}% accuracy")
        except (OSError, ValueError, RuntimeError) as exc:
            raise UsageError(f"--plot: cannot write {plot_file}: {getattr(exc, 'strerror', None) or exc}") from None
        out.write(f"wrote the decision boundary to {plot_file}\n")
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
        except SystemExit as exc:  # --help, --version
            return int(exc.code or 0)
        if args.command is None:
            raise UsageError("choose a command: train (see cmicrograd --help)")
        return run_train(args, out, err)
    except UsageError as exc:
        err.write(f"cmicrograd: error: {exc}\n")
        return EXIT_USAGE
    except MemoryError:
        err.write("cmicrograd: error: out of memory: use smaller --hidden, --samples or --batch-size\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("cmicrograd: interrupted\n")
        return 130


__all__ = ["main", "build_parser", "DATASETS"]
