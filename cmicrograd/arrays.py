"""numpy in and out: Values from arrays, arrays from Values, a model's parameters and
gradients as flat vectors (for saving, comparing, initialising)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Union

from ._engines import engine_of, is_value

if TYPE_CHECKING:
    from numpy.typing import NDArray


def values(array: Any, engine: Optional[Any] = None) -> Any:
    """Leaf Values holding ``array``'s numbers, nested as the array is: a Value for a
    number or 0-d array, a list for 1-D, a list of lists for 2-D, and so on.

    ``engine`` is an engine module (``cmicrograd._engine`` or
    ``cmicrograd.reference.engine``); by default the one ``cmicrograd`` picked.
    """
    import numpy as np

    if engine is None:
        from ._engines import PICKED

        engine = PICKED
    data = np.asarray(array)
    if data.dtype.kind not in "biuf":
        raise TypeError(f"values() needs an array of numbers, not of dtype {data.dtype}")
    V = engine.Value
    if data.ndim == 0:
        return V(float(data))
    flat = [V(x) for x in data.astype(float).ravel().tolist()]
    for size in reversed(data.shape[1:]):
        flat = [flat[i:i + size] for i in range(0, len(flat), size)]
    return flat


def to_array(values: Any) -> "NDArray[Any]":
    """The data of a Value or of nested lists of Values, as a float array of that shape."""
    import numpy as np

    if is_value(values):
        return np.array(values.data)

    def data(item: Any) -> Any:
        if isinstance(item, (list, tuple)):
            return [data(i) for i in item]
        return item.data

    return np.array(data(values), dtype=float)


def _params(model_or_params: Union[Any, Iterable[Any]]) -> List[Any]:
    params = model_or_params.parameters() if hasattr(model_or_params, "parameters") else list(model_or_params)
    for p in params:
        engine_of(p)
    return params


def parameters_to_vector(model_or_params: Union[Any, Iterable[Any]]) -> "NDArray[Any]":
    """The parameters' data as one float vector, in ``parameters()`` order."""
    import numpy as np

    return np.array([p.data for p in _params(model_or_params)], dtype=float)


def grads_to_vector(model_or_params: Union[Any, Iterable[Any]]) -> "NDArray[Any]":
    """The parameters' grads as one float vector, in ``parameters()`` order."""
    import numpy as np

    return np.array([p.grad for p in _params(model_or_params)], dtype=float)


def vector_to_parameters(vector: Any, model_or_params: Union[Any, Iterable[Any]]) -> None:
    """Set the parameters' data from a flat vector (its length must match)."""
    import numpy as np

    params = _params(model_or_params)
    data = np.asarray(vector, dtype=float)
    if data.ndim != 1 or len(data) != len(params):
        raise ValueError(f"expected a vector of {len(params)} numbers, got an array of shape {data.shape}")
    if params:
        engine_of(params[0]).set_data(params, data.tolist())


__all__ = ["values", "to_array", "parameters_to_vector", "vector_to_parameters", "grads_to_vector"]
