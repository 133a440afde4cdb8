"""``conv1d``: ``torch.nn.functional.conv1d`` on the 2-D kernels.

A 1-D convolution over a sequence of length L is the 2-D convolution of an image one row high:
x (N, C, L) is viewed as (N, C, 1, L), the weight (C_out, C_in/G, K) as (C_out, C_in/G, 1, K),
stride/padding/dilation become (1, s), (0, p), (1, d).  The views share memory (no copies, on
the host and on the GPU), so every kernel, the dispatcher's choice (pointwise for K = 1,
depthwise for groups = C_in, with any channel multiplier, grouped otherwise), the fused
epilogue and the padding modes are the 2-D ones.  ``layout='NLC'`` (sequence models'
channels-last, (N, L, C)) maps to the NHWC kernels the same way.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from . import api, arrays
from .spec import Activation, Array, Device, PaddingMode

def _with_row(value, axis: int, name: str):
    """``value`` with a size-1 axis inserted at ``axis`` (a view: NumPy, or a Numba view of a CUDA array)."""
    if value is None:
        return None
    if arrays.is_cuda_array(value):
        from .cuda import run

        device = run.as_numba(value)
        shape, strides = list(device.shape), list(device.strides)
        shape.insert(axis, 1)
        strides.insert(axis, 0)
        return run.strided_view(device, tuple(shape), tuple(strides))
    return np.expand_dims(arrays.as_host_array(value, name), axis)


def conv1d(x: Array, weight: Array, bias: Array | None = None, stride: int | tuple[int] = 1,
           padding: int | tuple[int] | Literal["valid", "same"] = 0, dilation: int | tuple[int] = 1, groups: int = 1,
           *, padding_mode: PaddingMode = "zeros", activation: Activation = None,
           layout: Literal["NCL", "NLC"] = "NCL", out: Array | None = None, algorithm: str = "auto",
           device: Device = None, stream: Any = None) -> Array:
    """1-D convolution with the semantics of ``torch.nn.functional.conv1d``.

    Parameters
    ----------
    x : array
        (N, C_in, L) or unbatched (C_in, L); (N, L, C_in) or (L, C_in) with ``layout='NLC'``.
    weight : array
        (C_out, C_in/groups, K).  ``groups = C_in`` is the depthwise 1-D convolution
        (C_out = m * C_in for a channel multiplier m).
    bias : array or None
        (C_out,).
    stride, dilation : int or (int,)
        At least 1.
    padding : int, (int,), 'same' or 'valid'
        At least 0.
    groups : int
        Divides both C_in and C_out.
    padding_mode, activation, out, algorithm, device, stream
        As in `numbaconv.conv2d`.
    layout : {'NCL', 'NLC'}
        The layout of x and of the result.

    Returns
    -------
    array
        The result in x's layout, batchedness and array family (``out`` itself when given).
    """
    row_axis, stride2, padding2, dilation2, layout2 = arrays.conv1d_arguments(x, weight, stride, padding, dilation,
                                                                              layout)
    if out is not None and arrays._ndim(out, "out") != arrays._ndim(x, "x"):
        raise ValueError(f"out must have x's number of dimensions ({arrays._ndim(x, 'x')}), got shape "
                         f"{tuple(getattr(out, 'shape', ()))}")
    try:
        result = api.conv2d(_with_row(x, row_axis, "x"), _with_row(weight, 2, "weight"), bias, stride2, padding2,
                            dilation2, groups, padding_mode=padding_mode, activation=activation, layout=layout2,
                            out=_with_row(out, row_axis, "out"), algorithm=algorithm, device=device, stream=stream)
    except (ValueError, TypeError) as error:
        if "shape" not in str(error):
            raise
        raise type(error)(f"{error} [conv1d runs as conv2d of a one-row image: the 2-D shapes have a row axis of "
                          f"size 1 added]") from None
    if out is not None:
        return out
    shape = tuple(result.shape[:row_axis]) + tuple(result.shape[row_axis + 1:])
    if isinstance(result, np.ndarray):
        return result.reshape(shape)
    from .cuda import run  # a C-contiguous device result: reshape is a view

    return run._wrap_like(result.reshape(shape), x) if arrays.is_cuda_array(x) else result.reshape(shape)
