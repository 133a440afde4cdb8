"""The NumPy oracle: ``conv2d`` with numbaconv's signature, written to be obviously right.

It shares only argument validation (``ConvSpec``) and layout handling with the
kernels; the arithmetic is the textbook definition, one filter tap at a time:

    out[n, g*Cog + o, i, j] = bias[g*Cog + o]
        + sum_{c, kh, kw} w[g*Cog + o, c, kh, kw] * xpad[n, g*Cig + c, i*sh + kh*dh, j*sw + kw*dw]

computed in float64 whatever the input dtype (then rounded to it), so it is at least
as accurate as any kernel it judges.  Every test compares against it.

The padded input ``xpad`` is never built: each tap reads, for each output row and column, the
input position ``i*sh + kh*dh - top`` (`padded_read`: inside the input, a copy of an input pixel
for reflect/replicate/circular padding, or a zero), so the oracle's work and memory follow the
output and the taps, whatever the padding, stride or dilation.
"""

from __future__ import annotations

import numpy as np

from . import arrays
from .spec import (Activation, Array, ConvSpec, Device, IntOrPair, Layout, Padding, PaddingMode,
                   check_dtypes)


def relu(v):
    return np.where(v < 0, 0.0, v)


def relu6(v):
    return np.where(v < 0, 0.0, np.where(v > 6, 6.0, v))


def silu(v):
    with np.errstate(over="ignore", invalid="ignore"):
        return v * (1.0 / (1.0 + np.exp(-v)))


def hardswish(v):
    with np.errstate(invalid="ignore"):
        return np.where(v + 3 < 0, v * 0.0, np.where(v + 3 > 6, v, v * (v + 3) / 6))


ACTIVATION_FUNCTIONS = {None: lambda v: v, "relu": relu, "relu6": relu6, "silu": silu, "hardswish": hardswish}


def _sizes(spec: ConvSpec):
    """(N, G, C_in/G, C_out/G, H_out, W_out, stride, dilation): the names the formulas use."""
    return (spec.batch, spec.groups, spec.in_channels_per_group, spec.out_channels_per_group, spec.out_height,
            spec.out_width, spec.stride, spec.dilation)


def padded_read(position: int, size: int, padding_mode: str) -> int:
    """The input index that position ``position`` of the padded axis holds (torch's padding modes:
    a position before the input is negative), or -1 where zero padding holds a zero."""
    if 0 <= position < size:
        return position
    if padding_mode == "zeros":
        return -1
    if padding_mode == "reflect":  # the edge pixel is not repeated
        return -position if position < 0 else 2 * (size - 1) - position
    if padding_mode == "replicate":
        return 0 if position < 0 else size - 1
    return position % size  # circular


def _tap_reads(spec: ConvSpec, kh: int, kw: int):
    """The input rows and columns tap (kh, kw) reads for every output row and column (-1: a zero)."""
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    top, left = spec.padding[0], spec.padding[2]
    rows = [padded_read(i * sh + kh * dh - top, spec.in_height, spec.padding_mode) for i in range(spec.out_height)]
    columns = [padded_read(j * sw + kw * dw - left, spec.in_width, spec.padding_mode) for j in range(spec.out_width)]
    return np.array(rows, dtype=np.int64), np.array(columns, dtype=np.int64)


def _window(x: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """x[..., rows, columns] on the last two axes, with zeros where a row or column is -1."""
    if x.size == 0 or rows.size == 0 or columns.size == 0:  # every position is padding, or no window at all
        return np.zeros(x.shape[:-2] + (len(rows), len(columns)))  # (never a rows x columns mask for nothing)
    # one gather of the output's positions (taking whole rows first costs out_height x in_width per tap)
    window = x[..., np.maximum(rows, 0)[:, None], np.maximum(columns, 0)[None, :]]
    return np.where((rows[:, None] >= 0) & (columns[None, :] >= 0), window, 0.0)


def conv2d_nchw(spec: ConvSpec, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """The definition, on a batched NCHW x; returns float64 (N, C_out, H_out, W_out)."""
    n, groups, cig, cog, ho, wo, _, _ = _sizes(spec)
    xg = x.astype(np.float64).reshape(n, groups, cig, spec.in_height, spec.in_width)
    wg = weight.astype(np.float64).reshape(groups, cog, cig, spec.kernel_height, spec.kernel_width)
    out = np.zeros((n, groups, cog, ho, wo), dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        for kh in range(spec.kernel_height) if out.size else ():  # an empty result: no tap to read
            for kw in range(spec.kernel_width):
                # the input pixels tap (kh, kw) sees for every output pixel: (n, g, c, ho, wo)
                window = _window(xg, *_tap_reads(spec, kh, kw))
                out += np.einsum("ngchw,goc->ngohw", window, wg[:, :, :, kh, kw])
        out = out.reshape(n, spec.out_channels, ho, wo)
        if bias is not None:
            out = out + bias.astype(np.float64)[None, :, None, None]
        return ACTIVATION_FUNCTIONS[spec.activation](out)


def conv2d(x: Array, weight: Array, bias: Array | None = None, stride: IntOrPair = 1, padding: Padding = 0,
           dilation: IntOrPair = 1, groups: int = 1, *, padding_mode: PaddingMode = "zeros",
           activation: Activation = None, layout: Layout = "NCHW", out: np.ndarray | None = None,
           algorithm: str = "auto", device: Device = None) -> np.ndarray:
    """Pure-NumPy ``numbaconv.conv2d``: same arguments, same checks, same result layout.

    ``algorithm`` must be ``'auto'`` or ``'reference'`` and ``device`` ``None`` or ``'cpu'``.
    """
    if device not in (None, "cpu"):
        raise ValueError(f"reference.conv2d runs on the CPU only, got device={device!r}")
    if algorithm not in ("auto", "reference"):
        raise ValueError(f"reference.conv2d has the single algorithm 'reference', got algorithm={algorithm!r}")
    x, weight, bias, spec = arrays.accept(x, weight, bias, stride, padding, dilation, groups, padding_mode=padding_mode,
                                          activation=activation, layout=layout, out=out)
    result = conv2d_nchw(spec, arrays.to_nchw(x, spec), weight, bias).astype(spec.dtype)
    return arrays.finish(result, spec, out)


def separable_conv2d(x, depthwise_weight, pointwise_weight, depthwise_bias=None, pointwise_bias=None, stride=1,
                     padding=0, dilation=1, *, padding_mode="zeros", depthwise_activation=None, activation=None,
                     layout="NCHW"):
    """Depthwise-separable convolution, the obvious way: the depthwise convolution (groups = C_in),
    its activation, then the 1x1 pointwise convolution and its activation."""
    channel_axis = -1 if layout == "NHWC" else -3
    middle = conv2d(x, depthwise_weight, depthwise_bias, stride, padding, dilation, np.shape(x)[channel_axis],
                    padding_mode=padding_mode, activation=depthwise_activation, layout=layout)
    return conv2d(middle, pointwise_weight, pointwise_bias, activation=activation, layout=layout)


# ---- gradients (the oracle of numbaconv.grad) ------------------------------------------------------
# For y = conv2d(x, w) (before bias and activation) and an upstream gradient gy = dL/dy:
#
#     dL/dx[n, g*Cig + c, r, s] += w[g*Cog + o, c, kh, kw] * gy[n, g*Cog + o, i, j]
#     dL/dw[g*Cog + o, c, kh, kw] = sum_{n,i,j} gy[n, g*Cog + o, i, j] * xpad[n, g*Cig + c, i*sh + kh*dh, j*sw + kw*dw]
#
# for every tap (kh, kw) and output (i, j) whose padded position holds input pixel (r, s) (`_tap_reads`:
# itself, or the pixel that reflect/replicate/circular padding copies; a zero contributes nothing):
# the forward's definition read backwards, one tap at a time.

def conv2d_grad_input_nchw(spec: ConvSpec, weight: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
    """dL/dx in float64 (N, C_in, H, W) from a batched NCHW grad_output."""
    n, groups, cig, cog, ho, wo, _, _ = _sizes(spec)
    grad = np.zeros((n, spec.in_channels, spec.in_height, spec.in_width))
    gy = grad_output.astype(np.float64).reshape(n, groups, cog, ho, wo)
    wg = weight.astype(np.float64).reshape(groups, cog, cig, spec.kernel_height, spec.kernel_width)
    with np.errstate(invalid="ignore", over="ignore"):
        for kh in range(spec.kernel_height):
            for kw in range(spec.kernel_width):
                rows, columns = _tap_reads(spec, kh, kw)
                part = np.einsum("ngohw,goc->ngchw", gy, wg[:, :, :, kh, kw]).reshape(n, spec.in_channels, ho, wo)
                part = part[:, :, rows >= 0][:, :, :, columns >= 0]
                # several outputs may read one pixel (padding copies): add.at accumulates repeated targets
                np.add.at(grad, (slice(None), slice(None), rows[rows >= 0][:, None],  # type: ignore[arg-type]
                                 columns[columns >= 0][None, :]), part)  # (NumPy's stubs refuse a tuple index)
    return grad


def conv2d_grad_weight_nchw(spec: ConvSpec, x: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
    """dL/dw in float64 (C_out, C_in/G, kH, kW) from batched NCHW x and grad_output."""
    n, groups, cig, cog, ho, wo, _, _ = _sizes(spec)
    xg = x.astype(np.float64).reshape(n, groups, cig, spec.in_height, spec.in_width)
    gy = grad_output.astype(np.float64).reshape(n, groups, cog, ho, wo)
    grad = np.zeros((groups, cog, cig, spec.kernel_height, spec.kernel_width))
    with np.errstate(invalid="ignore", over="ignore"):
        for kh in range(spec.kernel_height):
            for kw in range(spec.kernel_width):
                window = _window(xg, *_tap_reads(spec, kh, kw))
                grad[:, :, :, kh, kw] = np.einsum("ngohw,ngchw->goc", gy, window)
    return grad.reshape(spec.weight_shape)


def conv2d_grad_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                      padding_mode="zeros", layout="NCHW"):
    """Pure-NumPy ``numbaconv.conv2d_grad_input`` (same arguments and checks)."""
    spec, weight, grad_output = arrays.accept_grad_input(input_shape, weight, grad_output, stride, padding, dilation,
                                                       groups, padding_mode, layout)
    result = conv2d_grad_input_nchw(spec, weight, arrays.to_nchw(grad_output, spec))
    return arrays.input_like(result.astype(spec.dtype), spec)


def conv2d_grad_weight(x, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                       padding_mode="zeros", layout="NCHW"):
    """Pure-NumPy ``numbaconv.conv2d_grad_weight`` (same arguments and checks)."""
    spec, x, grad_output = arrays.accept_grad_weight(x, weight_shape, grad_output, stride, padding, dilation, groups,
                                                   padding_mode, layout)
    result = conv2d_grad_weight_nchw(spec, arrays.to_nchw(x, spec), arrays.to_nchw(grad_output, spec))
    return result.astype(spec.dtype)


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           activation=None, layout="NCL"):
    """Pure-NumPy ``numbaconv.conv1d``, from the 1-D definition (not through the 2-D code):

        out[n, g*Cog + o, i] = bias[g*Cog + o] + sum_{c, k} w[g*Cog + o, c, k] * xpad[n, g*Cig + c, i*s + k*d]

    in float64, rounded to x's dtype.  Shares only the argument checks with the library."""
    _, (_, s), padding2, (_, d), _ = arrays.conv1d_arguments(x, weight, stride, padding, dilation, layout)
    x, weight = np.asarray(x), np.asarray(weight)
    # every shape/dtype check: the one-row-high 2-D problem's ConvSpec
    row_axis = x.ndim - 1 if layout == "NCL" else x.ndim - 2
    spec = ConvSpec.from_shapes(np.expand_dims(x, row_axis).shape, weight.shape[:2] + (1,) + weight.shape[2:],
                                None if bias is None else np.shape(bias), (1, s), padding2, (1, d), groups,
                                dtype=check_dtypes(x.dtype, weight.dtype,
                                                          None if bias is None else np.asarray(bias).dtype),
                                padding_mode=padding_mode, activation=activation,
                                layout="NCHW" if layout == "NCL" else "NHWC")
    batched = x.ndim == 3
    xs = x if batched else x[np.newaxis]
    if layout == "NLC":
        xs = xs.transpose(0, 2, 1)
    left = spec.padding[2]
    xs = xs.astype(np.float64)
    n, length, length_out = xs.shape[0], xs.shape[2], spec.out_width
    cig, cog, kernel = spec.in_channels_per_group, spec.out_channels_per_group, weight.shape[2]
    w = weight.astype(np.float64)
    out = np.zeros((n, spec.out_channels, length_out))
    with np.errstate(invalid="ignore", over="ignore"):
        for k in range(kernel):
            # the position tap k of output i reads: i*s + k*d in the padded sequence
            reads = np.array([padded_read(i * s + k * d - left, length, padding_mode) for i in range(length_out)],
                             dtype=np.int64)
            taken = (np.where(reads >= 0, xs.take(np.maximum(reads, 0), axis=2), 0.0) if length
                     else np.zeros(xs.shape[:2] + (length_out,)))  # (n, C_in, L_out); empty input: padding
            for g in range(groups):
                window = taken[:, g * cig:(g + 1) * cig]
                out[:, g * cog:(g + 1) * cog] += np.einsum("ncl,oc->nol", window, w[g * cog:(g + 1) * cog, :, k])
        if bias is not None:
            out += np.asarray(bias, np.float64)[None, :, None]
        out = ACTIVATION_FUNCTIONS[spec.activation](out)
    if layout == "NLC":
        out = out.transpose(0, 2, 1)
    out = np.ascontiguousarray(out.astype(spec.dtype))
    return out if batched else out[0]
