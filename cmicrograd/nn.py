"""Module, Neuron, Layer and MLP over the picked engine (mirrors ``micrograd.nn``).

The classes are written once in ``cmicrograd._nn``; this module binds them to the
engine ``cmicrograd`` picked (see :mod:`cmicrograd.engine`). ``cmicrograd.reference.nn``
binds the same classes to the pure-Python engine.
"""

from . import _nn
from ._engines import PICKED

ACTIVATIONS = _nn.ACTIVATIONS


class Module(_nn.Module):
    __doc__ = _nn.Module.__doc__
    engine = PICKED


class Neuron(_nn.Neuron, Module):
    __doc__ = _nn.Neuron.__doc__


class Layer(_nn.Layer, Module):
    __doc__ = _nn.Layer.__doc__
    neuron_class = Neuron


class MLP(_nn.MLP, Module):
    __doc__ = _nn.MLP.__doc__
    layer_class = Layer


__all__ = ["Module", "Neuron", "Layer", "MLP", "ACTIVATIONS"]
