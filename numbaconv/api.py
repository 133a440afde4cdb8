"""The public convolution functions.

Data flows one way: arguments -> ConvSpec (validated once) -> dispatch picks a
kernel -> the kernel runs on prepared arrays -> the result in the caller's layout.
"""

from __future__ import annotations

import numpy as np

from . import arrays, dispatch
from .spec import DEVICES


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", activation=None, layout="NCHW", out=None,
           algorithm="auto", device=None):
    """2-D convolution with the semantics of ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : array, (N, C_in, H, W) or unbatched (C_in, H, W); (N, H, W, C_in) with ``layout='NHWC'``.
    weight : array, (C_out, C_in/groups, kH, kW), same dtype as x (float32 or float64).
    bias : array (C_out,) or None.
    stride, dilation : int or pair of ints >= 1.
    padding : int or pair >= 0, ``'valid'`` or ``'same'`` (stride 1 only; torch's rule for odd totals).
    groups : int dividing both C_in and C_out.
    padding_mode : ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'`` (as ``torch.nn.Conv2d``).
    activation : None, ``'relu'``, ``'relu6'``, ``'silu'`` or ``'hardswish'``, applied after the bias in
        the kernel's store.
    layout : ``'NCHW'`` or ``'NHWC'`` for x and the result (weight is always (C_out, C_in/g, kH, kW)).
    out : preallocated result of the exact shape and dtype; must not overlap an input.
    algorithm : ``'auto'`` or a name from :func:`numbaconv.algorithms`.
    device : None (follow the data) or ``'cpu'``.

    Returns the result, of x's dtype, in x's layout; ``out`` itself when given.
    Inputs are never modified; any strides are accepted.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    on_gpu = [name for name, value in (("x", x), ("weight", weight), ("bias", bias), ("out", out))
              if arrays.is_cuda_array(value)]
    if device == "cuda" or on_gpu:
        raise NotImplementedError(
            "the CUDA kernels are not part of this version of numbaconv"
            + (f" ({', '.join(on_gpu)} {'is a CUDA array' if len(on_gpu) == 1 else 'are CUDA arrays'})" if on_gpu else "")
        )
    x, weight, bias, spec = arrays.accept(x, weight, bias, stride, padding, dilation, groups, padding_mode=padding_mode,
                                          activation=activation, layout=layout, out=out)
    chosen, _ = dispatch.select(spec, algorithm)

    result = arrays.kernel_output(out, spec)
    if result.size:
        bias_values = np.zeros(spec.out_channels, spec.dtype) if bias is None else np.ascontiguousarray(bias)
        chosen.run(spec, arrays.to_nchw(x, spec), weight, bias_values, result)
    return arrays.finish(result, spec, out)


def pointwise_conv2d(x, weight, bias=None, stride=1, *, padding_mode="zeros", activation=None,
                     layout="NCHW", out=None, algorithm="auto", device=None):
    """1x1 convolution (channel mixing): ``weight`` is (C_out, C_in, 1, 1); no padding, groups=1."""
    shape = np.shape(weight)
    if len(shape) != 4 or shape[2:] != (1, 1):
        raise ValueError(f"pointwise_conv2d needs a (C_out, C_in, 1, 1) weight, got weight.shape {shape}")
    return conv2d(x, weight, bias, stride, 0, 1, 1, padding_mode=padding_mode, activation=activation,
                  layout=layout, out=out, algorithm=algorithm, device=device)


def depthwise_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, *, padding_mode="zeros",
                     activation=None, layout="NCHW", out=None, algorithm="auto", device=None):
    """Depthwise convolution, groups = C_in: ``weight`` is (m*C_in, 1, kH, kW) for channel multiplier m."""
    x_shape, w_shape = np.shape(x), np.shape(weight)
    if len(x_shape) not in (3, 4):
        raise ValueError(f"x must be 4-D or 3-D, got shape {x_shape}")
    channel_axis = -1 if layout == "NHWC" else -3
    in_channels = x_shape[channel_axis]
    if len(w_shape) != 4 or w_shape[1] != 1 or in_channels == 0 or w_shape[0] % in_channels:
        raise ValueError(
            f"depthwise_conv2d needs a (m*C_in, 1, kH, kW) weight for C_in={in_channels}, got weight.shape {w_shape}"
        )
    return conv2d(x, weight, bias, stride, padding, dilation, in_channels, padding_mode=padding_mode,
                  activation=activation, layout=layout, out=out, algorithm=algorithm, device=device)


def grouped_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
                   activation=None, layout="NCHW", out=None, algorithm="auto", device=None):
    """Grouped convolution: C_in and C_out split into ``groups`` independent convolutions."""
    return conv2d(x, weight, bias, stride, padding, dilation, groups, padding_mode=padding_mode,
                  activation=activation, layout=layout, out=out, algorithm=algorithm, device=device)
