"""Depthwise-separable convolution (MobileNet, Xception): a depthwise k x k convolution, an optional
activation, then a 1x1 pointwise convolution, **fused so the intermediate never exists at full size**.

The batch is cut into chunks (several whole images, or bands of output rows of one image) whose
intermediate holds at most ``config.SEPARABLE_CHUNK_ELEMENTS`` values, so it stays in the cache
between its two uses.  Per chunk:

    middle = depthwise kernel(input rows of the chunk)      # with its bias and activation fused
    out[chunk] = activation(pointwise weight x middle + pointwise bias)   # numbaconv's GEMM, epilogue fused

A band of rows reads the input rows it needs (its halo included) and passes the kernel a shifted
top padding, so borders, stride and dilation behave exactly as in one call.  Channels-last data
runs the NHWC kernels, where a band of output rows is one contiguous block of the result.

On the GPU (CUDA arrays) the two convolutions run one after the other, unfused.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np

from . import api, arrays, dispatch
from .config import SEPARABLE_CHUNK_ELEMENTS
from .cpu import depthwise as cpu_depthwise
from .cpu import gemm
from .spec import (ACTIVATION_CODES, DEVICES, Activation, Array, ConvSpec, Device, IntOrPair, Layout, Padding,
                   PaddingMode)


def separable_conv2d(x: Array, depthwise_weight: Array, pointwise_weight: Array, depthwise_bias: Array | None = None,
                     pointwise_bias: Array | None = None, stride: IntOrPair = 1, padding: Padding = 0,
                     dilation: IntOrPair = 1, *, padding_mode: PaddingMode = "zeros",
                     depthwise_activation: Activation = None, activation: Activation = None,
                     layout: Layout = "NCHW", out: Array | None = None, device: Device = None) -> Array:
    """Depthwise convolution (groups = C_in), ``depthwise_activation``, then a 1x1 convolution and ``activation``.

    Parameters
    ----------
    x : array
        (N, C_in, H, W) or unbatched (C_in, H, W); (N, H, W, C_in) with ``layout='NHWC'``.
    depthwise_weight : array
        (m*C_in, 1, kH, kW), for a channel multiplier m.
    pointwise_weight : array
        (C_out, m*C_in, 1, 1).
    depthwise_bias : array or None
        (m*C_in,): added to the depthwise result, before ``depthwise_activation``.
    pointwise_bias : array or None
        (C_out,): added to the pointwise result, before ``activation``.
    stride, padding, dilation : int, pair or str
        Of the depthwise convolution, as in `numbaconv.conv2d`.
    padding_mode : str
        Of the depthwise convolution.
    depthwise_activation, activation : {None, 'relu', 'relu6', 'silu', 'hardswish'}
        After each bias.
    layout : {'NCHW', 'NHWC'}
    out : array, optional
        Preallocated result of the exact shape and dtype.
    device : {None, 'cpu', 'cuda'}
        As in `numbaconv.conv2d`; on CUDA the two convolutions run unfused.

    Returns
    -------
    array
        The pointwise convolution's result (``out`` itself when given).

    Notes
    -----
    Equal to ``conv2d(conv2d(x, depthwise_weight, depthwise_bias, stride, padding, dilation, C_in,
    activation=depthwise_activation), pointwise_weight, pointwise_bias, activation=activation)``
    without the full-size intermediate: the CPU path runs over chunks of the batch (or bands of
    rows of one large image).
    """
    if device not in DEVICES:
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    channel_axis = -1 if layout == "NHWC" else -3
    x_shape = tuple(np.shape(x))
    in_channels = x_shape[channel_axis] if len(x_shape) in (3, 4) else None
    dw_shape = tuple(np.shape(depthwise_weight))
    if in_channels is None or len(dw_shape) != 4 or dw_shape[1] != 1:
        raise ValueError(f"separable_conv2d needs a 3-D or 4-D x and a (m*C_in, 1, kH, kW) depthwise_weight, got "
                         f"x.shape {x_shape} and depthwise_weight.shape {dw_shape}")
    if device == "cuda" or any(arrays.is_cuda_array(v) for v in (x, depthwise_weight, pointwise_weight, out)):
        middle = api.conv2d(x, depthwise_weight, depthwise_bias, stride, padding, dilation, in_channels,
                            padding_mode=padding_mode, activation=depthwise_activation, layout=layout, device=device)
        return api.conv2d(middle, pointwise_weight, pointwise_bias, activation=activation, layout=layout, out=out,
                          device=device)

    x, dw_weight, dw_bias, dw_spec = arrays.accept(
        x, depthwise_weight, depthwise_bias, stride, padding, dilation, in_channels, padding_mode=padding_mode,
        activation=depthwise_activation, layout=layout, out=None)
    pw_weight = arrays.as_host_array(pointwise_weight, "pointwise_weight")
    pw_bias = None if pointwise_bias is None else arrays.as_host_array(pointwise_bias, "pointwise_bias")
    if pw_weight.ndim != 4 or pw_weight.shape[2:] != (1, 1):
        raise ValueError(f"pointwise_weight must be (C_out, {dw_spec.out_channels}, 1, 1), got shape {pw_weight.shape}")
    for name, value in (("pointwise_weight", pw_weight), ("pointwise_bias", pw_bias)):
        if value is not None and value.dtype != dw_spec.dtype:
            raise TypeError(f"{name} must have the dtype of x, got x {dw_spec.dtype} and {name} {value.dtype}")
    pw_spec = _pointwise_spec(dw_spec.out_shape, pw_weight.shape, None if pw_bias is None else pw_bias.shape,
                              dw_spec.dtype, activation, layout)
    if out is not None:
        arrays.check_out(out, pw_spec, {"x": x, "depthwise_weight": dw_weight, "pointwise_weight": pw_weight,
                                        "depthwise_bias": dw_bias, "pointwise_bias": pw_bias})
    # a filter too large for the depthwise kernel, or degenerate geometry (ConvSpec.kernel_view): unfused
    if dispatch.select(dw_spec)[0].name != "depthwise" or dw_spec.kernel_view[0] is not dw_spec:
        middle = api.conv2d(x, dw_weight, dw_bias, stride, padding, dilation, in_channels, padding_mode=padding_mode, activation=depthwise_activation, layout=layout)
        return api.conv2d(middle, pw_weight, pw_bias, activation=activation, layout=layout, out=out)

    result = arrays.kernel_output(out, pw_spec, layout)
    if result.size:
        run_fused(dw_spec, arrays.to_batched(x, dw_spec), dw_weight, arrays.kernel_bias(dw_bias, dw_spec),
                  pw_weight, arrays.kernel_bias(pw_bias, pw_spec), result, ACTIVATION_CODES[activation])
    return arrays.finish(result, pw_spec, out, layout)


@lru_cache(maxsize=256)
def _pointwise_spec(middle_shape, weight_shape, bias_shape, dtype, activation, layout):
    # validated once per shape (activation is a hashable str/None here: accept() checked it for the depthwise)
    return ConvSpec.from_shapes(middle_shape, weight_shape, bias_shape, dtype=dtype, activation=activation,
                                layout=layout)


def chunks(n_images: int, out_height: int, row_elements: int, budget: int | None = None):
    """``(n0, n1, oh0, oh1)`` pieces of the output: whole images while an image's intermediate fits
    ``budget`` elements (default ``SEPARABLE_CHUNK_ELEMENTS``; ``row_elements`` per output row),
    else bands of rows of one image."""
    if budget is None:
        budget = SEPARABLE_CHUNK_ELEMENTS
    image = out_height * row_elements
    if image <= budget:
        per_chunk = max(1, budget // max(image, 1))
        return [(n, min(n + per_chunk, n_images), 0, out_height) for n in range(0, n_images, per_chunk)]
    rows = max(1, budget // max(row_elements, 1))
    return [(n, n + 1, oh, min(oh + rows, out_height)) for n in range(n_images) for oh in range(0, out_height, rows)]


def run_fused(dw_spec, x, dw_weight, dw_bias, pw_weight, pw_bias, out, activation_code):
    """x batched in ``dw_spec.layout`` (any strides); out C-contiguous batched in that layout."""
    nhwc = dw_spec.layout == "NHWC"
    sh, sw = dw_spec.stride
    dh, _ = dw_spec.dilation
    # other padding modes: each band's rows padded as it is cut (arrays.padded_band), then the kernel sees no
    # padding; zeros: the kernel skips the taps that fall outside
    bordered = dw_spec.padding_mode != "zeros" and dw_spec.has_padding
    if bordered:
        pad_top = pad_left = 0
        in_height = dw_spec.in_height + dw_spec.padding[0] + dw_spec.padding[1]
    else:
        x = np.ascontiguousarray(x)
        pad_top, pad_left = dw_spec.padding[0], dw_spec.padding[2]
        in_height = x.shape[1] if nhwc else x.shape[2]
    middle_channels, out_channels = dw_spec.out_channels, pw_weight.shape[0]
    out_height, out_width = dw_spec.out_height, dw_spec.out_width
    pixels = out_height * out_width
    mixing = np.ascontiguousarray(pw_weight.reshape(out_channels, middle_channels)).reshape(-1)
    threads = numba.get_num_threads()
    # each band's intermediate (and padded rows) in this thread's kept buffers: a fresh one per band faults its
    # pages in again where glibc hands large blocks back at free (measured in a Dask worker, whose nanny sets
    # MALLOC_TRIM_THRESHOLD_: 528 page faults and 3 ms of a 12 ms band; 8 and 9 ms in the client process)
    kept = 2 * SEPARABLE_CHUNK_ELEMENTS * x.dtype.itemsize
    for n0, n1, oh0, oh1 in chunks(dw_spec.batch, out_height, out_width * middle_channels):
        # the input rows this band reads, and the top padding that is left once they are cut out
        first = oh0 * sh - pad_top
        last = (oh1 - 1) * sh - pad_top + (dw_spec.kernel_height - 1) * dh
        start, stop = max(first, 0), max(min(last + 1, in_height), max(first, 0))
        rows = oh1 - oh0
        if bordered:
            band = arrays.padded_band(x[n0:n1], dw_spec, start, stop - start, dw_spec.layout, "separable_band",
                                      kept)
        else:
            band = np.ascontiguousarray(x[n0:n1, start:stop] if nhwc else x[n0:n1, :, start:stop])
        if nhwc:
            middle = arrays.scratch("separable_middle", (n1 - n0, rows, out_width, middle_channels), x.dtype, kept)
            cpu_depthwise.run_nhwc(band, dw_weight, dw_bias, middle, dw_spec.channel_multiplier, dw_spec.stride,
                                   dw_spec.dilation, start - first, pad_left, dw_spec.activation_code)
            pixels_here = (n1 - n0) * rows * out_width
            target = out[n0:n1, oh0:oh1].reshape(-1)  # contiguous: whole images or one band
            # the pointwise half: target (pixels x C_out) = middle (pixels x C_mid) @ W^T + bias, activated
            gemm.matmul(middle.reshape(-1), 0, middle_channels, 1, mixing, 0, 1, middle_channels, target, 0,
                        out_channels, 1, pixels_here, out_channels, middle_channels, pw_bias, False, activation_code,
                        threads)
        else:
            middle = arrays.scratch("separable_middle", (n1 - n0, middle_channels, rows, out_width), x.dtype, kept)
            cpu_depthwise.run_nchw(band, dw_weight, dw_bias, middle, dw_spec.channel_multiplier, dw_spec.stride,
                                   dw_spec.dilation, start - first, pad_left, dw_spec.activation_code)
            # the pointwise half, per image: out[n, :, band] (C_out x band pixels, rows `pixels` apart: a band of a
            # plane) = W (C_out x C_mid) @ middle[n] + bias, activated
            band_pixels = rows * out_width
            target = out.reshape(-1)[(n0 * out_channels * pixels + oh0 * out_width):]
            gemm.matmul(mixing, 0, middle_channels, 1, middle.reshape(-1), middle_channels * band_pixels, band_pixels,
                        1, target, out_channels * pixels, pixels, n1 - n0, out_channels, band_pixels, middle_channels,
                        pw_bias, True, activation_code, threads)
