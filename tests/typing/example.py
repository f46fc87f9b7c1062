"""A user's program, type-checked with ``mypy --strict`` by tests/test_typing.py."""

from __future__ import annotations

import random
from typing import List

import cmicrograd
from cmicrograd import Value
from cmicrograd.datasets import make_moons
from cmicrograd.losses import accuracy, hinge_loss, l2_regularization
from cmicrograd.nn import MLP
from cmicrograd.optim import SGD, linear_decay


def graph() -> float:
    a = Value(-4.0, label="a")
    b = Value(2)
    c: Value = a * b + b**3 - 2 / a + (a - 1.5).relu() + b.tanh() * 0.5
    d: Value = (c.exp() + 1).log() - c.sigmoid() + 3 * a - (-b)
    d.backward()
    grad: float = a.grad
    data: float = d.data
    a.data = 1
    return grad + data


def train(steps: int = 5) -> float:
    X, y = make_moons(40, noise=0.1, seed=0)
    random.seed(0)
    model = MLP(2, [8, 8, 1])
    opt = SGD(model.parameters(), lr=linear_decay(1.0, steps))
    loss_value = 0.0
    for _ in range(steps):
        inputs: List[List[Value]] = [[Value(float(v)) for v in row] for row in X.tolist()]
        scores = [model(row) for row in inputs]
        loss = hinge_loss(scores, y.tolist()) + l2_regularization(model.parameters())
        model.zero_grad()
        loss.backward()
        opt.step()
        loss_value = loss.data
    print(accuracy(scores, y.tolist()))
    return loss_value


def replay() -> float:
    w = Value(0.5)
    out = (w * w + 1).tanh()
    g = cmicrograd.compile(out)
    value: float = g.forward()
    g.backward()
    return value + w.grad


if __name__ == "__main__":
    print(graph(), train(), replay())
