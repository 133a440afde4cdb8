"""Grouped (and dense, groups=1) convolution as an implicit GEMM per group, NCHW.

For group g the product is  out_g[C_out/G, pixels] = W_g[C_out/G, K] x X_g[K, pixels]
with K = C_in/G * kH * kW; the K x pixels operand is never built (no im2col buffer):
the kernel reads it straight from the prepared input.

Prepared input ("phase-split rows"): the padded input with each row's columns split by
the horizontal stride s into s phases, phase j holding columns j, j+s, j+2s, ...  Tap kw
of output column ow reads padded column ow*s + kw*d = s*(ow + (kw*d)//s) + (kw*d) % s,
i.e. element ow + (kw*d)//s of phase (kw*d) % s: consecutive output pixels read
consecutive memory for every stride, so the kernel has one unit-stride inner loop.
For s = 1 the prepared input is the padded input itself.

Output pixels are numbered by "virtual pixel" q = oh * (stride_h * row) + ow, so that every
tap reads the input at q + a fixed offset (see plane_segments): runs of consecutive q are
unit-stride loads even across output rows, which keeps narrow layers (7x7, 14x14) vectorized.

Loop nest of one parallel task (image n, group g, plane segment, pixel tile, channel block
of 4), the channel block varying fastest so consecutive tasks of a thread reuse the same
input from cache:

    for each run of TILE_PIXELS virtual pixels in the tile:      # register tile
        acc[4][TILE_PIXELS] = 0
        for ci in C_in/G:  for kh:  for kw:                        # the K reduction
            w0..w3 = packed[g, block, k, 0..3]                     # one contiguous load
            for p in TILE_PIXELS:                                  # unrolled, SIMD
                acc[i][p] += w_i * x[q + p + offset(ci, kh, kw)]
        out = activate(acc + bias)   for the pixels that are not in a row gap

The accumulator tile stays in vector registers for the whole reduction (LLVM fully
unrolls the constant TILE_PIXELS loop and promotes the small array), so each input vector
feeds 4 fused multiply-adds and each output is written once.  Weights are packed
(G, blocks, K, 4) with zero rows past C_out/G, so a partial channel block needs no
special case; every pixel run is a full one (zero slack rows under each input plane keep the
reads of a segment's last run in bounds; results past the segment are discarded).

Indexing is on flat views with unsigned indices: Numba must otherwise guard every
signed index against negative wraparound, which stops LLVM from vectorizing the loads.
"""

import numpy as np
from numba import njit, prange

from ..arrays import pad_input, scratch
from ..config import FASTMATH, PARALLEL_MIN_ELEMENTS, TASK_PIXELS, TILE_PIXELS
from .epilogue import activate, bias_activation_inplace
from .twins import Twins

# Output channels per register tile; the unrolled body of _accumulate_run names all four.
TILE_CO = 4

_U = np.uint64


def pack_weights(weight: np.ndarray, groups: int) -> np.ndarray:
    """(C_out, C_in/G, kH, kW) -> (G, blocks, C_in/G*kH*kW, TILE_CO), zero-filled past C_out/G."""
    out_channels = weight.shape[0]
    per_group = out_channels // groups
    reduction = weight.shape[1] * weight.shape[2] * weight.shape[3]
    blocks = -(-per_group // TILE_CO)
    packed = np.zeros((groups, blocks * TILE_CO, reduction), dtype=weight.dtype)
    packed[:, :per_group] = weight.reshape(groups, per_group, reduction)
    return np.ascontiguousarray(packed.reshape(groups, blocks, TILE_CO, reduction).transpose(0, 1, 3, 2))


def split_phases(padded: np.ndarray, stride_w: int) -> np.ndarray:
    """(N, C, Hp, Wp) -> (N, C, Hp + slack, stride_w, ceil(Wp/stride_w)): each row's columns by phase.

    The ``slack`` zero rows under every channel plane let the last register run of a segment read
    a full TILE_PIXELS past the last valid pixel, so every run is the unrolled, vectorized one
    (the extra results are discarded)."""
    n, c, hp, wp = padded.shape
    width = -(-wp // stride_w)
    slack = -(-TILE_PIXELS // (stride_w * width))
    phased = np.zeros((n, c, hp + slack, stride_w, width), dtype=padded.dtype)
    for phase in range(stride_w):
        columns = padded[:, :, :, phase::stride_w]
        phased[:, :, :hp, phase, : columns.shape[3]] = columns
    return phased


def plane_segments(out_height: int, out_width: int, stride_h: int, row_size: int) -> tuple[int, int]:
    """How the kernel walks the output plane: ``(segments, segment_length)`` in virtual pixels.

    Output pixel (oh, ow) is virtual pixel q = oh * V + ow with V = stride_h * row_size, and tap
    (kh, kw) reads the input at q + offset(kh, kw): a run of consecutive q reads consecutive memory,
    even across output rows.  Virtual pixels with ow >= W_out (the gap between rows) are computed
    and discarded; their reads stay inside the channel plane.  The plane is walked as one segment
    or as one segment per output row, whichever needs fewer register runs: one segment wins for
    stride_h = 1 (the gap is only (kW - 1)*dW, and no row ends in a partly used run); per-row
    segments win for strided layers, whose gap is most of V.
    """
    virtual_width = stride_h * row_size
    plane_length = (out_height - 1) * virtual_width + out_width
    plane_runs = -(-plane_length // TILE_PIXELS)
    row_runs = out_height * -(-out_width // TILE_PIXELS)
    if plane_runs <= row_runs:
        return 1, plane_length
    return out_height, out_width


@njit(inline="always", fastmath=FASTMATH, cache=True)
def _accumulate_run(acc, x, packed, x_first, packed_first, channel_size, row_size, phase_size,
                    in_per_group, kernel_height, kernel_width, stride_w, dilation_h, dilation_w):
    # acc[i, p] = sum over (ci, kh, kw) of packed[.., k, i] * x[x_first + p + offset of (ci, kh, kw)]
    # x_first: flat index of virtual pixel q0 in the first input channel of the group
    for i in range(TILE_CO):
        for p in range(TILE_PIXELS):
            acc[i, p] = 0
    k = packed_first
    for ci in range(in_per_group):
        for kh in range(kernel_height):
            row = x_first + ci * channel_size + kh * dilation_h * row_size
            for kw in range(kernel_width):
                column = kw * dilation_w
                src = _U(row + (column % stride_w) * phase_size + column // stride_w)
                w0 = packed[_U(k)]
                w1 = packed[_U(k + 1)]
                w2 = packed[_U(k + 2)]
                w3 = packed[_U(k + 3)]
                for p in range(TILE_PIXELS):  # constant trip count: unrolled, one SIMD vector
                    value = x[src + _U(p)]
                    acc[0, p] += w0 * value
                    acc[1, p] += w1 * value
                    acc[2, p] += w2 * value
                    acc[3, p] += w3 * value
                k += TILE_CO


def _grouped_conv_nchw(x, packed, bias, out, groups, kernel_height, kernel_width,
                      stride_h, stride_w, dilation_h, dilation_w, segments, segment_length, act):
    """out = activate(conv(x, W) + bias).

    x: split_phases(padded input), C-contiguous (N, C_in, Hp + slack, stride_w, Wq);
    packed: pack_weights(W); out: C-contiguous (N, C_out, H_out, W_out);
    segments, segment_length: plane_segments(H_out, W_out, stride_h, stride_w * Wq).
    """
    n_images, in_channels, plane_rows, _, phase_size = x.shape
    in_per_group = in_channels // groups
    out_channels, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    out_per_group = out_channels // groups
    blocks, reduction = packed.shape[1], packed.shape[2]
    row_size = stride_w * phase_size
    channel_size = plane_rows * row_size
    virtual_width = stride_h * row_size
    plane_size = out_height * out_width
    x_flat = x.reshape(-1)
    packed_flat = packed.reshape(-1)
    out_flat = out.reshape(-1)
    tiles = (segment_length + TASK_PIXELS - 1) // TASK_PIXELS
    for task in prange(n_images * groups * segments * tiles * blocks):
        block = task % blocks
        rest = task // blocks
        tile = rest % tiles
        rest //= tiles
        segment = rest % segments
        rest //= segments
        g = rest % groups
        n = rest // groups
        co_first = g * out_per_group + block * TILE_CO
        rows = min(TILE_CO, out_per_group - block * TILE_CO)
        packed_first = (g * blocks + block) * reduction * TILE_CO
        channel_first = (n * in_channels + g * in_per_group) * channel_size
        out_first = (n * out_channels + co_first) * plane_size
        q = segment * virtual_width + tile * TASK_PIXELS
        q_end = segment * virtual_width + min(segment_length, (tile + 1) * TASK_PIXELS)
        acc = np.empty((TILE_CO, TILE_PIXELS), dtype=out.dtype)
        while q < q_end:
            _accumulate_run(acc, x_flat, packed_flat, channel_first + q, packed_first, channel_size, row_size,
                            phase_size, in_per_group, kernel_height, kernel_width, stride_w,
                            dilation_h, dilation_w)
            oh = q // virtual_width  # one division per run; the pixels step (oh, ow) along
            ow = q - oh * virtual_width
            for p in range(min(TILE_PIXELS, q_end - q)):
                if ow < out_width:  # not a gap pixel
                    pixel = oh * out_width + ow
                    for i in range(rows):
                        out_flat[_U(out_first + i * plane_size + pixel)] = activate(acc[i, p] + bias[co_first + i], act)
                ow += 1
                if ow == virtual_width:
                    ow = 0
                    oh += 1
            q += TILE_PIXELS


grouped_conv_nchw = Twins(_grouped_conv_nchw, fastmath=FASTMATH)


def _im2col(padded, columns, kernel_height, kernel_width, stride_h, stride_w, dilation_h, dilation_w, out_width):
    """columns[n, ci*kH*kW + kh*kW + kw, oh*W_out + ow] = padded[n, ci, oh*sh + kh*dh, ow*sw + kw*dw].

    The (N, C_in*kH*kW, pixels) matrix of the BLAS path; group g's rows are the contiguous block
    [g*K, (g+1)*K) with K = C_in/G*kH*kW.  One task per (image, input channel, kh) writes kW rows,
    output row by output row: a unit-stride copy for stride 1, a strided gather otherwise."""
    n_images, in_channels, padded_height, padded_width = padded.shape
    pixels = columns.shape[2]
    out_height = pixels // out_width
    padded_flat = padded.reshape(-1)
    columns_flat = columns.reshape(-1)
    for task in prange(n_images * in_channels * kernel_height):
        kh = task % kernel_height
        plane = task // kernel_height  # n * C_in + ci
        source_plane = plane * padded_height * padded_width
        for kw in range(kernel_width):
            row = (plane * kernel_height + kh) * kernel_width + kw
            for oh in range(out_height):
                src = source_plane + (oh * stride_h + kh * dilation_h) * padded_width + kw * dilation_w
                dst = row * pixels + oh * out_width
                if stride_w == 1:
                    for ow in range(out_width):
                        columns_flat[_U(dst + ow)] = padded_flat[_U(src + ow)]
                else:
                    for ow in range(out_width):
                        columns_flat[_U(dst + ow)] = padded_flat[_U(src + ow * stride_w)]


im2col = Twins(_im2col)


def workspace(spec) -> int:
    """Bytes of temporaries of the implicit-GEMM kernel for a C-contiguous x: the padded input (if padded),
    its phase-split copy and the packed weights."""
    padded = spec.padded_elements
    phased = padded + spec.batch * spec.in_channels * (TILE_PIXELS + spec.stride[1])  # + slack rows
    packed = spec.groups * (-(-spec.out_channels_per_group // TILE_CO) * TILE_CO) * spec.reduction_length
    return ((padded if spec.has_padding else 0) + phased + packed) * spec.dtype.itemsize


def workspace_blas(spec) -> int:
    """Bytes of temporaries of the BLAS path for a C-contiguous x: the padded input (if padded) and the
    im2col matrix (none for an unpadded stride-1 1x1 kernel)."""
    if spec.kernel_height == spec.kernel_width == 1 and spec.stride == (1, 1) and not spec.has_padding:
        return 0
    columns = spec.batch * spec.in_channels * spec.kernel_height * spec.kernel_width * spec.out_height * spec.out_width
    return ((spec.padded_elements if spec.has_padding else 0) + columns) * spec.dtype.itemsize


def gemm_columns(spec, x, slot=None):
    """The (N, G, K, pixels) operand of the per-group GEMM: the input itself for an unpadded 1x1 kernel
    of stride 1 (no copy), else the im2col matrix of the padded input -- in this thread's `scratch` buffer
    ``slot`` where one is named (valid until the next call with that slot), else freshly allocated."""
    pixels = spec.out_height * spec.out_width
    reduction = spec.reduction_length
    if spec.kernel_height == spec.kernel_width == 1 and spec.stride == (1, 1) and not spec.has_padding:
        return np.ascontiguousarray(x).reshape(spec.batch, spec.groups, reduction, pixels)
    padded = pad_input(x, spec)
    shape = (spec.batch, spec.in_channels * spec.kernel_height * spec.kernel_width, pixels)
    columns = np.empty(shape, x.dtype) if slot is None else scratch(slot, shape, x.dtype)
    im2col(columns.size, padded, columns, spec.kernel_height, spec.kernel_width, *spec.stride, *spec.dilation,
           spec.out_width, minimum=PARALLEL_MIN_ELEMENTS)
    return columns.reshape(spec.batch, spec.groups, reduction, pixels)


def run_blas(spec, x, weight, bias, out):
    """Grouped convolution as one batched BLAS product: (G, C_out/G, K) x (N, G, K, pixels)."""
    columns = gemm_columns(spec, x)
    pixels = columns.shape[3]
    product = out.reshape(spec.batch, spec.groups, spec.out_channels_per_group, pixels)
    np.matmul(weight.reshape(spec.groups, spec.out_channels_per_group, spec.reduction_length), columns, out=product)
    if spec.has_bias or spec.activation is not None:
        bias_activation_inplace(out.reshape(spec.batch, spec.out_channels, pixels), bias, spec.activation_code)
