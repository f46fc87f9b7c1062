"""Optimizers: PyTorch's update rules (checked against torch.optim in float64), the same
bits on both engines, state that survives saving, and bad arguments refused up front."""

from __future__ import annotations

import json
import math
import random

import pytest

import programs as P
from cmicrograd.datasets import make_moons
from cmicrograd.optim import SGD, Adam, AdamW, linear_decay
from cmicrograd.train import batch_loss

CONFIGS = [
    (SGD, dict(lr=0.05, momentum=0.9)),
    (SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (SGD, dict(lr=0.05, momentum=0.5, dampening=0.3, weight_decay=0.02)),
    (Adam, dict()),
    (Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    (AdamW, dict()),
    (AdamW, dict(lr=0.02, betas=(0.5, 0.9), weight_decay=0.3)),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for cls, kw in CONFIGS]


def _model_and_data(engine, seed=3):
    X, y = make_moons(20, 0.1, seed=seed)
    random.seed(seed)
    return engine.nn.MLP(2, [6, 1]), X, y


def _grads(model, X, y):
    """Fill the parameters' grads from the demo loss; return its value."""
    model.zero_grad()
    loss, _ = batch_loss(model, X, y)
    loss.backward()
    return loss.data


def _run(engine, cls, kw, steps):
    model, X, y = _model_and_data(engine)
    opt = cls(model.parameters(), **kw)
    for _ in range(steps):
        _grads(model, X, y)
        opt.step()
    return model, opt


@pytest.mark.parametrize("cls, kw", CONFIGS, ids=IDS)
def test_matches_torch_optim_in_float64(engine, cls, kw):
    """50 steps fed the same gradients: the parameters agree with torch.optim to 1e-12."""
    torch = pytest.importorskip("torch", reason="PyTorch is optional; CI installs it")
    model, X, y = _model_and_data(engine)
    params = model.parameters()
    theirs = [torch.tensor(p.data, dtype=torch.float64, requires_grad=True) for p in params]
    start = [p.data for p in params]
    opt = cls(params, **kw)
    topt = getattr(torch.optim, cls.__name__)(theirs, foreach=False, **kw)
    for _ in range(50):
        _grads(model, X, y)  # our parameters give the gradients; torch's only follow
        for p, t in zip(params, theirs):
            t.grad = torch.tensor(p.grad, dtype=torch.float64)
        opt.step()
        topt.step()
    for p, t in zip(params, theirs):
        assert p.data == pytest.approx(t.item(), rel=1e-12, abs=1e-300)
    assert sum(abs(p.data - s) for p, s in zip(params, start)) > 0.01  # it did train


def test_adam_first_step_moves_each_parameter_by_lr(engine):
    """Bias correction: Adam's first step is lr * g / (|g| + eps), about lr * sign(g)."""
    V = engine.Value
    start, grads = [1.0, -2.0, 0.5], [0.5, -3.0, 1e-3]
    ps = [V(x) for x in start]
    for p, g in zip(ps, grads):
        p.grad = g
    Adam(ps, lr=0.1).step()
    want = [x - 0.1 * g / (abs(g) + 1e-8) for x, g in zip(start, grads)]
    assert [p.data for p in ps] == pytest.approx(want, rel=1e-12)
    q = V(2.0)
    q.grad = 0.0
    AdamW([q], lr=0.1, weight_decay=0.5).step()  # decay only: 2 * (1 - 0.05)
    assert q.data == 2.0 * (1.0 - 0.1 * 0.5)


@pytest.mark.parametrize("cls, kw", CONFIGS, ids=IDS)
def test_engines_give_the_same_bits(both, cls, kw):
    runs = [[p.data for p in _run(ns, cls, kw, 15)[0].parameters()] for ns in both]
    assert runs[0] == runs[1]


def test_sgd_defaults_keep_the_demo_update(engine):
    """No momentum, no weight decay: exactly ``p.data -= lr * p.grad``."""
    V = engine.Value
    ps = [V(0.3), V(-1.1)]
    for p, g in zip(ps, (0.7, -0.2)):
        p.grad = g
    SGD(ps, lr=0.25).step()
    assert [p.data for p in ps] == [0.3 - 0.25 * 0.7, -1.1 - 0.25 * -0.2]


# ---- state ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls, kw", CONFIGS, ids=IDS)
def test_resumed_run_equals_uninterrupted(engine, tmp_path, cls, kw):
    """Train 6 steps, save model and optimizer, load both fresh, train 6 more: the same
    bits as 12 steps in one go (with a schedule, whose position is the step count)."""
    kw = dict(kw, lr=linear_decay(kw.get("lr", 0.01), 12))
    straight, _ = _run(engine, cls, kw, 12)
    model, opt = _run(engine, cls, kw, 6)
    path = tmp_path / "checkpoint.json"
    model.save(path, optimizer=opt)
    resumed = engine.nn.MLP.load(path)
    opt2 = cls(resumed.parameters(), **kw)
    opt2.load(path)
    assert opt2.steps == 6
    _, X, y = _model_and_data(engine)
    for _ in range(6):
        _grads(resumed, X, y)
        opt2.step()
    assert [p.data for p in resumed.parameters()] == [p.data for p in straight.parameters()]


def test_state_dict_is_json_and_round_trips_exactly(engine, tmp_path):
    _, opt = _run(engine, Adam, dict(lr=0.01), 3)
    state = opt.state_dict()
    assert json.loads(json.dumps(state)) == state
    assert state["optimizer"] == "Adam" and state["steps"] == 3 and state["hyperparameters"]["lr"] == 0.01
    other = Adam(_model_and_data(engine)[0].parameters(), lr=0.5)
    other.load_state_dict(json.loads(json.dumps(state)))
    assert other.state_dict() == state and other.lr == 0.01
    opt.save(tmp_path / "opt.json")
    third = Adam(_model_and_data(engine)[0].parameters())
    third.load(tmp_path / "opt.json")
    assert third.state_dict() == state


def _broken(state, **changes):
    out = json.loads(json.dumps(state))
    for path, value in changes.items():
        target = out
        *parents, last = path.split("__")
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return out


@pytest.mark.parametrize("changes, message", [
    (dict(format="x"), "not a cmicrograd optimizer state"),
    (dict(version=2), "unsupported optimizer state version"),
    (dict(optimizer="SGD"), "the state is for 'SGD', not Adam"),
    (dict(parameters=3), "for 3 parameters"),
    (dict(steps=-1), "steps must be an int >= 0"),
    (dict(steps=1.5), "steps must be an int >= 0"),
    (dict(hyperparameters__eps=0.0), "eps must be a finite number > 0"),
    (dict(hyperparameters__betas=[0.9, 1.0]), r"betas\[1\] must be in \[0, 1\)"),
    (dict(hyperparameters__lr=-1.0), "lr must be a finite number >= 0"),
    (dict(hyperparameters__lr=None), "saved with a learning-rate schedule"),
    (dict(hyperparameters__momentum=0.9), "hyperparameters must be an object with exactly"),
    (dict(state__exp_avg=[1.0]), "exp_avg must be a list of"),
    (dict(state__exp_avg_sq=KeyError), "buffers must be an object with exactly"),
])
def test_bad_state_is_refused_and_changes_nothing(engine, changes, message):
    _, opt = _run(engine, Adam, dict(lr=0.01), 2)
    state = opt.state_dict()
    _, fresh = _run(engine, Adam, dict(lr=0.02), 1)
    before = fresh.state_dict()
    with pytest.raises(ValueError, match=message):
        fresh.load_state_dict(_broken(state, **changes))
    assert fresh.state_dict() == before
    with pytest.raises(ValueError, match="must be a JSON object"):
        fresh.load_state_dict([1, 2])


def test_load_names_the_file(engine, tmp_path):
    model, opt = _run(engine, SGD, dict(lr=0.1, momentum=0.9), 1)
    bare = tmp_path / "model.json"
    model.save(bare)
    with pytest.raises(ValueError, match="model.json: the model was saved without an optimizer state"):
        opt.load(bare)
    junk = tmp_path / "junk.json"
    junk.write_text("{oops")
    with pytest.raises(ValueError, match="junk.json: not valid JSON"):
        opt.load(junk)
    other, _ = _run(engine, SGD, dict(lr=0.1), 1)
    with pytest.raises(ValueError, match="does not optimize this model's parameters"):
        other.save(tmp_path / "m.json", optimizer=opt)
    with pytest.raises(TypeError, match="optimizer must be a cmicrograd.optim optimizer"):
        model.save(tmp_path / "m.json", optimizer="adam")


# ---- bad arguments -------------------------------------------------------------------
BAD = [
    (Adam, dict(lr=-0.1), ValueError, "lr must be a finite number >= 0"),
    (Adam, dict(lr=math.nan), ValueError, "lr must be a finite number >= 0"),
    (Adam, dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be in \[0, 1\)"),
    (Adam, dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
    (Adam, dict(betas=0.9), TypeError, "betas must be a pair"),
    (Adam, dict(eps=0.0), ValueError, "eps must be a finite number > 0"),
    (AdamW, dict(eps=-1e-8), ValueError, "eps must be a finite number > 0"),
    (AdamW, dict(weight_decay=-0.01), ValueError, "weight_decay must be a finite number >= 0"),
    (SGD, dict(lr=-1.0), ValueError, "lr must be a finite number >= 0"),
    (SGD, dict(momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    (SGD, dict(momentum=-0.5), ValueError, r"momentum must be in \[0, 1\)"),
    (SGD, dict(nesterov=True), ValueError, "nesterov needs a momentum > 0"),
    (SGD, dict(momentum=0.9, dampening=0.1, nesterov=True), ValueError, "and dampening 0"),
    (SGD, dict(weight_decay=-1.0), ValueError, "weight_decay must be a finite number >= 0"),
    (SGD, dict(nesterov="yes"), TypeError, "nesterov must be True or False"),
    (Adam, dict(lr="fast"), TypeError, "lr must be a real number"),
]


@pytest.mark.parametrize("cls, kw, error, message", BAD, ids=[f"{c.__name__}-{k}" for c, k, _, _ in BAD])
def test_bad_hyperparameters(engine, cls, kw, error, message):
    p = engine.Value(1.5)
    p.grad = 0.25
    with pytest.raises(error, match=message):
        cls([p], **kw)
    assert (p.data, p.grad) == (1.5, 0.25)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_bad_parameter_lists(engine, cls):
    V = engine.Value
    a = V(1.0)
    with pytest.raises(ValueError, match="needs at least one Value"):
        cls([])
    with pytest.raises(TypeError, match="item 1: expected a cmicrograd Value, not float"):
        cls([a, 2.0])
    with pytest.raises(TypeError, match="params must be an iterable of Values"):
        cls(a)
    with pytest.raises(ValueError, match="items 0 and 2 are the same Value"):
        cls([a, V(2.0), a])
    other = both_engines_value(engine)
    with pytest.raises(TypeError, match="mixes Values of the compiled and the pure-Python engine"):
        cls([a, other])


def both_engines_value(engine):
    """A Value of the engine that is not ``engine``."""
    import cmicrograd.reference.engine as reference_engine
    from conftest import ENGINES

    return (reference_engine if engine.name == "cython" else ENGINES["cython"].engine).Value(1.0)


def test_negative_scheduled_lr_stops_before_updating(engine):
    V = engine.Value
    p = V(1.0)
    p.grad = 1.0
    opt = SGD([p], lr=linear_decay(1.0, 2, final_fraction=-1.0))  # 1.0, 0.0, -1.0
    opt.step()
    opt.step()
    data = p.data
    with pytest.raises(ValueError, match=r"schedule gave -1.0 at step 2"):
        opt.step()
    assert p.data == data and opt.steps == 2


def test_lr_set_later_is_checked_at_the_step(engine):
    p = engine.Value(1.0)
    p.grad = 1.0
    opt = Adam([p])
    opt.lr = -0.5
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        opt.step()
    assert p.data == 1.0 and opt.steps == 0


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_zero_grad(engine, cls):
    V = engine.Value
    ps = [V(1.0), V(2.0)]
    (ps[0] * ps[1]).backward()
    cls(ps).zero_grad()
    assert [p.grad for p in ps] == [0.0, 0.0]


def _adam_run(engine, cls, kw, n, alias=None, steps=4):
    """n parameters with made-up grads, ``steps`` updates; alias=(i, j) makes the list
    name parameter j at place i as well (a list changed after the constructor checked it)."""
    rng = random.Random(n)
    ps = [engine.Value(rng.uniform(-2, 2)) for _ in range(n)]
    opt = cls(ps, **kw)
    if alias:
        opt.params[alias[0]] = ps[alias[1]]
    for _ in range(steps):
        for p in ps:
            p.grad = rng.uniform(-1, 1) * 10.0 ** rng.randint(-8, 2)
        opt.step()
    return [P.bits(p.data) for p in ps] + [b.hex() for buf in opt._buffers.values() for b in buf]


@pytest.mark.parametrize("cls, kw", [c for c in CONFIGS if c[0] is not SGD],
                         ids=[i for c, i in zip(CONFIGS, IDS) if c[0] is not SGD])
@pytest.mark.parametrize("n, alias", [(1, None), (3, None), (4, None), (255, None), (256, None),
                                      (257, None), (600, None), (9, (2, 1)), (9, (5, 3)),
                                      (9, (8, 2)), (300, (280, 1))])
def test_adam_kernel_same_bits_at_every_size_and_with_a_repeated_parameter(both, cls, kw, n, alias):
    """The compiled Adam updates several parameters at once (in chunks, four at a time
    with AVX2); the pure one goes one by one. Sizes around those widths, and a list that
    names a parameter twice (its second update must see the first), give the same bits."""
    assert _adam_run(both[0], cls, kw, n, alias) == _adam_run(both[1], cls, kw, n, alias)


_ADAM_SIMD_SCRIPT = r"""
import json, sys
sys.path[:0] = [sys.argv[1]]
import cmicrograd, conftest, test_optim as T
print(json.dumps([cmicrograd._engine._lane_kernels(),
                  [T._adam_run(conftest.ENGINES["cython"], cls, kw, 37, (9, 4))
                   for cls, kw in T.CONFIGS if cls is not T.SGD]], default=lambda b: b.hex()))
"""


def test_adam_kernel_baseline_and_avx2_give_the_same_bits(both):
    """CMICROGRAD_SIMD=0 picks the baseline Adam loop: the same bits as the default one."""
    outputs = P.with_and_without_simd(_ADAM_SIMD_SCRIPT)
    assert outputs[1][0] == "baseline"
    assert outputs[0][1] == outputs[1][1]
