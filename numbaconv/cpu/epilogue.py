"""The fused epilogue every CPU kernel applies when it stores a result: bias, then activation.

Activation codes follow ``spec.ACTIVATIONS``: 0 none, 1 relu, 2 relu6, 3 silu, 4 hardswish.
Comparisons are written so that NaN falls through unchanged (``NaN < 0`` is false),
as in torch.
"""

import numpy as np
from numba import njit, prange

from ..config import FASTMATH, PARALLEL_MIN_ELEMENTS
from .twins import Twins


@njit(inline="always", fastmath=FASTMATH, cache=True)
def activate(value, code):
    if code == 0:
        return value
    if code == 1:  # relu
        return 0.0 if value < 0 else value
    if code == 2:  # relu6
        if value < 0:
            return 0.0
        return 6.0 if value > 6 else value
    if code == 3:  # silu: x * sigmoid(x)
        return value * (1 / (1 + np.exp(-value)))
    # hardswish: x * relu6(x + 3) / 6
    gate = value + 3
    if gate < 0:
        return value * 0.0  # -inf * 0 is NaN, as torch's x * relu6(x + 3) / 6 gives
    if gate > 6:
        return value
    return value * gate / 6


def _bias_activation(out, bias, code):
    """out[n, c, :] = activate(out + bias[c]) over a C-contiguous (N, C, P) array, in place.

    Used after a BLAS product, which cannot fuse the epilogue; (n, c) rows are independent.
    """
    n_images, n_channels, n_pixels = out.shape
    for task in prange(n_images * n_channels):
        n = task // n_channels
        c = task % n_channels
        b = bias[c]
        for p in range(n_pixels):
            out[n, c, p] = activate(out[n, c, p] + b, code)


# Small outputs take the serial twin: waking the thread pool costs more than the whole pass.
_bias_activation_twins = Twins(_bias_activation, fastmath=FASTMATH)


def _bias_activation_last(out, bias, code):
    """out[p, c] = activate(out[p, c] + bias[c]) over a C-contiguous (P, C) array (channels last), in place."""
    n_pixels, n_channels = out.shape
    for p in prange(n_pixels):
        for c in range(n_channels):
            out[p, c] = activate(out[p, c] + bias[c], code)


_bias_activation_last_twins = Twins(_bias_activation_last, fastmath=FASTMATH)


def bias_activation_last_inplace(out, bias, code):
    """The epilogue over a channels-last (P, C) result."""
    _bias_activation_last_twins(out.size, out, bias, code, minimum=PARALLEL_MIN_ELEMENTS)


def bias_activation_inplace(out, bias, code):
    """The epilogue over a (N, C, P) result."""
    _bias_activation_twins(out.size, out, bias, code, minimum=PARALLEL_MIN_ELEMENTS)
