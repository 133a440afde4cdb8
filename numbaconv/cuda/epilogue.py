"""Device-side pieces shared by the CUDA kernels: the fused bias + activation of the store,
the padded copy used for the non-zero padding modes, and the gather of degenerate geometry."""

from __future__ import annotations

import math

from numba import cuda


def activation(scalar):
    """The fused activation for ``scalar`` (float32 or float64) results, in that precision: the codes
    of ``spec.ACTIVATIONS`` (0 none, 1 relu, 2 relu6, 3 silu, 4 hardswish), each the CPU's
    (cpu/epilogue.py) operation for operation, written so that NaN falls through unchanged."""
    zero, one, three, six = scalar(0), scalar(1), scalar(3), scalar(6)

    @cuda.jit(device=True, inline=True, cache=True)
    def activate(value, code):
        if code == 1:
            return zero if value < zero else value
        if code == 2:
            if value < zero:
                return zero
            return six if value > six else value
        if code == 3:
            return value * (one / (one + math.exp(-value)))
        if code == 4:
            gate = value + three
            if gate < zero:
                return value * zero  # -inf * 0 is NaN, as torch's x * relu6(x + 3) / 6 gives
            if gate > six:
                return value
            return value * gate / six
        return value

    return activate


@cuda.jit(device=True, inline=True, cache=True)
def digits(index, plane, columns):
    """A flat index -> its digits (outer, row, column) in the radix (any, plane // columns, columns), plane being
    rows * columns: an (image, output row, column) of a reduction over pixels, an (input channel, kernel row,
    kernel column) of a reduction index, the starting point and the step that `advance` adds."""
    outer = index // plane
    rest = index - outer * plane
    row = rest // columns
    return outer, row, rest - row * columns


@cuda.jit(device=True, inline=True, cache=True)
def advance(outer, row, column, step_outer, step_row, step_column, rows, columns):
    """The digits (outer, row, column) of a flat index in the radix (any, rows, columns) -> those of the
    index plus a constant step whose own digits are (step_outer, step_row, step_column): a mixed-radix
    addition with one carry per digit, so that a loop walks a 3-D index space with no division
    (the implicit GEMM's reduction index, the depthwise kernel's staging)."""
    column += step_column
    if column >= columns:
        column -= columns
        row += 1
    row += step_row
    if row >= rows:
        row -= rows
        outer += 1
    return outer + step_outer, row, column


@cuda.jit(device=True, inline=True, cache=True)
def source_index(i, size, mode):
    """Where padded index ``i`` (may be < 0 or >= size) reads from: 1 reflect, 2 replicate, 3 circular."""
    if mode == 1:
        if i < 0:
            return -i
        if i >= size:
            return 2 * (size - 1) - i
        return i
    if mode == 2:
        return min(max(i, 0), size - 1)
    return (i % size + size) % size


@cuda.jit(device=True, inline=True, cache=True)
def unravel(index, shape):
    """Flat index -> (n, c, i, j) of a 4-D shape."""
    j = index % shape[3]
    rest = index // shape[3]
    i = rest % shape[2]
    rest //= shape[2]
    return rest // shape[1], rest % shape[1], i, j


@cuda.jit(cache=True)
def pad_copy(x, out, pad_top, pad_left, mode):
    """out[n, c, i, j] = x[n, c, source(i - pad_top), source(j - pad_left)]: one thread per element."""
    index = cuda.grid(1)
    if index >= out.size:
        return
    n, c, i, j = unravel(index, out.shape)
    rows, columns = x.shape[2], x.shape[3]
    out[n, c, i, j] = x[n, c, source_index(i - pad_top, rows, mode), source_index(j - pad_left, columns, mode)]


@cuda.jit(cache=True)
def gather_copy(x, out, rows, columns):
    """out[n, c, i, j] = x[n, c, rows[i], columns[j]], or 0 where either index is -1 (a zero of the
    padding): the input of a degenerate convolution as its kernel view reads it (spec.ConvSpec.kernel_view)."""
    index = cuda.grid(1)
    if index >= out.size:
        return
    n, c, i, j = unravel(index, out.shape)
    row, column = rows[i], columns[j]
    if row < 0 or column < 0:
        out[n, c, i, j] = 0
    else:
        out[n, c, i, j] = x[n, c, row, column]
