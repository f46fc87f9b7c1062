"""A compiled training step, ``compile(loss, optimizer=opt)()``, is ``forward();
opt.zero_grad(); backward(); opt.step()`` bit for bit, whatever the user does to the
optimizer between steps. (The compiled engine runs it in C for SGD, Adam and AdamW, with
zero_grad folded into backward and the parameters found once: src/train_step.pxi. Each
test here changes something that plan depends on.)"""

from __future__ import annotations

import random
from typing import Any, Callable, List, Optional

import pytest

import cmicrograd
import programs as P
from cmicrograd.datasets import make_moons
from cmicrograd.losses import hinge_loss, l2_regularization
from cmicrograd.optim import SGD, Adam, AdamW

X, Y = make_moons(16, 0.1, seed=3)

OPTIMIZERS = {
    "sgd": (SGD, dict(lr=0.1)),
    "sgd-momentum": (SGD, dict(lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)),
    "adam": (Adam, dict(lr=0.02, weight_decay=1e-3)),
    "adamw": (AdamW, dict(lr=0.02, weight_decay=0.05)),
}
Change = Callable[[int, Any, Any, List[Any]], None]   # (step, model, optimizer, extras)


class Run:
    """One model, its optimizer and its loss over the inputs `inputs` (Values, whose
    grads accumulate across steps: they are leaves but not parameters)."""

    def __init__(self, engine, name: str, extra_params: int = 0, **compile_kw):
        V = engine.Value
        random.seed(4)
        self.model = engine.nn.MLP(2, [6, 6, 1])
        self.inputs = [[V(a), V(b)] for a, b in X.tolist()]
        scores = [self.model(row) for row in self.inputs]
        self.loss = hinge_loss(scores, Y.tolist()) + l2_regularization(self.model.parameters(), 1e-3)
        self.extras = [V(0.5 + i) for i in range(extra_params)]   # parameters outside the graph
        cls, kw = OPTIMIZERS[name]
        self.opt = cls(self.model.parameters() + self.extras, **kw)
        self.compile_kw = compile_kw

    def state(self):
        nodes = self.model.parameters() + self.extras + [x for row in self.inputs for x in row]
        buffers = {k: [P.bits(x) for x in b] for k, b in self.opt._buffers.items()}
        return ([P.bits(v.data) for v in nodes], [P.bits(v.grad) for v in nodes], buffers, self.opt.steps)


def compiled(run: Run, fused: bool, **compile_kw):
    """The run's loss compiled with its optimizer (fused) or without (the README's loop)."""
    return cmicrograd.compile(run.loss, optimizer=run.opt if fused else None, **compile_kw)


def one_step(graph, opt, fused: bool) -> bytes:
    """A training step, the loss's bits: ``graph()``, or the README's loop."""
    if fused:
        return P.bits(graph())
    value = graph.forward()
    opt.zero_grad()
    graph.backward()
    opt.step()
    return P.bits(value)


def twin_runs(engine, name: str, steps: int, change: Optional[Change] = None, extra_params: int = 0,
              **compile_kw):
    """The losses and final state of `steps` compiled steps and of the README's loop on
    the same model, `change(k, model, opt, extras)` applied to both before step k."""
    out = []
    for fused in (True, False):
        run = Run(engine, name, extra_params)
        graph = compiled(run, fused, **compile_kw)
        losses = []
        for k in range(steps):
            for e in run.extras:
                e.grad = 1.5 + k        # what zero_grad must clear
            if change is not None:
                change(k, run.model, run.opt, run.extras)
            losses.append(one_step(graph, run.opt, fused))
        out.append((losses, run.state()))
    return out


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("compile_kw", [{}, dict(lanes=False), dict(threads=3)],
                         ids=["lanes", "no-lanes", "threads"])
def test_step_equals_the_readme_loop(engine, name, compile_kw):
    fused, loop = twin_runs(engine, name, 8, **compile_kw)
    assert fused == loop


def _set(attr: str, value: Any, at: int = 3) -> Change:
    def change(k, model, opt, extras):
        if k == at:
            setattr(opt, attr, value)
    return change


def _swap_two_parameters(k, model, opt, extras):
    if k == 2:
        opt.params[0], opt.params[5] = opt.params[5], opt.params[0]


def _drop_the_last(k, model, opt, extras):
    if k == 3:
        opt.params.pop()


def _replace_the_list(k, model, opt, extras):
    if k == 4:
        opt.params = list(opt.params)   # an equal list, another object


CHANGES = {
    "lr": ("adam", _set("lr", 0.5)),
    "lr-int": ("sgd", _set("lr", 1)),
    "schedule": ("adam", _set("lr", lambda k: 0.1 / (1 + k))),
    "betas": ("adam", _set("betas", (0.8, 0.99))),
    "betas-as-list": ("adamw", _set("betas", [0.8, 0.99])),
    "eps": ("adam", _set("eps", 1e-3)),
    "eps-int": ("adam", _set("eps", 1)),
    "weight-decay": ("adamw", _set("weight_decay", 0.3)),
    "momentum-on": ("sgd", _set("momentum", 0.9)),
    "dampening": ("sgd-momentum", _set("dampening", 0.0)),
    "nesterov-off": ("sgd-momentum", _set("nesterov", False)),
    "swap": ("adam", _swap_two_parameters),
    "new-list": ("sgd-momentum", _replace_the_list),
    "shorter-list": ("adam", _drop_the_last),
}


@pytest.mark.parametrize("key", CHANGES)
def test_changes_between_steps_are_seen(engine, key):
    name, change = CHANGES[key]
    fused, loop = twin_runs(engine, name, 7, change)
    assert fused == loop


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_parameters_outside_the_graph_are_zeroed_and_updated(engine, name):
    fused, loop = twin_runs(engine, name, 5, extra_params=3)
    assert fused == loop
    grads = fused[1][1]
    assert grads[-3 - 2 * len(X):-2 * len(X)] == [P.bits(0.0)] * 3   # zero_grad cleared them


def test_a_parameter_that_is_not_a_leaf(engine):
    """An optimizer may be handed an intermediate node: zero_grad clears its grad before
    backward adds to it, and the update writes its data (the next forward overwrites it)."""
    def change(k, model, opt, extras):
        if k == 2:
            opt.params.append(model.layers[0].neurons[0].w[0] * 2.0)   # not in this graph
    fused, loop = twin_runs(engine, "sgd", 4, change)
    assert fused == loop


def test_recording_again_between_steps(engine):
    """Another graph recorded over the same nodes detaches this one; its next step
    records again (new slots) and stays exact."""
    def run(fused: bool):
        r = Run(engine, "adam")
        graph = compiled(r, fused)
        losses = []
        for k in range(6):
            if k in (2, 4):
                cmicrograd.compile(r.loss)   # takes the nodes over
            losses.append(one_step(graph, r.opt, fused))
        return losses, r.state(), graph.recordings
    fused, loop = run(True), run(False)
    assert fused == loop
    if engine.name == "cython":   # (the pure engine's compile replays the Values themselves)
        assert fused[2] == 3


def test_a_bad_hyperparameter_set_later_raises_where_the_loop_does(engine):
    for fused in (True, False):
        run = Run(engine, "adam")
        graph = compiled(run, fused)
        for _ in range(3):
            one_step(graph, run.opt, fused)
        run.opt.lr = -1.0
        with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
            one_step(graph, run.opt, fused)
        if fused:
            got = run.state()
        else:
            assert got == run.state()   # grads zeroed and recomputed, nothing updated


def test_a_subclass_keeps_its_own_step(engine):
    calls = []

    class Counting(Adam):
        def step(self):
            calls.append(self.steps)
            super().step()

    run = Run(engine, "adam")
    opt = Counting(run.model.parameters(), lr=0.01)
    step = cmicrograd.compile(run.loss, optimizer=opt)
    for _ in range(3):
        step()
    assert calls == [0, 1, 2]


def test_a_list_changed_to_hold_a_non_value_raises_the_optimizers_error(engine):
    run = Run(engine, "adam")
    step = cmicrograd.compile(run.loss, optimizer=run.opt)
    step()
    run.opt.params[3] = 1.0
    with pytest.raises((TypeError, AttributeError)):
        step()
