"""Gradients of conv2d, for training: ``conv2d_grad_input``, ``conv2d_grad_weight``, ``conv2d_grad_bias``.

Semantics of ``torch.nn.grad.conv2d_input`` / ``conv2d_weight``: the gradients of the loss with
respect to x and to the weight of ``y = conv2d(x, weight, ...)``, given ``grad_output = dL/dy``,
before any bias or activation (apply the activation's derivative to ``grad_output`` first).
Every option of the forward is accepted: stride, padding (incl. 'same'/'valid'), dilation,
groups, channel multiplier, padding modes, unbatched input, ``layout='NHWC'``.

How they run on the CPU, reusing the forward kernels where the algebra allows:

* **grad input** is a convolution of ``grad_output`` with the flipped, channel-transposed weight
  (a "full" correlation: padded by the dilated kernel extent minus 1, the grad zero-upsampled by
  the stride first).  It runs through `numbaconv.conv2d`, so depthwise layers use the depthwise
  kernel and the others the grouped/BLAS kernels; then the padding's adjoint (crop, or fold the
  border back for reflect/replicate/circular).  For a stride-1 layer with equal zero padding on both
  sides the crop back to the input is folded into that convolution's padding, and it runs in the
  caller's layout; a strided depthwise layer with zero padding has a one-pass kernel
  (`_depthwise_grad_input_kernel`).
* **grad weight**, dense and grouped: one batched BLAS product per image,
  ``grad_output[n, g] (C_out/G x P) @ im2col(x)[n, g]^T (P x K)``, summed over the images in float64;
  the im2col is built a few images at a time in a kept scratch buffer.
* **grad weight**, depthwise: a reduction over N x H_out x W_out per filter tap.  Without a channel
  multiplier, `cpu.depthwise.weight_gradient`: per task (image, 16 channels, band of rows) the rows
  are staged channels last and every tap reduced with the channels in SIMD lanes, into the task's
  own slot; with one, a Numba kernel parallel over (output channel, tap), each task owning one
  weight element.  No two threads write one place.  **float32 inputs are accumulated in float64**
  (products and sums), so a reduction over millions of pixels loses no precision to the
  accumulator; the result is rounded to float32 once.
* **grad bias**: the sum of ``grad_output`` over images and pixels, accumulated in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from . import api, arrays
from .cpu import depthwise as cpu_depthwise
from .cpu import grouped as cpu_grouped
from .cpu.twins import Twins
from .config import FASTMATH, SCRATCH_BYTES
from .arrays import accept_grad_input, accept_grad_weight, input_like  # noqa: F401 (also numbaconv.grad's)
from .spec import Array, ConvSpec, IntOrPair, Layout, Padding, PaddingMode

_U = np.uint64


# ---- validation: in numbaconv.arrays, shared with numbaconv.reference -------------------------------------


# ---- public functions ----------------------------------------------------------------------------
def _on_device(*values) -> bool:
    return any(arrays.is_cuda_array(value) for value in values)


def conv2d_grad_input(input_shape: tuple[int, ...], weight: Array, grad_output: Array, stride: IntOrPair = 1,
                      padding: Padding = 0, dilation: IntOrPair = 1, groups: int = 1, *,
                      padding_mode: PaddingMode = "zeros", layout: Layout = "NCHW", stream: Any = None) -> Array:
    """dL/dx of ``y = conv2d(x, weight, ...)`` for x of ``input_shape``, given ``grad_output`` = dL/dy.

    Same semantics as ``torch.nn.grad.conv2d_input(input_shape, weight, grad_output, stride, padding, dilation,
    groups)``, with numbaconv's padding modes and layouts.

    Parameters
    ----------
    input_shape : tuple of int
        x's shape: (N, C_in, H, W) or (C_in, H, W); (N, H, W, C_in) with ``layout='NHWC'``.
    weight : array
        (C_out, C_in/groups, kH, kW), as in the forward call.
    grad_output : array
        dL/dy, of the forward result's shape and the weight's dtype.
    stride, padding, dilation, groups, padding_mode, layout
        The forward call's (see `conv2d`).
    stream : optional
        CUDA only: the stream to launch on (by default grad_output's current stream).

    Returns
    -------
    array
        dL/dx, of ``input_shape`` and the weight's dtype; CUDA arrays (Numba, CuPy, torch) run the CUDA kernels and
        give a result of grad_output's family.
    """
    if _on_device(weight, grad_output):
        from .cuda import grad as cuda_grad

        return cuda_grad.grad_input(input_shape, weight, grad_output, stride, padding, dilation, groups,
                                    padding_mode=padding_mode, layout=layout, stream=stream)
    spec, weight, grad_output = accept_grad_input(input_shape, weight, grad_output, stride, padding, dilation,
                                                  groups, padding_mode, layout)
    if 0 in (spec.batch, spec.in_channels, spec.in_height, spec.in_width):
        return input_like(np.zeros((spec.batch, spec.in_channels, spec.in_height, spec.in_width), spec.dtype), spec)
    direct = _grad_input_direct(spec, weight, grad_output)
    if direct is not None:
        return direct
    if spec.is_depthwise and spec.stride != (1, 1) and (spec.padding_mode == "zeros" or not spec.has_padding) \
            and not any(spec.kernel_view[1]) and spec.out_height and spec.out_width:
        return input_like(_depthwise_grad_input(spec, weight, arrays.to_nchw(grad_output, spec)), spec)
    kernel_spec = spec.kernel_view[0]  # degenerate geometry: the gradient of the gathered input, carried back
    grad_padded = _grad_padded_input(kernel_spec, weight, arrays.to_nchw(grad_output, spec))
    grad_gathered = arrays.unpad_adjoint(grad_padded, kernel_spec)
    return input_like(arrays.kernel_input_adjoint(grad_gathered, spec), spec)


def _transposed_weight(spec: ConvSpec, weight: np.ndarray) -> np.ndarray:
    """weight (G*Cog, Cig, kH, kW) -> flipped taps, per group (Cig outputs, Cog inputs): (G*Cig, Cog, kH, kW), the
    weight of the convolution whose forward is the input gradient."""
    groups, cog, cig = spec.groups, spec.out_channels_per_group, spec.in_channels_per_group
    return np.ascontiguousarray(
        weight.reshape(groups, cog, cig, spec.kernel_height, spec.kernel_width)[:, :, :, ::-1, ::-1]
        .transpose(0, 2, 1, 3, 4).reshape(spec.in_channels, cog, spec.kernel_height, spec.kernel_width))


def _grad_input_direct(spec: ConvSpec, weight: np.ndarray, grad_output: np.ndarray):
    """The input gradient of a stride-1 layer with zero padding equal on both sides (most layers) as one
    convolution straight into the caller's layout: the "full" correlation's crop to the input folded into its
    padding (extent - 1 - padding per side), so no padded intermediate, crop, or layout copy.  None otherwise."""
    top, bottom, left, right = spec.padding
    extent_h = (spec.kernel_height - 1) * spec.dilation[0] + 1
    extent_w = (spec.kernel_width - 1) * spec.dilation[1] + 1
    if (spec.stride != (1, 1) or (spec.has_padding and spec.padding_mode != "zeros") or any(spec.kernel_view[1])
            or top != bottom or left != right or top > extent_h - 1 or left > extent_w - 1
            or 0 in (spec.out_channels, spec.out_height, spec.out_width)):
        return None
    return api.conv2d(grad_output, _transposed_weight(spec, weight), None, 1, (extent_h - 1 - top, extent_w - 1 - left),
                      spec.dilation, spec.groups, layout=spec.layout)


def _depthwise_grad_input_kernel(grad_output, weight, grad, multiplier, stride_h, dilation_h, pad_top, pad_left,
                                 stride_w, tap_phase, tap_shift, phase_offset, phase_first, phase_length):
    """grad[n, c] = sum over the channel's m outputs and taps of grad_output scattered back through the strided,
    dilated, zero-padded window, gathered row by row (no zero-upsampled gradient, no padded intermediate).

    Input row ih (padded row ph = ih + top) receives tap row i from output row (ph - i*dh) / sh when that divides.
    Along a row, padded column pw = b + sw*q has phase b = pw mod sw; tap column j reads phase
    tap_phase[j] (b = j*dw mod sw) and adds weight * grad_output[.., q - tap_shift[j]] (shift j*dw // sw) to
    acc[phase, q - phase_first[phase]]: a contiguous, vectorizable loop.  Each phase row covers only the q whose
    column lies inside x (phase_first, phase_length: at most W / sw + 1 of them, whatever the padding and the
    stride), and is interleaved into the input row once.  One task per (image, input channel) owns its plane."""
    n_images, out_channels, out_height, out_width = grad_output.shape
    in_channels, height, width = grad.shape[1], grad.shape[2], grad.shape[3]
    kernel_h, kernel_w = weight.shape[2], weight.shape[3]
    phases = len(phase_offset)
    longest = 0
    for p in range(phases):
        longest = max(longest, phase_length[p])
    for task in prange(n_images * in_channels):
        n = task // in_channels
        c = task % in_channels
        acc = np.empty((phases, longest), grad.dtype)
        for ih in range(height):
            acc[:, :] = 0
            padded_row = ih + pad_top
            for i in range(kernel_h):
                source = padded_row - i * dilation_h
                if source < 0 or source % stride_h != 0 or source // stride_h >= out_height:
                    continue
                oh = source // stride_h
                for m in range(multiplier):
                    co = c * multiplier + m
                    row = grad_output[n, co, oh]
                    for j in range(kernel_w):
                        p = tap_phase[j]
                        first, shift = phase_first[p], tap_shift[j]
                        value = weight[co, 0, i, j]
                        phase = acc[p]
                        # q in [first, first + length) with 0 <= q - shift < out_width; unsigned: no wraparound
                        for q in range(max(first, shift), min(first + phase_length[p], out_width + shift)):
                            phase[_U(q - first)] += value * row[_U(q - shift)]
            target = grad[n, c, ih]
            for p in range(phases):  # interleave: phase row element r is input column offset + sw * r
                phase = acc[p]
                offset = phase_offset[p]
                for r in range(phase_length[p]):
                    target[_U(offset + stride_w * r)] = phase[_U(r)]


_depthwise_grad_input_twins = Twins(_depthwise_grad_input_kernel, fastmath=FASTMATH)


def _depthwise_grad_input(spec: ConvSpec, weight: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
    """The input gradient of a strided depthwise layer with zero padding, (N, C_in, H, W), in one pass.  Every
    input column belongs to one phase b = (column + left) mod sw; the phases are listed in full (each holds the
    columns b - left + sw*r), and taps map to them, so the work and the buffers scale with the input."""
    top, _, left, _ = spec.padding
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    width = spec.in_width
    # the phases that hold input columns: b in [0, sw) with some column iw = b + sw*q - left in [0, width)
    offsets: list[int] = []
    firsts: list[int] = []
    lengths: list[int] = []
    index: dict = {}
    for iw in range(min(sw, width)):  # the first sw input columns start every phase that has a column
        b = (iw + left) % sw
        first = (iw + left) // sw
        index[b] = len(offsets)
        offsets.append(iw)
        firsts.append(first)
        lengths.append((width - 1 - iw) // sw + 1)
    tap_phase, tap_shift = [], []
    for j in range(spec.kernel_width):
        b = j * dw % sw
        tap_phase.append(index.get(b, -1))
        tap_shift.append(j * dw // sw)
    if -1 in tap_phase:  # a tap whose phase holds no input column: it adds nothing, point it at an empty row
        offsets.append(0)
        firsts.append(0)
        lengths.append(0)
        tap_phase = [len(offsets) - 1 if p == -1 else p for p in tap_phase]
    grad = np.empty((spec.batch, spec.in_channels, spec.in_height, spec.in_width), spec.dtype)
    as_array = lambda values: np.array(values, np.int64)  # noqa: E731
    _depthwise_grad_input_twins(grad_output.size * spec.kernel_height * spec.kernel_width,
                                np.ascontiguousarray(grad_output), np.ascontiguousarray(weight), grad,
                                spec.channel_multiplier, sh, dh, top, left, sw, as_array(tap_phase),
                                as_array(tap_shift), as_array(offsets), as_array(firsts), as_array(lengths))
    return grad


def _grad_padded_input(spec: ConvSpec, weight: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
    """dL/d(padded x), (N, C_in, Hp, Wp), as one forward convolution (see the module docstring)."""
    top, bottom, left, right = spec.padding
    padded_height, padded_width = spec.in_height + top + bottom, spec.in_width + left + right
    sh, sw = spec.stride
    extent_h = (spec.kernel_height - 1) * spec.dilation[0] + 1
    extent_w = (spec.kernel_width - 1) * spec.dilation[1] + 1
    if spec.out_channels == 0 or spec.out_height == 0 or spec.out_width == 0:
        return np.zeros((spec.batch, spec.in_channels, padded_height, padded_width), spec.dtype)
    if (sh, sw) == (1, 1):
        upsampled = grad_output
    else:  # zeros between the gradient's pixels: the positions the strided forward skipped
        upsampled = np.zeros((spec.batch, spec.out_channels, (spec.out_height - 1) * sh + 1,
                              (spec.out_width - 1) * sw + 1), spec.dtype)
        upsampled[:, :, ::sh, ::sw] = grad_output
    full = api.conv2d(upsampled, _transposed_weight(spec, weight), None, 1, (extent_h - 1, extent_w - 1),
                      spec.dilation, spec.groups)
    if full.shape[2:] == (padded_height, padded_width):
        return full
    # the last rows/columns that no output read (when the stride does not divide the extent) get zero gradient
    grad_padded = np.zeros((spec.batch, spec.in_channels, padded_height, padded_width), spec.dtype)
    grad_padded[:, :, : full.shape[2], : full.shape[3]] = full
    return grad_padded


def conv2d_grad_weight(x: Array, weight_shape: tuple[int, int, int, int], grad_output: Array, stride: IntOrPair = 1,
                       padding: Padding = 0, dilation: IntOrPair = 1, groups: int = 1, *,
                       padding_mode: PaddingMode = "zeros", layout: Layout = "NCHW", stream: Any = None) -> Array:
    """dL/dweight of ``y = conv2d(x, weight, ...)`` for a weight of ``weight_shape``, given dL/dy.

    Same semantics as ``torch.nn.grad.conv2d_weight(x, weight_shape, grad_output, stride, padding, dilation,
    groups)``, with numbaconv's padding modes and layouts; products summed in float64 on the CPU.

    Parameters
    ----------
    x : array
        The forward call's input: (N, C_in, H, W) or (C_in, H, W); (N, H, W, C_in) with ``layout='NHWC'``.
    weight_shape : tuple of int
        (C_out, C_in/groups, kH, kW).
    grad_output : array
        dL/dy, of the forward result's shape and x's dtype.
    stride, padding, dilation, groups, padding_mode, layout
        The forward call's (see `conv2d`).
    stream : optional
        CUDA only: the stream to launch on.

    Returns
    -------
    array
        dL/dweight, of ``weight_shape`` and x's dtype (CUDA arrays: a result of x's family).
    """
    if _on_device(x, grad_output):
        from .cuda import grad as cuda_grad

        return cuda_grad.grad_weight(x, weight_shape, grad_output, stride, padding, dilation, groups,
                                     padding_mode=padding_mode, layout=layout, stream=stream)
    spec, x, grad_output = accept_grad_weight(x, weight_shape, grad_output, stride, padding, dilation, groups,
                                              padding_mode, layout)
    gy = arrays.to_nchw(grad_output, spec)
    if 0 in (spec.batch, spec.out_height, spec.out_width) or 0 in spec.weight_shape:
        return np.zeros(spec.weight_shape, spec.dtype)
    spec, x = arrays.kernel_input(arrays.to_nchw(x, spec), spec)  # degenerate geometry gathered
    if spec.is_depthwise:
        return _depthwise_grad_weight(spec, x, gy)
    pixels = spec.out_height * spec.out_width
    gy = np.ascontiguousarray(gy).reshape(spec.batch, spec.groups, spec.out_channels_per_group, pixels)
    # images in chunks whose im2col fits a kept scratch buffer: a fresh one of tens of MiB faulted in every
    # page on every call (conv4_grouped at batch 8: 6 of 13 ms), and memory stays bounded by the chunk
    per_image = spec.in_channels * spec.kernel_height * spec.kernel_width * pixels * spec.dtype.itemsize
    chunk = max(1, SCRATCH_BYTES // max(per_image, 1))
    total = np.zeros((spec.groups, spec.out_channels_per_group, spec.reduction_length), np.float64)
    for n0 in range(0, spec.batch, chunk):
        n1 = min(n0 + chunk, spec.batch)
        columns = cpu_grouped.gemm_columns(spec.band(n1 - n0, spec.out_height), x[n0:n1], "grad_weight_columns")
        product = np.matmul(gy[n0:n1], columns.transpose(0, 1, 3, 2))  # (n, G, C_out/G, K)
        total += product.sum(axis=0, dtype=np.float64) if n1 - n0 > 1 else product[0]
    return total.astype(spec.dtype).reshape(spec.weight_shape)


def conv2d_grad_bias(grad_output: Array, layout: Layout = "NCHW", *, stream: Any = None) -> Array:
    """dL/dbias of a convolution, given ``grad_output`` = dL/dy.

    Parameters
    ----------
    grad_output : array
        (N, C_out, H_out, W_out) or unbatched; (N, H_out, W_out, C_out) with ``layout='NHWC'``.
    layout : {'NCHW', 'NHWC'}
        grad_output's layout.
    stream : optional
        CUDA only: the stream to launch on.

    Returns
    -------
    array
        (C_out,): grad_output summed over images and pixels (float64 accumulation), in its dtype.
    """
    if _on_device(grad_output):
        from .cuda import grad as cuda_grad

        return cuda_grad.grad_bias(grad_output, layout, stream=stream)
    grad_output = arrays.as_host_array(grad_output, "grad_output")
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be one of ('NCHW', 'NHWC'), got {layout!r}")
    if grad_output.ndim not in (3, 4) or grad_output.dtype not in (np.float32, np.float64):
        raise ValueError(f"grad_output must be a 3-D or 4-D float32/float64 array, got {grad_output.ndim}-D "
                         f"{grad_output.dtype}")
    batched = grad_output if grad_output.ndim == 4 else grad_output[None]
    if layout == "NCHW" and batched.flags.c_contiguous and batched.shape[1]:
        n, c, h, w = batched.shape
        sums = np.empty(c, np.float64)
        _channel_sums(batched.size, batched.reshape(n, c, h * w), sums)
        return sums.astype(grad_output.dtype)
    channel_axis = grad_output.ndim - 1 if layout == "NHWC" else grad_output.ndim - 3
    axes = tuple(a for a in range(grad_output.ndim) if a != channel_axis)
    return grad_output.sum(axis=axes, dtype=np.float64).astype(grad_output.dtype)


def _channel_sums_kernel(grad_output, sums):
    """sums[c] = the float64 sum of grad_output[:, c, :] ((N, C, P), C-contiguous): one task per channel, its runs
    contiguous, the sum reassociated (fastmath 'reassoc') into SIMD lanes: 40-66 GB/s on the 2-core VM where
    NumPy's float64 reduction over axes (0, 2, 3) ran at 9-10 GB/s (3-7x, 13-24 us for the suite's layers)."""
    n_images, channels, pixels = grad_output.shape
    for c in prange(channels):
        total = 0.0
        for n in range(n_images):
            row = grad_output[n, c]
            acc = 0.0
            for p in range(pixels):
                acc += np.float64(row[p])
            total += acc
        sums[c] = total


_channel_sums = Twins(_channel_sums_kernel, fastmath={"reassoc", "contract"})


# ---- depthwise grad weight kernel ----------------------------------------------------------------
# The reduction of one (channel, tap) is made one long contiguous dot product, so that it vectorizes:
# the padded input is split into its stride phases, phase (p, q)[a, b] = padded[a*sh + p, b*sw + q],
# each a plane of width Wq = ceil(Wp / sw); then tap (r, s) reads phase (r*dh % sh, s*dw % sw) at
# the shift ((r*dh) // sh, (s*dw) // sw), a stride-1 correlation with grad_output.  Only the phases
# some tap reads are built (at most kH x kW of them, whatever the stride).  grad_output is widened
# to rows of Wq with zeros, so that with both planes flattened the tap's sum is
#     sum_f  grad_wide[n, co, f] * phase[n, ci, f + shift_rows * Wq + shift_columns]
# over f < H_out * Wq: the zero columns absorb the wrap-around from one row into the next (and the
# zeros that round the length up to DOT_BLOCK, the reads past the last row).
DOT_BLOCK = 32  # 4 AVX-512 vectors of float64: the unit LLVM's vectorized reduction steps by


def _depthwise_weight_kernel(phases, grad_wide, grad_weight, multiplier, tap_phase, tap_shift):
    """grad_weight[co, t] = sum_{n, f} grad_wide[n, co, f] * phases[n, co // m, tap_phase[t], f + tap_shift[t]].

    One task per (output channel, tap) owns its weight element: no races, no partials to merge.
    Products and sums in float64 whatever the dtype; the sum is reassociated (fastmath 'reassoc')
    so that it runs as SIMD lanes: a different order, the same float64 accumulator."""
    n_images = phases.shape[0]
    out_channels, length = grad_wide.shape[1], grad_wide.shape[2]
    taps = grad_weight.shape[1]
    for task in prange(out_channels * taps):
        co = task // taps
        tap = task % taps
        phase = tap_phase[tap]
        shift = tap_shift[tap]
        total = 0.0
        for n in range(n_images):
            g = grad_wide[n, co]
            values = phases[n, co // multiplier, phase, shift: shift + length]
            acc = 0.0
            for f in range(length):
                acc += np.float64(g[f]) * np.float64(values[f])
            total += acc
        grad_weight[co, tap] = total


_depthwise_weight = Twins(_depthwise_weight_kernel, fastmath={"reassoc", "contract"})


def _phases_kernel(x, phases, pad_top, pad_left, stride_h, stride_w, row_phases, column_phases, phase_width):
    """phases[n, c, i*nq + j, a*Wq + b] = zero-padded x[n, c, a*sh + p - top, b*sw + q - left] (0 outside) for
    p = row_phases[i], q = column_phases[j] (nq column phases), every element written (the slack at the end
    too): the padding and the phase split in one pass."""
    n_images, channels, height, width = x.shape
    planes, length = phases.shape[2], phases.shape[3]
    n_columns = len(column_phases)
    phase_height = length // phase_width
    zero = 0.0
    for task in prange(n_images * channels):
        n = task // channels
        c = task % channels
        for phase in range(planes):
            p = row_phases[phase // n_columns]
            q = column_phases[phase % n_columns]
            # the columns b whose source column b*sw + q - left lies in [0, width)
            first = max(0, (pad_left - q + stride_w - 1) // stride_w)
            last = min(phase_width, (width - 1 + pad_left - q) // stride_w + 1)
            for a in range(phase_height):
                base = a * phase_width
                row = a * stride_h + p - pad_top
                if row < 0 or row >= height or last <= first:
                    for b in range(phase_width):
                        phases[n, c, phase, base + b] = zero
                    continue
                for b in range(first):
                    phases[n, c, phase, base + b] = zero
                start = first * stride_w + q - pad_left
                phases[n, c, phase, base + first: base + last] = x[n, c, row, start: start + (last - first - 1) * stride_w + 1:
                                                                     stride_w]
                for b in range(last, phase_width):
                    phases[n, c, phase, base + b] = zero
            for f in range(phase_height * phase_width, length):
                phases[n, c, phase, f] = zero


_phases = Twins(_phases_kernel)


def used_phases(kernel_size: int, stride: int, dilation: int) -> tuple:
    """The phases (offsets modulo the stride) that the taps of one axis read, ascending: at most
    ``kernel_size`` of them, however large the stride."""
    return tuple(sorted({tap * dilation % stride for tap in range(kernel_size)}))


def _depthwise_grad_weight(spec: ConvSpec, x: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
    if spec.channel_multiplier == 1:  # the blocked kernel: channels in SIMD lanes, float64 sums
        if spec.padding_mode == "zeros":
            source, pad_top, pad_left = x, spec.padding[0], spec.padding[2]
        else:
            source, pad_top, pad_left = arrays.pad_input(x, spec), 0, 0
        grad = cpu_depthwise.weight_gradient(source, grad_output, spec.kernel_height, spec.kernel_width, spec.stride,
                                             spec.dilation, pad_top, pad_left)
        return grad.astype(spec.dtype).reshape(spec.weight_shape)
    return _depthwise_grad_weight_phases(spec, x, grad_output)


def _depthwise_grad_weight_phases(spec: ConvSpec, x: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
    top, bottom, left, right = spec.padding
    padded_height, padded_width = spec.in_height + top + bottom, spec.in_width + left + right
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    phase_height, phase_width = -(-padded_height // sh), -(-padded_width // sw)
    row_phases = used_phases(spec.kernel_height, sh, dh)
    column_phases = used_phases(spec.kernel_width, sw, dw)
    tap_phase, tap_shift = [], []
    for r in range(spec.kernel_height):
        for s in range(spec.kernel_width):
            tap_phase.append(row_phases.index(r * dh % sh) * len(column_phases) + column_phases.index(s * dw % sw))
            tap_shift.append((r * dh // sh) * phase_width + s * dw // sw)
    # the dot length rounded up to whole SIMD blocks (zeros in grad_wide's tail): no scalar remainder loop
    length = -(-spec.out_height * phase_width // DOT_BLOCK) * DOT_BLOCK
    phases = np.empty((spec.batch, spec.in_channels, len(row_phases) * len(column_phases),
                       max(phase_height * phase_width, max(tap_shift) + length)), spec.dtype)
    work = grad_output.size * spec.kernel_height * spec.kernel_width
    if spec.padding_mode == "zeros":  # pad and split in one pass
        source, pad_top, pad_left = x, top, left
    else:
        source, pad_top, pad_left = arrays.pad_input(x, spec), 0, 0
    _phases(work, source, phases, pad_top, pad_left, sh, sw, np.array(row_phases, np.int64),
            np.array(column_phases, np.int64), phase_width)
    grad_wide = np.zeros((spec.batch, spec.out_channels, length), spec.dtype)
    rows = grad_wide[:, :, : spec.out_height * phase_width].reshape(spec.batch, spec.out_channels, spec.out_height,
                                                                     phase_width)
    rows[:, :, :, : spec.out_width] = grad_output
    grad = np.empty((spec.out_channels, spec.kernel_height * spec.kernel_width), np.float64)
    _depthwise_weight(work, phases, grad_wide, grad, spec.channel_multiplier, np.array(tap_phase, np.int64),
                      np.array(tap_shift, np.int64))
    return grad.astype(spec.dtype).reshape(spec.weight_shape)
