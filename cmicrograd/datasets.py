"""Data to train on: two interleaving half-moons (made with numpy, no scikit-learn), and
a user's CSV of feature columns plus a label column."""

from __future__ import annotations

import csv
import math
import os
from typing import TYPE_CHECKING, Any, Optional, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

PathLike = Union[str, "os.PathLike[str]"]


def make_moons(n_samples: int = 100, noise: float = 0.1, seed: Optional[int] = 1337) -> Tuple[NDArray[Any], NDArray[Any]]:
    """Two interleaving half circles, as scikit-learn's make_moons draws them.

    Returns ``X`` (n_samples x 2 floats) and ``y`` (n_samples floats in {-1.0, +1.0}),
    shuffled, with Gaussian noise of standard deviation ``noise``. The same seed gives
    the same points (numpy's default_rng).
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"n_samples must be an int of at least 2, got {n_samples!r}")
    noise = float(noise)
    if not (noise >= 0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    X = np.vstack([
        np.column_stack([np.cos(t_out), np.sin(t_out)]),
        np.column_stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5]),
    ])
    y = np.concatenate([-np.ones(n_out), np.ones(n_in)])
    order = rng.permutation(n_samples)
    X, y = X[order], y[order]
    if noise > 0:
        X = X + rng.normal(scale=noise, size=X.shape)
    return X, y


class DataError(ValueError):
    """A data file that cannot be used, with the file, line and reason in the message."""


def load_csv(path: PathLike, label_column: int = -1) -> Tuple[NDArray[Any], NDArray[Any]]:
    """Features and labels from a CSV file: numeric columns, one of them the label
    (the last by default). A first row that is not numeric is taken as a header.

    The file is parsed as data only. Raises DataError (a ValueError) naming the line
    and the problem for an empty file, ragged rows, non-numeric or non-finite cells,
    and OSError if the file cannot be read.
    """
    name = os.fspath(path)
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        try:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not row or all(not cell.strip() for cell in row):
                    continue
                rows.append((lineno, row))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{name}: not a readable CSV file: {exc}") from None
    if rows and not _numeric_row(rows[0][1]):
        rows = rows[1:]  # a header
    if not rows:
        raise DataError(f"{name}: no data rows")
    width = len(rows[0][1])
    if width < 2:
        raise DataError(f"{name}: need at least one feature column and a label column, found {width} column")
    values = np.empty((len(rows), width))
    for r, (lineno, row) in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{name}: line {lineno} has {len(row)} columns, expected {width}")
        for c, cell in enumerate(row):
            try:
                x = float(cell)
            except ValueError:
                raise DataError(f"{name}: line {lineno}, column {c + 1}: {cell.strip()!r} is not a number") from None
            if not math.isfinite(x):
                raise DataError(f"{name}: line {lineno}, column {c + 1}: {cell.strip()!r} is not finite")
            values[r, c] = x
    if not -width <= label_column < width:
        raise DataError(f"{name}: there is no column {label_column} (the file has {width})")
    y = values[:, label_column]
    X = np.delete(values, label_column % width, axis=1)
    return X, y


def signed_labels(y: NDArray[Any]) -> NDArray[Any]:
    """Two-class labels as -1.0 / +1.0: {-1, 1} stay, {0, 1} map 0 to -1.
    DataError for anything else."""
    classes = sorted(set(np.asarray(y, dtype=float).tolist()))
    if classes and set(classes) <= {-1.0, 1.0}:
        return np.asarray(y, dtype=float)
    if classes and set(classes) <= {0.0, 1.0}:
        return np.where(np.asarray(y) > 0, 1.0, -1.0)
    shown = ", ".join(repr(c) for c in classes[:5]) + (", ..." if len(classes) > 5 else "")
    raise DataError(f"labels must be two classes, -1/+1 or 0/1; found {shown}")


def save_csv(path: PathLike, X: NDArray[Any], y: NDArray[Any]) -> None:
    """Write features and labels (the last column) as CSV with a header."""
    X = np.asarray(X, dtype=float)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([f"x{i}" for i in range(X.shape[1])] + ["label"])
        for row, label in zip(X.tolist(), np.asarray(y, dtype=float).tolist()):
            w.writerow([repr(v) for v in row] + [repr(label)])


def _numeric_row(row: "list[str]") -> bool:
    try:
        for cell in row:
            float(cell)
    except ValueError:
        return False
    return True


__all__ = ["make_moons", "load_csv", "save_csv", "signed_labels", "DataError"]
