"""Known answers: micrograd's README examples, the lecture's neuron, and PyTorch.

PyTorch (float64) is optional for a user's test run: those tests skip without it.
CI installs it (.ci/run), so there they really run.
"""

from __future__ import annotations

import math

import pytest


def test_micrograd_sanity_check(engine):
    V = engine.Value
    x = V(-4.0)
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    assert y.data == -20.0
    assert x.grad == 46.0


def test_micrograd_readme_example(engine):
    V = engine.Value
    a = V(-4.0)
    b = V(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    g.backward()
    assert f"{g.data:.4f}" == "24.7041"
    assert f"{a.grad:.4f}" == "138.8338"
    assert f"{b.grad:.4f}" == "645.5773"


def test_lecture_tanh_neuron(engine):
    V = engine.Value
    x1, x2 = V(2.0, label="x1"), V(0.0, label="x2")
    w1, w2 = V(-3.0, label="w1"), V(1.0, label="w2")
    b = V(6.8813735870195432, label="b")
    n = x1 * w1 + x2 * w2 + b
    n.label = "n"
    o = n.tanh()
    o.backward()
    assert o.data == pytest.approx(0.7071067811865476, rel=1e-15)
    assert x1.grad == pytest.approx(-1.5, rel=1e-14)
    assert w1.grad == pytest.approx(1.0, rel=1e-14)
    assert x2.grad == pytest.approx(0.5, rel=1e-14)
    assert w2.grad == 0.0


# ---- PyTorch float64 ---------------------------------------------------------------
FUNCTIONS = [
    # name, our op on Values, torch op on tensors, inputs
    ("add", lambda a, b: a + b, lambda a, b: a + b, (1.5, -2.25)),
    ("mul", lambda a, b: a * b, lambda a, b: a * b, (1.5, -2.25)),
    ("sub", lambda a, b: a - b, lambda a, b: a - b, (1.5, -2.25)),
    ("div", lambda a, b: a / b, lambda a, b: a / b, (1.5, -2.25)),
    ("neg", lambda a, b: -a * b, lambda a, b: -a * b, (1.5, -2.25)),
    ("pow2", lambda a, b: (a * b) ** 2, lambda a, b: (a * b) ** 2, (1.5, -2.25)),
    ("pow-1.5", lambda a, b: (a * a) ** -1.5 + b, lambda a, b: (a * a) ** -1.5 + b, (1.5, -2.25)),
    ("pow0.5", lambda a, b: a**0.5 * b, lambda a, b: a**0.5 * b, (2.5, 0.75)),
    ("relu+", lambda a, b: (a * b).relu(), lambda a, b: (a * b).relu(), (1.5, 2.25)),
    ("relu-", lambda a, b: (a * b).relu() + a, lambda a, b: (a * b).relu() + a, (1.5, -2.25)),
    ("tanh", lambda a, b: (a * b).tanh(), lambda a, b: (a * b).tanh(), (0.5, -0.75)),
    ("exp", lambda a, b: (a * b).exp(), lambda a, b: (a * b).exp(), (0.5, -0.75)),
    ("log", lambda a, b: (a * b).log(), lambda a, b: (a * b).log(), (0.5, 3.75)),
    ("sigmoid", lambda a, b: (a * b).sigmoid(), lambda a, b: (a * b).sigmoid(), (0.5, -0.75)),
    ("sigmoid-big", lambda a, b: (a * b).sigmoid(), lambda a, b: (a * b).sigmoid(), (30.0, -1.5)),
    ("rsub-rdiv", lambda a, b: 3 - 2 / (a + b), lambda a, b: 3 - 2 / (a + b), (1.5, 0.25)),
    ("reuse", lambda a, b: a * a * b + a / (b * b), lambda a, b: a * a * b + a / (b * b), (1.5, -2.25)),
]


def _torch():
    return pytest.importorskip("torch", reason="PyTorch is optional; CI installs it")


@pytest.mark.parametrize("case", FUNCTIONS, ids=[c[0] for c in FUNCTIONS])
def test_against_pytorch_float64(engine, case):
    torch = _torch()
    _, ours, theirs, (x, y) = case
    a, b = engine.Value(x), engine.Value(y)
    out = ours(a, b)
    out.backward()
    ta = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    tout = theirs(ta, tb)
    tout.backward()
    assert out.data == pytest.approx(tout.item(), rel=1e-13, abs=1e-300)
    assert a.grad == pytest.approx(ta.grad.item(), rel=1e-12, abs=1e-300)
    assert b.grad == pytest.approx(tb.grad.item(), rel=1e-12, abs=1e-300)


def test_micrograd_readme_example_against_pytorch(engine):
    torch = _torch()

    def build(a, b, relu):
        c = a + b
        d = a * b + b**3
        c = c + c + 1
        c = c + 1 + c + (-a)
        d = d + d * 2 + relu(b + a)
        d = d + 3 * d + relu(b - a)
        e = c - d
        f = e**2
        g = f / 2.0
        return g + 10.0 / f

    a, b = engine.Value(-4.0), engine.Value(2.0)
    g = build(a, b, lambda v: v.relu())
    g.backward()
    ta = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    tg = build(ta, tb, lambda t: t.relu())
    tg.backward()
    assert g.data == pytest.approx(tg.item(), rel=1e-13)
    assert a.grad == pytest.approx(ta.grad.item(), rel=1e-12)
    assert b.grad == pytest.approx(tb.grad.item(), rel=1e-12)


def test_tanh_saturation_matches_pytorch(engine):
    torch = _torch()
    for x in (-1000.0, -20.0, 20.0, 1000.0):
        v = engine.Value(x)
        y = v.tanh()
        y.backward()
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        t.tanh().backward()
        assert y.data == t.tanh().item() and math.isclose(v.grad, t.grad.item(), abs_tol=1e-300)
