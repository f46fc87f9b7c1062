"""numpy in and out, on both engines."""

from __future__ import annotations

import random

import numpy as np
import pytest

import cmicrograd
from cmicrograd.arrays import grads_to_vector, parameters_to_vector, to_array, values, vector_to_parameters


def test_values_and_to_array(engine):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    v = values(a, engine.engine)
    assert len(v) == 2 and len(v[0]) == 3 and type(v[1][2]) is engine.Value
    assert v[1][2].data == 5.0
    assert np.array_equal(to_array(v), a.astype(float))
    assert to_array(values(np.float64(2.5), engine.engine)).item() == 2.5
    cube = values(np.zeros((2, 2, 2)), engine.engine)
    assert to_array(cube).shape == (2, 2, 2)
    with pytest.raises(TypeError, match="array of numbers"):
        values(np.array(["a"]), engine.engine)


def test_default_engine_is_the_picked_one():
    assert type(cmicrograd.values([1.0])[0]) is cmicrograd.Value


def test_parameter_vectors(engine):
    random.seed(3)
    model = engine.nn.MLP(3, [4, 2])
    vec = parameters_to_vector(model)
    assert vec.shape == (len(model.parameters()),)
    vector_to_parameters(vec * 2, model)
    assert np.array_equal(parameters_to_vector(model), vec * 2)
    out = model([0.1, 0.2, 0.3])
    (out[0] + out[1]).backward()
    assert np.array_equal(grads_to_vector(model), [p.grad for p in model.parameters()])
    with pytest.raises(ValueError, match="expected a vector of"):
        vector_to_parameters(vec[:-1], model)
    with pytest.raises(TypeError, match="expected a cmicrograd Value"):
        parameters_to_vector([1.0])


def test_mlp_on_rows_and_batches(engine):
    random.seed(4)
    model = engine.nn.MLP(2, [3, 1])
    X = np.array([[0.5, -1.0], [2.0, 0.25]])
    rows = model(X)
    assert [r.data for r in rows] == [model(X[0]).data, model(list(X[1])).data]
