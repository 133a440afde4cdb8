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

import numpy as np

from . import api, arrays

LAYOUTS_1D = {"NCL": "NCHW", "NLC": "NHWC"}


def _one(name: str, value, *, minimum: int, allow_str: bool = False):
    """An int (or a 1-tuple of one) at least ``minimum``; 'same'/'valid' where ``allow_str``."""
    if allow_str and isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{name} must be an int or a 1-element tuple for conv1d, got {value!r}")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int for conv1d, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {int(value)}")
    return int(value)


def _ndim(value, name: str) -> int:
    shape = getattr(value, "shape", None)
    if shape is None:
        shape = arrays.as_host_array(value, name).shape
    return len(shape)


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


def conv1d_arguments(x, weight, stride, padding, dilation, layout):
    """Checks of what is 1-D specific; returns the 2-D ``(row axis, stride, padding, dilation, layout)``."""
    if layout not in LAYOUTS_1D:
        raise ValueError(f"layout must be one of {tuple(LAYOUTS_1D)} for conv1d, got {layout!r}")
    x_ndim, w_ndim = _ndim(x, "x"), _ndim(weight, "weight")
    if x_ndim not in (2, 3):
        form = "(C, L) or (N, C, L)" if layout == "NCL" else "(L, C) or (N, L, C)"
        raise ValueError(f"x must be 2-D {form} for conv1d, got a {x_ndim}-D array of shape {np.shape(x)}")
    if w_ndim != 3:
        raise ValueError(f"weight must be 3-D (C_out, C_in/groups, K) for conv1d, got a {w_ndim}-D array of "
                         f"shape {tuple(getattr(weight, 'shape', ()))}")
    stride = _one("stride", stride, minimum=1)
    dilation = _one("dilation", dilation, minimum=1)
    padding = _one("padding", padding, minimum=0, allow_str=True)
    row_axis = x_ndim - 1 if layout == "NCL" else x_ndim - 2  # before L
    padding2 = padding if isinstance(padding, str) else (0, padding)
    return row_axis, (1, stride), padding2, (1, dilation), LAYOUTS_1D[layout]


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           activation=None, layout="NCL", out=None, algorithm="auto", device=None, stream=None):
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
    row_axis, stride2, padding2, dilation2, layout2 = conv1d_arguments(x, weight, stride, padding, dilation, layout)
    if out is not None and _ndim(out, "out") != _ndim(x, "x"):
        raise ValueError(f"out must have x's number of dimensions ({_ndim(x, 'x')}), got shape "
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
