"""Depthwise convolution (groups = C_in, optional channel multiplier), NCHW.

Output channel co reads input channel co // multiplier through its own kH x kW filter.
Memory-bound: each input and output element should cross the memory bus once.

Loop nest of one parallel task (one output plane: image n, output channel co):

    for oh:                                   # output row, stays in L1
        row[:] = 0
        for kh with a valid input row:        # row test once per (oh, kh), outside the SIMD loop
            for kw:
                [lo, hi) = output columns whose tap kw lands inside the input row
                for ow in [lo, hi):           # no bounds test: SIMD over output columns
                    row[ow] += w[kh, kw] * x[ih, ow*sw + kw*dw - pad_left]
        row = activate(row + bias)

Zero padding is never materialised: for each tap the valid column range is exact
(computed from stride, dilation and padding), so the border costs only shorter
loops and the interior loop carries no bounds test.  Other padding modes arrive
pre-padded with zero padding left to apply.

Indexing is on flat views with unsigned indices and no per-row array views: a signed
index makes Numba guard it against negative wraparound (which stops vectorization),
and a view made inside the loop costs atomic reference counting on the shared array.
"""

import numpy as np
from numba import njit, prange

from ..config import FASTMATH
from .epilogue import activate

_U = np.uint64


@njit(inline="always", cache=True)
def _first_valid(offset, stride):
    # smallest ow >= 0 with ow*stride + offset >= 0
    return 0 if offset >= 0 else (-offset + stride - 1) // stride


@njit(inline="always", cache=True)
def _end_valid(offset, stride, in_size, out_size):
    # one past the largest ow with ow*stride + offset <= in_size - 1, clipped to [0, out_size]
    last = in_size - 1 - offset
    if last < 0:
        return 0
    return min(out_size, last // stride + 1)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def depthwise_conv_nchw(x, weight, bias, out, multiplier, stride_h, stride_w,
                        dilation_h, dilation_w, pad_top, pad_left, act):
    """x (N, C, H, W), weight (C*m, kH, kW), out (N, C*m, H_out, W_out); all C-contiguous."""
    n_images, in_channels, in_height, in_width = x.shape
    out_channels, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    kernel_height, kernel_width = weight.shape[1], weight.shape[2]
    x_flat = x.reshape(-1)
    w_flat = weight.reshape(-1)
    out_flat = out.reshape(-1)
    for plane in prange(n_images * out_channels):
        n = plane // out_channels
        co = plane % out_channels
        x_plane = (n * in_channels + co // multiplier) * in_height * in_width
        w_first = co * kernel_height * kernel_width
        b = bias[co]
        for oh in range(out_height):
            o_row = (plane * out_height + oh) * out_width
            for ow in range(out_width):
                out_flat[_U(o_row + ow)] = 0
            for kh in range(kernel_height):
                ih = oh * stride_h + kh * dilation_h - pad_top
                if ih < 0 or ih >= in_height:
                    continue
                x_row = x_plane + ih * in_width
                for kw in range(kernel_width):
                    w = w_flat[_U(w_first + kh * kernel_width + kw)]
                    offset = kw * dilation_w - pad_left
                    lo = _first_valid(offset, stride_w)
                    hi = _end_valid(offset, stride_w, in_width, out_width)
                    dst = _U(o_row + lo)
                    if stride_w == 1:  # unit stride: contiguous loads, the common case
                        src = _U(x_row + lo + offset)
                        for k in range(hi - lo):
                            out_flat[dst + _U(k)] += w * x_flat[src + _U(k)]
                    else:
                        src = _U(x_row + lo * stride_w + offset)
                        for k in range(hi - lo):
                            out_flat[dst + _U(k)] += w * x_flat[src + _U(k * stride_w)]
            for ow in range(out_width):
                index = _U(o_row + ow)
                out_flat[index] = activate(out_flat[index] + b, act)
