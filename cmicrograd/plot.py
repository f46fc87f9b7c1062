"""The decision-boundary picture of micrograd's demo, two classes or K regions (needs
matplotlib: ``pip install "cmicrograd[plot]"``)."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

PLOT_HINT = 'plotting needs matplotlib: pip install "cmicrograd[plot]"'


def require_matplotlib() -> None:
    """ImportError with the install hint if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(PLOT_HINT) from None


def plot_path(path: Union[str, "os.PathLike[str]"]) -> str:
    """The file a plot of ``path`` is written to (``.png`` added when it has no
    suffix), after checking that matplotlib can write that format here (a tiny figure
    is drawn into memory): ValueError saying why not, before any work is done."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    name = os.fspath(path)
    stem, suffix = os.path.splitext(name)
    if not suffix or suffix == ".":
        name, suffix = stem + ".png", ".png"
    fmt = suffix[1:].lower()
    fig = Figure(figsize=(1, 1))
    fig.suptitle("x")  # some writers need more for text (.pgf: LaTeX): find out now
    supported = FigureCanvasAgg(fig).get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"matplotlib cannot write .{fmt} files; use one of "
                         + ", ".join("." + f for f in sorted(supported)))
    try:
        fig.savefig(io.BytesIO(), format=fmt)
    except Exception as exc:  # e.g. .pgf without LaTeX: whatever the writer needs is missing
        raise ValueError(f"matplotlib cannot write .{fmt} files here: {exc}") from None
    return name


def predict(model: Any, X: NDArray[Any]) -> NDArray[Any]:
    """The model's outputs for many rows at once, with numpy (no graph is built): one
    score per row for a one-output model, a row of K logits for a K-output one.

    Same formulas as the Values compute; for drawing, not for bit-exact results.
    """
    h = np.asarray(X, dtype=float)
    with np.errstate(all="ignore"):  # overflow gives inf / nan, as the Values would
        return _forward(model, h)


def _forward(model: Any, h: NDArray[Any]) -> NDArray[Any]:
    for layer in model.layers:
        W = np.array([[w.data for w in n.w] for n in layer.neurons])
        b = np.array([n.b.data for n in layer.neurons])
        z = h @ W.T + b
        activation = layer.neurons[0].activation
        if activation == "relu":
            z = np.where(z < 0, 0.0, z)
        elif activation == "tanh":
            z = np.tanh(z)
        elif activation == "sigmoid":
            z = 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))
        h = z
    return h[:, 0] if h.shape[1] == 1 else h


def predict_classes(model: Any, X: NDArray[Any]) -> NDArray[Any]:
    """The class the model picks for each row: 1 / -1 by the sign of a one-output
    model's score, the index of the largest logit of a K-output one."""
    scores = predict(model, X)
    return np.where(scores > 0, 1, -1) if scores.ndim == 1 else np.argmax(scores, axis=1)


def plot_decision_boundary(model: Any, X: NDArray[Any], y: NDArray[Any],
                           path: Union[str, "os.PathLike[str]"], title: Optional[str] = None,
                           resolution: int = 250) -> str:
    """Draw the model's decision regions (score > 0 vs < 0 for one output, the argmax's
    K regions for K outputs) with the points, and return the file written (see
    ``plot_path``: a path without suffix gets ``.png``)."""
    path = plot_path(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"the decision boundary is drawn for 2 features; the data has {X.shape[1] if X.ndim == 2 else X.ndim}")
    x_min, x_max = X[:, 0].min() - 1, X[:, 0].max() + 1
    y_min, y_max = X[:, 1].min() - 1, X[:, 1].max() + 1
    xx, yy = np.meshgrid(np.linspace(x_min, x_max, resolution), np.linspace(y_min, y_max, resolution))
    regions = predict_classes(model, np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
    fig = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    classes = model.nouts[-1]
    if classes == 1:
        ax.contourf(xx, yy, regions > 0, cmap="Spectral", alpha=0.8)
        ax.scatter(X[:, 0], X[:, 1], c=y, s=40, cmap="Spectral", edgecolors="k", linewidths=0.5)
    else:  # one colour per class, the same for its region and its points
        cmap = "tab10" if classes <= 10 else "tab20"
        levels = np.arange(classes + 1) - 0.5
        ax.contourf(xx, yy, regions, levels=levels, cmap=cmap, vmin=-0.5, vmax=classes - 0.5, alpha=0.5)
        ax.scatter(X[:, 0], X[:, 1], c=y, s=30, cmap=cmap, vmin=-0.5, vmax=classes - 0.5,
                   edgecolors="k", linewidths=0.5)
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(y_min, y_max)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return path


__all__ = ["plot_decision_boundary", "plot_path", "predict", "predict_classes", "require_matplotlib"]
