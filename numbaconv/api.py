"""The public convolution functions.

Data flows one way: arguments -> ConvSpec (validated once) -> dispatch picks a
kernel -> the kernel runs on prepared arrays -> the result in the caller's layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import arrays, dispatch
from .spec import DEVICES, Activation, Array, Device, IntOrPair, Layout, Padding, PaddingMode


def conv2d(x: Array, weight: Array, bias: Array | None = None, stride: IntOrPair = 1, padding: Padding = 0,
           dilation: IntOrPair = 1, groups: int = 1, *, padding_mode: PaddingMode = "zeros",
           activation: Activation = None, layout: Layout = "NCHW", out: Array | None = None, algorithm: str = "auto",
           device: Device = None, stream: Any = None) -> Array:
    """2-D convolution with the semantics of ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : array
        (N, C_in, H, W) or unbatched (C_in, H, W); (N, H, W, C_in) with ``layout='NHWC'``.
        float32 or float64, any strides; a NumPy array, or a CUDA array (see ``device``).
    weight : array
        (C_out, C_in/groups, kH, kW), the dtype of x.
    bias : array or None
        (C_out,), added before the activation.
    stride, dilation : int or (int, int)
        At least 1.
    padding : int, (int, int), 'valid' or 'same'
        At least 0; 'same' needs stride 1 and follows torch's rule for an odd total (the extra
        row or column goes after).
    groups : int
        Divides both C_in and C_out; ``groups = C_in`` is the depthwise convolution.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}
        As in ``torch.nn.Conv2d``.
    activation : {None, 'relu', 'relu6', 'silu', 'hardswish'}
        Applied after the bias, in the kernel's store.
    layout : {'NCHW', 'NHWC'}
        The layout of x and of the result; the weight is always (C_out, C_in/groups, kH, kW).
        'NHWC' runs the kernels' channels-last variants (no transposes).
    out : array, optional
        Preallocated result of the exact shape and dtype; must not overlap an input.
    algorithm : str
        'auto' (the dispatcher's choice, see `numbaconv.plan`), 'tuned' (the fastest
        measured by `numbaconv.tune`), or a kernel name from `numbaconv.algorithms`.
    device : {None, 'cpu', 'cuda'}
        None follows the data: arrays exposing ``__cuda_array_interface__`` (Numba device arrays,
        CuPy arrays, torch CUDA tensors) run on the GPU without a host round trip and the result is
        of x's family (zero-copy); 'cuda' with NumPy arrays copies in and out.  Host and device
        arrays cannot be mixed in one call.
    stream : optional
        CUDA only: a Numba, CuPy or torch stream to launch on; by default x's current stream.

    Returns
    -------
    array
        The result, of x's dtype, in x's layout and array family; ``out`` itself when given.

    Raises
    ------
    ValueError, TypeError
        For bad arguments, naming the parameter and the values, before any kernel runs.

    Notes
    -----
    Inputs are never modified.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    host = type(x) is np.ndarray and type(weight) is np.ndarray and (bias is None or type(bias) is np.ndarray) \
        and (out is None or type(out) is np.ndarray)  # the common call, at no cost: no CUDA array among them
    if device == "cuda" or (not host and any(arrays.is_cuda_array(value) for value in (x, weight, bias, out))):
        from .cuda import run as cuda_run

        return cuda_run.conv2d(x, weight, bias, stride, padding, dilation, groups, padding_mode=padding_mode,
                               activation=activation, layout=layout, out=out, algorithm=algorithm, device=device,
                               stream=stream)
    if stream is not None:
        raise ValueError("stream= applies to CUDA arrays only, got NumPy input")
    x, weight, bias, spec = arrays.accept(x, weight, bias, stride, padding, dilation, groups, padding_mode=padding_mode,
                                          activation=activation, layout=layout, out=out)
    chosen, _ = dispatch.select(spec, algorithm)

    # Channels-last data goes to the kernel's channels-last variant where it has one (no transposes);
    # every other call runs on a batched NCHW view.
    native = spec.layout == "NHWC" and chosen.run_nhwc is not None
    kernel_layout = "NHWC" if native else "NCHW"
    # the result in the caller's layout: an NCHW-only kernel's pieces are transposed into an NHWC result
    result = arrays.kernel_output(out, spec, spec.layout)
    if result.size:
        bias_values = arrays.kernel_bias(bias, spec)
        view = arrays.to_batched(x, spec) if native else arrays.to_nchw(x, spec)
        if dispatch.runs_whole(chosen, spec, view.flags.c_contiguous, kernel_layout, spec.layout):
            # the common call, decided once per spec: the kernel on the whole problem, straight into the result
            run = chosen.run_nhwc if native and chosen.run_nhwc is not None else chosen.run
            run(spec, view, weight, bias_values, result)
        else:
            kernel_spec, kernel_x = arrays.kernel_input(view, spec, kernel_layout)  # degenerate geometry gathered
            dispatch.run_bounded(chosen, kernel_spec, kernel_x, weight, bias_values, result, kernel_layout,
                                 spec.layout)
    return arrays.finish(result, spec, out, spec.layout)


def pointwise_conv2d(x: Array, weight: Array, bias: Array | None = None, stride: IntOrPair = 1, *,
                     padding_mode: PaddingMode = "zeros", activation: Activation = None, layout: Layout = "NCHW",
                     out: Array | None = None, algorithm: str = "auto", device: Device = None,
                     stream: Any = None) -> Array:
    """1x1 convolution (channel mixing): `conv2d` with a (C_out, C_in, 1, 1) weight, no padding, groups=1.

    Parameters
    ----------
    x : array
        (N, C_in, H, W) or unbatched (C_in, H, W); (N, H, W, C_in) with ``layout='NHWC'``.
    weight : array
        (C_out, C_in, 1, 1), the dtype of x; any other shape is a ValueError.
    bias : array or None
        (C_out,), added before the activation.
    stride : int or (int, int)
        At least 1 (a strided 1x1 convolution reads every stride-th pixel).
    padding_mode, activation, layout, out, algorithm, device, stream
        As in `conv2d`.

    Returns
    -------
    array
        (N, C_out, H_out, W_out) (or NHWC), of x's dtype and array family; ``out`` itself when given.
    """
    shape = tuple(np.shape(weight))
    if len(shape) != 4 or shape[2:] != (1, 1):
        raise ValueError(f"pointwise_conv2d needs a (C_out, C_in, 1, 1) weight, got weight.shape {shape}")
    return conv2d(x, weight, bias, stride, 0, 1, 1, padding_mode=padding_mode, activation=activation,
                  layout=layout, out=out, algorithm=algorithm, device=device, stream=stream)


def depthwise_conv2d(x: Array, weight: Array, bias: Array | None = None, stride: IntOrPair = 1,
                     padding: Padding = 0, dilation: IntOrPair = 1, *, padding_mode: PaddingMode = "zeros",
                     activation: Activation = None, layout: Layout = "NCHW", out: Array | None = None,
                     algorithm: str = "auto", device: Device = None, stream: Any = None) -> Array:
    """Depthwise convolution: `conv2d` with groups = C_in, one kH x kW filter per channel.

    Parameters
    ----------
    x : array
        (N, C_in, H, W) or unbatched (C_in, H, W); (N, H, W, C_in) with ``layout='NHWC'``.
    weight : array
        (m*C_in, 1, kH, kW) for a channel multiplier m (output channel c reads input channel c // m).
    bias : array or None
        (m*C_in,), added before the activation.
    stride, dilation : int or (int, int)
        At least 1.
    padding : int, (int, int), 'valid' or 'same'
        As in `conv2d`.
    padding_mode, activation, layout, out, algorithm, device, stream
        As in `conv2d`.

    Returns
    -------
    array
        (N, m*C_in, H_out, W_out) (or NHWC), of x's dtype and array family; ``out`` itself when given.
    """
    x_shape, w_shape = tuple(np.shape(x)), tuple(np.shape(weight))
    if len(x_shape) not in (3, 4):
        raise ValueError(f"x must be 4-D or 3-D, got shape {x_shape}")
    channel_axis = -1 if layout == "NHWC" else -3
    in_channels = x_shape[channel_axis]
    if len(w_shape) != 4 or w_shape[1] != 1 or in_channels == 0 or w_shape[0] % in_channels:
        raise ValueError(
            f"depthwise_conv2d needs a (m*C_in, 1, kH, kW) weight for C_in={in_channels}, got weight.shape {w_shape}"
        )
    return conv2d(x, weight, bias, stride, padding, dilation, in_channels, padding_mode=padding_mode,
                  activation=activation, layout=layout, out=out, algorithm=algorithm, device=device, stream=stream)


def grouped_conv2d(x: Array, weight: Array, bias: Array | None = None, stride: IntOrPair = 1, padding: Padding = 0,
                   dilation: IntOrPair = 1, groups: int = 1, *, padding_mode: PaddingMode = "zeros",
                   activation: Activation = None, layout: Layout = "NCHW", out: Array | None = None,
                   algorithm: str = "auto", device: Device = None, stream: Any = None) -> Array:
    """Grouped convolution: C_in and C_out split into ``groups`` independent convolutions (`conv2d`).

    Parameters
    ----------
    x : array
        (N, C_in, H, W) or unbatched (C_in, H, W); (N, H, W, C_in) with ``layout='NHWC'``.
    weight : array
        (C_out, C_in/groups, kH, kW): group g's C_out/groups filters read its C_in/groups channels.
    bias : array or None
        (C_out,), added before the activation.
    stride, dilation : int or (int, int)
        At least 1.
    padding : int, (int, int), 'valid' or 'same'
        As in `conv2d`.
    groups : int
        Divides both C_in and C_out.
    padding_mode, activation, layout, out, algorithm, device, stream
        As in `conv2d`.

    Returns
    -------
    array
        (N, C_out, H_out, W_out) (or NHWC), of x's dtype and array family; ``out`` itself when given.
    """
    return conv2d(x, weight, bias, stride, padding, dilation, groups, padding_mode=padding_mode,
                  activation=activation, layout=layout, out=out, algorithm=algorithm, device=device, stream=stream)
