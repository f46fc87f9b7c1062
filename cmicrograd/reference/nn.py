"""Module, Neuron, Layer and MLP over the pure-Python engine (the parity twin of
``cmicrograd.nn``, which binds the same classes, from ``cmicrograd._nn``, to the
picked engine)."""

from .. import _nn
from . import engine as _impl

ACTIVATIONS = _nn.ACTIVATIONS


class Module(_nn.Module):
    __doc__ = _nn.Module.__doc__
    engine = _impl


class Neuron(_nn.Neuron, Module):
    __doc__ = _nn.Neuron.__doc__


class Layer(_nn.Layer, Module):
    __doc__ = _nn.Layer.__doc__
    neuron_class = Neuron


class MLP(_nn.MLP, Module):
    __doc__ = _nn.MLP.__doc__
    layer_class = Layer


__all__ = ["Module", "Neuron", "Layer", "MLP", "ACTIVATIONS"]
