"""Data to train on, made with numpy (no scikit-learn): two interleaving half-moons,
K-armed spirals, the 3-class yin-yang; and a user's CSV of feature columns plus a label
column.

Two-class labels are -1.0 / +1.0 (for a one-output model and the hinge loss); labels of
K classes are class indices 0..K-1 (for a K-output model and cross-entropy).
"""

from __future__ import annotations

import csv
import math
import os
from typing import TYPE_CHECKING, Any, List, Optional, Tuple, Union

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
    _check_count(n_samples, 2, "n_samples")
    noise = _check_noise(noise)
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


def make_spiral(n_samples: int = 300, classes: int = 3, noise: float = 0.2,
                seed: Optional[int] = 1337) -> Tuple[NDArray[Any], NDArray[Any]]:
    """``classes`` interleaved spiral arms (CS231n's spiral data), ``n_samples`` points
    shared as evenly as possible.

    Arm j holds points at radius r from 0 to 1 and angle ``4 r + 2 pi j / classes``
    radians plus Gaussian noise of standard deviation ``noise`` (radians). Returns ``X``
    (n_samples x 2 floats) and ``y`` (ints, class indices 0..classes-1), shuffled; the
    same seed gives the same points.
    """
    classes = _check_count(classes, 2, "classes")
    n_samples = _check_count(n_samples, classes, "n_samples", f" (one point per class; classes is {classes})")
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for j in range(classes):
        n = n_samples // classes + (j < n_samples % classes)
        r = np.linspace(0.0, 1.0, n)
        t = 4.0 * r + 2.0 * np.pi * j / classes + rng.normal(scale=noise, size=n)
        parts.append(np.column_stack([r * np.sin(t), r * np.cos(t)]))
        labels.append(np.full(n, j))
    order = rng.permutation(n_samples)
    return np.vstack(parts)[order], np.concatenate(labels)[order]


# the yin-yang's geometry in a disk of radius 1 (Kriener et al.'s Yin-Yang dataset, scaled
# by 2): the S-curve is two half-circles of radius 0.5, the dots have radius 0.2
_LOBE, _DOT = 0.5, 0.2


def make_yinyang(n_samples: int = 300, noise: float = 0.0,
                 seed: Optional[int] = 1337) -> Tuple[NDArray[Any], NDArray[Any]]:
    """The yin-yang symbol as 3 classes (Kriener et al., 2021): yin (0), yang (1) and
    the two dots (2), ``n_samples`` points drawn uniformly in the unit disk with the
    classes balanced (as evenly as possible).

    ``noise`` adds Gaussian noise of that standard deviation to the points after they
    are labelled (the default 0 keeps the classes cleanly separated). Returns ``X``
    (n_samples x 2 floats) and ``y`` (ints 0, 1, 2), shuffled; the same seed gives the
    same points.
    """
    n_samples = _check_count(n_samples, 3, "n_samples", " (one point per class)")
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    wanted = [n_samples // 3 + (j < n_samples % 3) for j in range(3)]
    found: List[List[Any]] = [[], [], []]
    while any(len(f) < w for f, w in zip(found, wanted)):
        # candidates uniform in the disk; the dots cover 8% of it, so draw plenty
        xy = rng.uniform(-1.0, 1.0, size=(4 * n_samples + 64, 2))
        xy = xy[(xy**2).sum(axis=1) <= 1.0]
        for point, label in zip(xy, _yinyang_class(xy)):
            if len(found[label]) < wanted[label]:
                found[label].append(point)
    X = np.vstack([np.array(f).reshape(-1, 2) for f in found])
    y = np.concatenate([np.full(w, j) for j, w in enumerate(wanted)])
    order = rng.permutation(n_samples)
    X, y = X[order], y[order]
    if noise > 0:
        X = X + rng.normal(scale=noise, size=X.shape)
    return X, y


def _yinyang_class(xy: NDArray[Any]) -> NDArray[Any]:
    x, y = xy[:, 0], xy[:, 1]
    top = np.hypot(x, y - _LOBE)  # distance to the upper lobe's centre
    bottom = np.hypot(x, y + _LOBE)
    label = np.where(x < 0, 0, 1)  # left yin, right yang ...
    label = np.where(top < _LOBE, 0, label)  # ... but the upper lobe is yin's
    label = np.where(bottom < _LOBE, 1, label)  # and the lower one yang's
    return np.where((top < _DOT) | (bottom < _DOT), 2, label)


def _check_count(n: Any, minimum: int, what: str, why: str = "") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{what} must be an int of at least {minimum}{why}, got {n!r}")
    return int(n)


def _check_noise(noise: Any) -> float:
    value = float(noise)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return value


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


def class_indices(y: NDArray[Any], classes: Optional[int] = None) -> Tuple[NDArray[Any], int]:
    """Labels of K classes as class indices (an int array) and K.

    Labels must be whole numbers from 0. With ``classes`` given, K is that and every
    label must be below it (a class may have no rows). Without it, K is the largest
    label + 1 and every class 0..K-1 must occur: a class no row has usually means
    labels counted from 1. DataError (a ValueError) naming the bad label otherwise.
    """
    values = np.asarray(y, dtype=float).ravel()
    if values.size == 0:
        raise DataError("no labels")
    bad = values[(values != np.floor(values)) | (values < 0)]
    if bad.size:
        raise DataError(f"labels must be class indices 0, 1, 2, ...; found {float(bad[0])!r}"
                        + (" (two classes may be labelled -1/+1 or 0/1)" if bad[0] == -1 else ""))
    top = int(values.max())
    if classes is not None:
        if top >= classes:
            raise DataError(f"found label {top}, but there are {classes} classes (labels 0..{classes - 1})")
        return values.astype(np.int64), classes
    missing = sorted(set(range(top + 1)) - set(values.astype(np.int64).tolist()))
    if missing:
        hint = " (class indices start at 0: are the labels counted from 1?)" if missing[0] == 0 else ""
        raise DataError(f"labels run to {top} but no row has label {missing[0]}{hint}")
    return values.astype(np.int64), top + 1


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


__all__ = ["make_moons", "make_spiral", "make_yinyang", "load_csv", "save_csv", "signed_labels",
           "class_indices", "DataError"]
