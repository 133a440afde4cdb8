"""The NumPy oracle: ``conv2d`` with numbaconv's signature, written to be obviously right.

It shares only argument validation (``ConvSpec``) and layout handling with the
kernels; the arithmetic is the textbook definition, one filter tap at a time:

    out[n, g*Cog + o, i, j] = bias[g*Cog + o]
        + sum_{c, kh, kw} w[g*Cog + o, c, kh, kw] * xpad[n, g*Cig + c, i*sh + kh*dh, j*sw + kw*dw]

computed in float64 whatever the input dtype (then rounded to it), so it is at least
as accurate as any kernel it judges.  Every test compares against it.
"""

from __future__ import annotations

import numpy as np

from . import arrays
from .spec import ConvSpec, check_dtypes


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


def conv2d_nchw(spec: ConvSpec, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """The definition, on a batched NCHW x; returns float64 (N, C_out, H_out, W_out)."""
    n, groups, cig, cog, ho, wo, (sh, sw), (dh, dw) = _sizes(spec)
    x = arrays.pad_input(x.astype(np.float64), spec)
    xg = x.reshape(n, groups, cig, x.shape[2], x.shape[3])
    wg = weight.astype(np.float64).reshape(groups, cog, cig, spec.kernel_height, spec.kernel_width)
    out = np.zeros((n, groups, cog, ho, wo), dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        for kh in range(spec.kernel_height):
            for kw in range(spec.kernel_width):
                # the input pixels tap (kh, kw) sees for every output pixel: (n, g, c, ho, wo)
                window = xg[:, :, :, kh * dh: kh * dh + sh * (ho - 1) + 1: sh, kw * dw: kw * dw + sw * (wo - 1) + 1: sw]
                out += np.einsum("ngchw,goc->ngohw", window, wg[:, :, :, kh, kw])
        out = out.reshape(n, spec.out_channels, ho, wo)
        if bias is not None:
            out = out + bias.astype(np.float64)[None, :, None, None]
        return ACTIVATION_FUNCTIONS[spec.activation](out)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", activation=None, layout="NCHW", out=None,
           algorithm="auto", device=None):
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
#     dL/dxpad[n, g*Cig + c, i*sh + kh*dh, j*sw + kw*dw] += w[g*Cog + o, c, kh, kw] * gy[n, g*Cog + o, i, j]
#     dL/dw[g*Cog + o, c, kh, kw] = sum_{n,i,j} gy[n, g*Cog + o, i, j] * xpad[n, g*Cig + c, i*sh + kh*dh, j*sw + kw*dw]
#
# (the forward's definition read backwards, one tap at a time), then dL/dx is dL/dxpad carried
# back through the padding: cropped for zero padding, and for reflect/replicate/circular each
# padded position's gradient added to the input pixel it copies.

def conv2d_grad_input_nchw(spec: ConvSpec, weight: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
    """dL/dx in float64 (N, C_in, H, W) from a batched NCHW grad_output."""
    n, groups, cig, cog, ho, wo, (sh, sw), (dh, dw) = _sizes(spec)
    top, bottom, left, right = spec.padding
    grad_padded = np.zeros((n, groups, cig, spec.in_height + top + bottom, spec.in_width + left + right))
    gy = grad_output.astype(np.float64).reshape(n, groups, cog, ho, wo)
    wg = weight.astype(np.float64).reshape(groups, cog, cig, spec.kernel_height, spec.kernel_width)
    with np.errstate(invalid="ignore", over="ignore"):
        for kh in range(spec.kernel_height):
            for kw in range(spec.kernel_width):
                window = grad_padded[:, :, :, kh * dh: kh * dh + sh * (ho - 1) + 1: sh,
                                     kw * dw: kw * dw + sw * (wo - 1) + 1: sw]
                window += np.einsum("ngohw,goc->ngchw", gy, wg[:, :, :, kh, kw])
    return arrays.unpad_adjoint(grad_padded.reshape(n, spec.in_channels, *grad_padded.shape[3:]), spec)


def conv2d_grad_weight_nchw(spec: ConvSpec, x: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
    """dL/dw in float64 (C_out, C_in/G, kH, kW) from batched NCHW x and grad_output."""
    n, groups, cig, cog, ho, wo, (sh, sw), (dh, dw) = _sizes(spec)
    x = arrays.pad_input(x.astype(np.float64), spec)
    xg = x.reshape(n, groups, cig, x.shape[2], x.shape[3])
    gy = grad_output.astype(np.float64).reshape(n, groups, cog, ho, wo)
    grad = np.zeros((groups, cog, cig, spec.kernel_height, spec.kernel_width))
    with np.errstate(invalid="ignore", over="ignore"):
        for kh in range(spec.kernel_height):
            for kw in range(spec.kernel_width):
                window = xg[:, :, :, kh * dh: kh * dh + sh * (ho - 1) + 1: sh, kw * dw: kw * dw + sw * (wo - 1) + 1: sw]
                grad[:, :, :, kh, kw] = np.einsum("ngohw,ngchw->goc", gy, window)
    return grad.reshape(spec.weight_shape)


def conv2d_grad_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                      padding_mode="zeros", layout="NCHW"):
    """Pure-NumPy ``numbaconv.conv2d_grad_input`` (same arguments and checks)."""
    from . import grad

    spec, weight, grad_output = grad.accept_grad_input(input_shape, weight, grad_output, stride, padding, dilation,
                                                       groups, padding_mode, layout)
    result = conv2d_grad_input_nchw(spec, weight, arrays.to_nchw(grad_output, spec))
    return grad.input_like(result.astype(spec.dtype), spec)


def conv2d_grad_weight(x, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                       padding_mode="zeros", layout="NCHW"):
    """Pure-NumPy ``numbaconv.conv2d_grad_weight`` (same arguments and checks)."""
    from . import grad

    spec, x, grad_output = grad.accept_grad_weight(x, weight_shape, grad_output, stride, padding, dilation, groups,
                                                   padding_mode, layout)
    result = conv2d_grad_weight_nchw(spec, arrays.to_nchw(x, spec), arrays.to_nchw(grad_output, spec))
    return result.astype(spec.dtype)


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           activation=None, layout="NCL"):
    """Pure-NumPy ``numbaconv.conv1d``, from the 1-D definition (not through the 2-D code):

        out[n, g*Cog + o, i] = bias[g*Cog + o] + sum_{c, k} w[g*Cog + o, c, k] * xpad[n, g*Cig + c, i*s + k*d]

    in float64, rounded to x's dtype.  Shares only the argument checks with the library."""
    from .convolution1d import conv1d_arguments

    _, (_, s), padding2, (_, d), _ = conv1d_arguments(x, weight, stride, padding, dilation, layout)
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
    _, _, left, right = spec.padding
    xp = np.pad(xs.astype(np.float64), ((0, 0), (0, 0), (left, right)), mode=arrays.NUMPY_PAD_MODES[padding_mode])
    n, length_out = xs.shape[0], spec.out_width
    cig, cog, kernel = spec.in_channels_per_group, spec.out_channels_per_group, weight.shape[2]
    w = weight.astype(np.float64)
    out = np.zeros((n, spec.out_channels, length_out))
    with np.errstate(invalid="ignore", over="ignore"):
        for g in range(groups):
            for k in range(kernel):
                window = xp[:, g * cig:(g + 1) * cig, k * d: k * d + s * (length_out - 1) + 1: s]  # (n, cig, L_out)
                out[:, g * cog:(g + 1) * cog] += np.einsum("ncl,oc->nol", window, w[g * cog:(g + 1) * cog, :, k])
        if bias is not None:
            out += np.asarray(bias, np.float64)[None, :, None]
        out = ACTIVATION_FUNCTIONS[spec.activation](out)
    if layout == "NLC":
        out = out.transpose(0, 2, 1)
    out = np.ascontiguousarray(out.astype(spec.dtype))
    return out if batched else out[0]
