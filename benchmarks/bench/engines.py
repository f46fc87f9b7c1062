"""The model and its training step on every engine, all from the same initial weights:
cmicrograd (compiled or reference), its compiled replay, micrograd 0.1.0 and PyTorch.

A step factory returns a zero-argument callable that runs ONE training step (the demo's
loss with ALPHA, zero_grad, backward, SGD with LR) and returns that step's loss as a
float; the callable keeps its model (`.model`) or tensors (`.params`) for the checks.
"""

from __future__ import annotations

import random
from typing import Any, Callable, List, Sequence

import numpy as np

import cmicrograd
import cmicrograd._engine as compiled_engine
import cmicrograd.reference.nn as reference_nn
from cmicrograd.optim import SGD
from cmicrograd.train import batch_loss

from .config import ALPHA, HIDDEN, LR, SEED

# ---- the weights every engine starts from -----------------------------------------------
def initial_weights(hidden: Sequence[int] = HIDDEN) -> List[float]:
    """MLP(2, hidden + [1])'s initial weights after random.seed(SEED) (row 1's MLP(2,
    [16, 16, 1]) by default), in micrograd's parameter order (layer -> neuron -> (w...,
    b)); every engine starts from these."""
    random.seed(SEED)
    return [p.data for p in reference_nn.MLP(2, list(hidden) + [1]).parameters()]


def load_weights(params: Sequence[Any], weights: Sequence[float]) -> None:
    assert len(params) == len(weights)
    for p, w in zip(params, weights):
        p.data = w


def layer_blocks(weights: Sequence[float], sizes: Sequence[int]):
    """[(rows of w, biases)] per layer from the flat micrograd-ordered weights."""
    blocks, i = [], 0
    for nin, nout in zip(sizes[:-1], sizes[1:]):
        rows, bias = [], []
        for _ in range(nout):
            rows.append(list(weights[i:i + nin]))
            bias.append(weights[i + nin])
            i += nin + 1
        blocks.append((rows, bias))
    assert i == len(weights)
    return blocks


# ---- cmicrograd: eager and replayed -----------------------------------------------------
def cm_model(nn_module: Any, weights: Sequence[float], hidden: Sequence[int] = HIDDEN) -> Any:
    """An MLP(2, hidden + [1]) of `nn_module` (cmicrograd.nn or cmicrograd.reference.nn)
    with `weights`."""
    random.seed(SEED)
    model = nn_module.MLP(2, list(hidden) + [1])
    load_weights(model.parameters(), weights)
    return model


def cm_step_factory(nn_module: Any, weights: Sequence[float], X: np.ndarray,
                    y: np.ndarray) -> Callable[[], float]:
    """One cmicrograd training step: batch_loss, zero_grad, backward, SGD."""
    model = cm_model(nn_module, weights)
    opt = SGD(model.parameters(), lr=LR)

    def step() -> float:
        loss, _acc = batch_loss(model, X, y, ALPHA)
        model.zero_grad()
        loss.backward()
        opt.step()
        return loss.data

    step.model = model  # type: ignore[attr-defined]
    return step


def replay_step_factory(model: Any, X: np.ndarray, y: np.ndarray) -> Callable[[], float]:
    """cm_step_factory's step through cmicrograd.compile's replay, on `model` (a
    cmicrograd.nn.MLP): the step's graph is recorded once, with the inputs as Value
    leaves (they never change), and each step replays it. Bit-identical to building it
    anew (the checks compare the losses)."""
    loss, _acc = batch_loss(model, X, y, ALPHA)
    graph = cmicrograd.compile(loss)
    params = model.parameters()
    engine = compiled_engine

    def step() -> float:
        value = graph.forward()
        engine.zero_grad(params)
        graph.backward()
        engine.sgd_update(params, LR)
        return value

    step.model = model  # type: ignore[attr-defined]
    return step


# ---- micrograd 0.1.0 (optional) --------------------------------------------------------
def micrograd_available() -> bool:
    try:
        import micrograd.engine  # noqa: F401
        import micrograd.nn  # noqa: F401
    except ImportError:
        return False
    return True


def mg_model(weights: Sequence[float]) -> Any:
    from micrograd.nn import MLP
    random.seed(SEED)
    model = MLP(2, HIDDEN + [1])
    load_weights(model.parameters(), weights)
    return model


def mg_forward(model: Any, Xl: List[List[float]], yl: List[float]):
    """micrograd's demo loss(), written with micrograd's own Value and MLP (inputs are
    Python floats: the demo passes numpy scalars, which makes micrograd slower still)."""
    from micrograd.engine import Value
    inputs = [list(map(Value, xrow)) for xrow in Xl]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(yl, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = ALPHA * sum((p * p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(yl, scores)]
    return total_loss, sum(accuracy) / len(accuracy)


def mg_step_factory(weights: Sequence[float], X: np.ndarray, y: np.ndarray) -> Callable[[], float]:
    """micrograd's demo training step (constant learning rate LR)."""
    model = mg_model(weights)
    Xl, yl = X.tolist(), y.tolist()

    def step() -> float:
        total_loss, _acc = mg_forward(model, Xl, yl)
        model.zero_grad()
        total_loss.backward()
        for p in model.parameters():
            p.data -= LR * p.grad
        return total_loss.data

    step.model = model  # type: ignore[attr-defined]
    return step


# ---- PyTorch (optional) ----------------------------------------------------------------
def torch_module():
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_step_factory(weights: Sequence[float], X: np.ndarray, y: np.ndarray,
                       hidden: Sequence[int] = HIDDEN) -> Callable[[], float]:
    """The same step vectorised in PyTorch float64 on one thread: X @ W.T + b, relu,
    hinge loss, L2, backward, SGD; for MLP(2, hidden + [1]) (`weights` in micrograd's
    order, as initial_weights(hidden) gives them)."""
    torch = torch_module()
    torch.set_num_threads(1)
    dt = torch.float64
    params = []
    for rows, bias in layer_blocks(weights, [2] + list(hidden) + [1]):
        params.append(torch.tensor(rows, dtype=dt, requires_grad=True))
        params.append(torch.tensor(bias, dtype=dt, requires_grad=True))
    Xt = torch.tensor(X, dtype=dt)
    yt = torch.tensor(y, dtype=dt)
    inv_n = 1.0 / len(y)
    n_layers = len(params) // 2

    def step() -> float:
        for p in params:
            p.grad = None
        h = Xt
        for i in range(n_layers):
            h = h @ params[2 * i].T + params[2 * i + 1]
            if i < n_layers - 1:
                h = torch.relu(h)
        scores = h.squeeze(1)
        data_loss = torch.relu(1 + -yt * scores).sum() * inv_n
        reg_loss = ALPHA * sum((p * p).sum() for p in params)
        total = data_loss + reg_loss
        total.backward()
        with torch.no_grad():
            for p in params:
                p -= LR * p.grad
        return total.item()

    step.params = params  # type: ignore[attr-defined]
    return step
