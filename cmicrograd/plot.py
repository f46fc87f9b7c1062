"""The decision-boundary picture of micrograd's demo (needs matplotlib:
``pip install "cmicrograd[plot]"``)."""

from __future__ import annotations

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


def predict(model: Any, X: NDArray[Any]) -> NDArray[Any]:
    """The model's scores for many rows at once, with numpy (no graph is built).

    Same formulas as the Values compute; for drawing, not for bit-exact results.
    """
    h = np.asarray(X, dtype=float)
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
    return h[:, 0]


def plot_decision_boundary(model: Any, X: NDArray[Any], y: NDArray[Any],
                           path: Union[str, "os.PathLike[str]"], title: Optional[str] = None,
                           resolution: int = 250) -> None:
    """Write a PNG of the model's decision regions (score > 0 vs < 0) with the points."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"the decision boundary is drawn for 2 features; the data has {X.shape[1] if X.ndim == 2 else X.ndim}")
    x_min, x_max = X[:, 0].min() - 1, X[:, 0].max() + 1
    y_min, y_max = X[:, 1].min() - 1, X[:, 1].max() + 1
    xx, yy = np.meshgrid(np.linspace(x_min, x_max, resolution), np.linspace(y_min, y_max, resolution))
    scores = predict(model, np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
    fig = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.contourf(xx, yy, scores > 0, cmap="Spectral", alpha=0.8)
    ax.scatter(X[:, 0], X[:, 1], c=y, s=40, cmap="Spectral", edgecolors="k", linewidths=0.5)
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(y_min, y_max)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)


__all__ = ["plot_decision_boundary", "predict", "require_matplotlib"]
