"""Kernel registry and selection: which kernel serves a ConvSpec, and why.

Each `Algorithm` says which problems it can serve (``unsupported`` returns a
reason or ``None``) and runs on prepared arrays: a batched NCHW view of x, the
weight, a bias array (zeros when there is none) and a C-contiguous NCHW ``out``.

``select`` implements the rules ``plan()`` reports:
pointwise when kH = kW = 1 and groups = 1; depthwise when groups = C_in (any channel
multiplier); grouped otherwise (dense groups = 1 convolution included); the CUDA kernels of
the same families when the data is on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numba
import numpy as np
import numpy.typing as npt

from . import arrays, cost, reference, runtime
from .cpu import depthwise as cpu_depthwise
from .cpu import grouped as cpu_grouped
from .cpu import implicit as cpu_implicit
from .cpu import pointwise as cpu_pointwise
from .config import (BLAS_MIN_OUT_PER_GROUP, DEPTHWISE_BORDER_SHARE, GEMM_MAX_WEIGHTS_PER_OUTPUT,
                     LATENCY_BLAS_MAX_PRODUCT, WORKSPACE_BYTES_PER_THREAD)
from .spec import (Activation, ConvSpec, Device, IntOrPair, Layout, Padding, PaddingMode,
                   problem_from_shapes)


@dataclass(frozen=True)
class Algorithm:
    name: str
    device: str
    family: str
    description: str
    unsupported: Callable[[ConvSpec], str | None]
    run: Callable
    # The channels-last variant, run instead of ``run`` when the caller's layout is NHWC: same
    # arguments, but x is a batched NHWC view and out a C-contiguous (N, H_out, W_out, C_out) array.
    run_nhwc: Callable | None = None
    # Bytes of temporaries the kernel allocates for a problem with a C-contiguous x (`run_bounded` cuts
    # problems whose workspace would exceed the budget; plan() reports it).
    workspace: Callable[[ConvSpec], int] = lambda spec: 0

    def __repr__(self) -> str:
        return f"Algorithm({self.name!r}, device={self.device!r}, family={self.family!r})"


def _any(spec):
    return None


def _needs_pointwise(spec):
    if spec.is_pointwise:
        return None
    return (f"needs a 1x1 kernel with groups=1, got a {spec.kernel_height}x{spec.kernel_width} kernel "
            f"with groups={spec.groups}")


def _needs_depthwise(spec):
    if not spec.is_depthwise:
        return (f"needs groups == in_channels (one input channel per group), got groups={spec.groups} "
                f"with in_channels={spec.in_channels}")
    if spec.kernel_height * spec.kernel_width > cpu_depthwise.MAX_TAPS:
        return (f"takes at most {cpu_depthwise.MAX_TAPS} filter taps (kH*kW), got a "
                f"{spec.kernel_height}x{spec.kernel_width} kernel")
    return None


def _run_grouped(spec, x, weight, bias, out):
    phased = cpu_grouped.split_phases(arrays.pad_input(x, spec), spec.stride[1])
    segments = cpu_grouped.plane_segments(spec.out_height, spec.out_width, spec.stride[0],
                                          phased.shape[3] * phased.shape[4])
    cpu_grouped.grouped_conv_nchw(
        out.size * spec.reduction_length, phased, cpu_grouped.pack_weights(weight, spec.groups), bias, out, spec.groups,
        spec.kernel_height, spec.kernel_width, *spec.stride, *spec.dilation, *segments, spec.activation_code,
    )


def _depthwise_runner(layout: str) -> Callable:
    """The depthwise kernel's run for batched ``layout`` data.  Zero padding is applied inside the kernel
    (border taps skipped).  Other modes, channels last: where the outputs that read the padding are at most
    1/DEPTHWISE_BORDER_SHARE of them (`ConvSpec.border_rectangles`), the kernel computes the whole output with
    zero padding straight from x and `cpu_depthwise.depthwise_border_nhwc` recomputes that frame under the padding
    mode (one call, every channel of a pixel at once; no padded copy of the input); else, and for NCHW (whose
    planes that kernel would read a pixel at a time: slower than the copy where measured; `_bordered` serves
    its large planes), x is padded as a whole first."""
    kernel, pad = ((cpu_depthwise.run_nchw, arrays.pad_input) if layout == "NCHW"
                   else (cpu_depthwise.run_nhwc, arrays.pad_input_nhwc))

    def run(spec, x, weight, bias, out):
        frame = None if spec.padding_mode == "zeros" or layout == "NCHW" else \
            spec.border_rectangles(DEPTHWISE_BORDER_SHARE)  # (the border kernel reads channels last)
        if spec.padding_mode == "zeros" or frame is not None:
            x = np.ascontiguousarray(x)
            pad_top, pad_left = spec.padding[0], spec.padding[2]
        else:
            x = pad(x, spec)
            pad_top = pad_left = 0
        kernel(x, weight, bias, out, spec.channel_multiplier, spec.stride, spec.dilation, pad_top, pad_left,
               spec.activation_code)
        if frame:
            top, bottom, left, right = spec.padding
            rows = arrays.padded_reads(np.arange(-top, spec.in_height + bottom, dtype=np.int64), spec.in_height,
                                       spec.padding_mode)
            columns = arrays.padded_reads(np.arange(-left, spec.in_width + right, dtype=np.int64), spec.in_width,
                                          spec.padding_mode)
            pixels = cpu_depthwise.border_pixels(frame)
            taps = np.ascontiguousarray(weight[:, 0].transpose(1, 2, 0))
            buffers = arrays.scratch("depthwise_border", (numba.config.NUMBA_NUM_THREADS, taps.shape[2]), out.dtype)
            cpu_depthwise.depthwise_border_nhwc(len(pixels) * out.shape[0] * weight[:, 0].size, x, taps, bias, out,
                                                pixels, rows, columns, spec.channel_multiplier, *spec.stride,
                                                *spec.dilation, spec.activation_code, buffers)

    run.__name__ = run.__qualname__ = f"run_depthwise_{layout.lower()}"
    return run


def _bordered(run: Callable, layout: str) -> Callable:
    """``run`` (a kernel that applies zero padding itself and pads the whole input for the other modes) for
    any padding mode.  Where the outputs that read a reflect/replicate/circular border are a thin frame
    (`ConvSpec.border_regions`: large planes), the whole output is computed with zero padding straight from
    x, then each border rectangle again from its padded window (`arrays.padded_window`): no padded copy of
    the input.  Else ``run`` as it is."""

    def bordered(spec, x, weight, bias, out):
        regions = None if spec.padding_mode == "zeros" else spec.border_regions
        if regions is None:
            run(spec, x, weight, bias, out)
            return
        run(replace(spec, padding_mode="zeros"), x, weight, bias, out)
        for r0, r1, c0, c1 in regions:
            first_row, rows, first_column, columns = spec.input_window(r0, r1, c0, c1)
            window = arrays.padded_window(x, spec, first_row, rows, first_column, columns, layout)
            part = replace(spec, in_height=rows, in_width=columns, padding=(0, 0, 0, 0), padding_mode="zeros")
            if layout == "NCHW":
                piece = np.empty((out.shape[0], out.shape[1], r1 - r0, c1 - c0), out.dtype)
                run(part, window, weight, bias, piece)
                out[:, :, r0:r1, c0:c1] = piece
            else:
                piece = np.empty((out.shape[0], r1 - r0, c1 - c0, out.shape[3]), out.dtype)
                run(part, window, weight, bias, piece)
                out[:, r0:r1, c0:c1] = piece

    bordered.__name__ = bordered.__qualname__ = f"bordered_{run.__name__}"
    return bordered


def _run_reference(spec, x, weight, bias, out):
    out[...] = reference.conv2d_nchw(spec, x, weight, bias if spec.has_bias else None)


def _reference_workspace(spec):
    # float64: x, one tap's window (taken, then masked) and the accumulator with its activated copy
    inputs = spec.batch * spec.in_channels * (spec.in_height * spec.in_width + 2 * spec.out_height * spec.out_width)
    return 8 * (inputs + 2 * spec.batch * spec.out_channels * spec.out_height * spec.out_width)


_REGISTRY: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> Algorithm:
    _REGISTRY[algorithm.name] = algorithm
    return algorithm


register(Algorithm("pointwise", "cpu", "pointwise",
                   "explicit-loop Numba GEMM: 4 output channels x 16 pixels register tile, packed weights",
                   _needs_pointwise, cpu_pointwise.run_explicit, workspace=cpu_pointwise.workspace_explicit))
register(Algorithm("pointwise_blas", "cpu", "pointwise",
                   "NumPy matmul (the machine's BLAS) per image, then a Numba bias/activation pass; "
                   "channels-last: one matmul over the whole batch, no transposes",
                   _needs_pointwise, cpu_pointwise.run_blas, cpu_pointwise.run_blas_nhwc,
                   workspace=cpu_pointwise.workspace_blas))
register(Algorithm("pointwise_gemm", "cpu", "pointwise",
                   "numbaconv's packed GEMM: AVX-512 register tiles (12 x 32 float32) emitted as LLVM vector code, "
                   "cache-blocked, bias and activation fused; Numba's thread pool only; channels-last: X @ W^T in place",
                   _needs_pointwise, cpu_pointwise.run_gemm, cpu_pointwise.run_gemm_nhwc,
                   workspace=cpu_pointwise.workspace_gemm))
register(Algorithm("depthwise", "cpu", "depthwise",
                   "planes x row bands per task; rows staged in an L1/L2 buffer with padding and stride folded in, "
                   "then every tap a unit-stride SIMD pass; channels-last: SIMD over the channels of a pixel",
                   _needs_depthwise, _bordered(_depthwise_runner("NCHW"), "NCHW"), _depthwise_runner("NHWC"),
                   workspace=cpu_depthwise.workspace))
register(Algorithm("grouped", "cpu", "grouped",
                   "implicit GEMM per group on the padded input, 4x16 register tile; serves any convolution",
                   _any, _run_grouped, workspace=cpu_grouped.workspace))
register(Algorithm("grouped_blas", "cpu", "grouped",
                   "im2col (none for an unpadded stride-1 1x1) then one batched BLAS product over the groups, "
                   "then a Numba bias/activation pass; serves any convolution", _any, cpu_grouped.run_blas,
                   workspace=cpu_grouped.workspace_blas))
register(Algorithm("grouped_gemm", "cpu", "grouped",
                   "implicit GEMM on numbaconv's AVX-512 register tiles, channels last: each task's band of input "
                   "prepared in L2 (padding, stride phases), taps read through offsets (no im2col), thin groups (2/4/8 "
                   "channels) a vector of whole groups with each pixel's channels rotated (no zero weights), bias and "
                   "activation fused; NCHW data transposed in and out; serves any convolution",
                   _any, _bordered(cpu_implicit.run, "NCHW"), _bordered(cpu_implicit.run_nhwc, "NHWC"),
                   workspace=cpu_implicit.workspace))
register(Algorithm("reference", "cpu", "any", "the NumPy oracle (numbaconv.reference), for checking",
                   _any, _run_reference, workspace=_reference_workspace))


# CUDA kernels: numba.cuda is imported only when one runs (numbaconv.cuda.launches).
def _cuda(name):
    def run(*args):
        from .cuda import launches

        return getattr(launches, name)(*args)

    return run


def _cuda_depthwise_unsupported(spec):
    from .cuda import launches

    return launches.depthwise_unsupported(spec)


register(Algorithm("cuda_pointwise", "cuda", "pointwise",
                   "tiled GEMM: 64 channels x 64 pixels per block, double-buffered shared memory, 4x4 outputs per "
                   "thread in registers, split-K for small grids", _needs_pointwise, _cuda("run_gemm")))
register(Algorithm("cuda_depthwise", "cuda", "depthwise",
                   "block per (image, spatial tile, channels): input tiles + halo and filters in shared memory, "
                   "a strip of 4 outputs per thread", _cuda_depthwise_unsupported, _cuda("run_depthwise")))
register(Algorithm("cuda_grouped", "cuda", "grouped",
                   "implicit GEMM per group, input patches gathered into double-buffered shared memory (no im2col "
                   "in global memory), split-K for small grids; serves any convolution", _any, _cuda("run_gemm")))


def workspace_budget() -> int:
    """Bytes of temporaries one kernel call may allocate beyond the output: config.WORKSPACE_BYTES_PER_THREAD
    per thread of Numba's pool (NUMBA_NUM_THREADS)."""
    return WORKSPACE_BYTES_PER_THREAD * numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]


def pieces(algorithm: Algorithm, spec: ConvSpec, contiguous: bool = True, layout: str = "NCHW",
           out_layout: str | None = None) -> tuple[int, int]:
    """``(images, rows)`` per piece of the batch such that one piece's temporaries stay within the budget
    (`workspace_budget`): the whole problem when its temporaries fit, else whole images, else bands of
    output rows of one image.  A piece's temporaries: the kernel's workspace, plus a copy of its input
    when x is not C-contiguous (the kernels copy it), plus for a band of rows the gathered input rows, plus
    the piece's result when it cannot be written in place (an NCHW band, or an NCHW kernel's result for
    an NHWC ``out_layout``, transposed into place)."""
    budget = workspace_budget()
    memo = spec.__dict__.setdefault("_pieces", {})  # a spec is validated once and reused: answer once
    key = (algorithm.name, contiguous, layout, out_layout or layout, budget)
    if key not in memo:
        memo[key] = _pieces(algorithm, spec, contiguous, layout, (out_layout or layout) != layout, budget)
    return memo[key]


def _pieces(algorithm: Algorithm, spec: ConvSpec, contiguous: bool, layout: str, transposed: bool,
            budget: int) -> tuple[int, int]:
    itemsize = spec.dtype.itemsize

    def piece_bytes(images, rows):
        whole = (images, rows) == (spec.batch, spec.out_height)
        band = spec if whole else spec.band(images, rows)
        total = algorithm.workspace(band)
        if rows < spec.out_height or not contiguous:
            total += images * spec.in_channels * band.in_height * spec.in_width * itemsize
        if transposed or (rows < spec.out_height and layout == "NCHW"):
            total += images * spec.out_channels * rows * spec.out_width * itemsize
        return total

    if piece_bytes(spec.batch, spec.out_height) <= budget:
        return spec.batch, spec.out_height
    per_image = piece_bytes(1, spec.out_height)
    if per_image <= budget:
        return max(1, budget // max(per_image, 1)), spec.out_height
    rows = spec.out_height
    while rows > 1 and piece_bytes(1, rows) > budget:
        rows = -(-rows // 2)
    return 1, rows


def runs_whole(algorithm: Algorithm, spec: ConvSpec, contiguous: bool, layout: str, out_layout: str) -> bool:
    """Whether `run_bounded` would run ``algorithm`` once on the whole problem, in ``out_layout`` itself: no
    gathered axes (`ConvSpec.kernel_view`), no pieces, no transposed result.  Answered once per spec."""
    memo = spec.__dict__.setdefault("_whole", {})
    key = (algorithm.name, contiguous, layout, out_layout, workspace_budget())
    answer = memo.get(key)
    if answer is None:
        view, gathered = spec.kernel_view
        answer = memo[key] = (not any(gathered) and view is spec and out_layout == layout
                              and pieces(algorithm, spec, contiguous, layout, out_layout) == (spec.batch,
                                                                                          spec.out_height))
    return answer


def run_bounded(algorithm: Algorithm, spec: ConvSpec, x, weight, bias, out, layout: str = "NCHW",
                out_layout: str | None = None) -> None:
    """Run ``algorithm`` on the batched x (in the kernel's ``layout``) into the C-contiguous batched out (in
    ``out_layout``, by default the kernel's; an NCHW kernel's pieces are transposed into an NHWC out), in
    pieces of the batch or bands of rows (`pieces`) when its temporaries would exceed the budget: peak
    memory beyond the output stays bounded, whatever the batch or image size."""
    run = algorithm.run_nhwc if layout == "NHWC" else algorithm.run
    if run is None:
        raise ValueError(f"algorithm {algorithm.name!r} has no channels-last variant: run it on NCHW data")
    out_layout = out_layout or layout
    images, rows = pieces(algorithm, spec, x.flags.c_contiguous, layout, out_layout)
    if images >= spec.batch and rows == spec.out_height and out_layout == layout:
        run(spec, x, weight, bias, out)
        return
    for n0 in range(0, spec.batch, images):
        n1 = min(n0 + images, spec.batch)
        for r0 in range(0, spec.out_height, rows):
            band_rows = min(rows, spec.out_height - r0)
            band_spec, band_x = arrays.band_input(x, spec, slice(n0, n1), r0, band_rows, layout)
            # where the piece's result goes: straight into out when it is a contiguous block of it
            target = out[n0:n1] if out_layout == "NCHW" else out[n0:n1, r0:r0 + band_rows]
            if out_layout == layout and (layout == "NHWC" or band_rows == spec.out_height):
                run(band_spec, band_x, weight, bias, target)
                continue
            piece = np.empty(band_spec.nchw_out_shape if layout == "NCHW" else
                             (n1 - n0, band_rows, spec.out_width, spec.out_channels), spec.dtype)
            run(band_spec, band_x, weight, bias, piece)
            if out_layout == layout:  # an NCHW band of rows
                out[n0:n1, :, r0:r0 + band_rows] = piece
            else:  # an NCHW kernel's piece into an NHWC out
                target[...] = piece.transpose(0, 2, 3, 1)


def algorithms() -> list[Algorithm]:
    """Every registered kernel, with the device and family it serves."""
    return list(_REGISTRY.values())


# algorithm='tuned': the tuner (numbaconv.tuning, a floor above: it times the kernels registered here) registers
# itself with `register_tuner` when it is imported, as numbaconv's __init__ does
_TUNER = None


def register_tuner(tune_spec) -> None:
    """``tune_spec(spec)`` -> an object with ``kernel``, ``seconds`` and ``from_cache``: what algorithm='tuned' runs."""
    global _TUNER
    _TUNER = tune_spec


def get(name: str) -> Algorithm:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"algorithm must be 'auto', 'tuned' (CPU) or one of {sorted(_REGISTRY)}, "
                         f"got {name!r}") from None


def select(spec: ConvSpec, algorithm: str = "auto", device: str = "cpu") -> tuple[Algorithm, str]:
    """The kernel that serves ``spec`` on ``device`` and the reason; ValueError if a forced one cannot."""
    if not isinstance(algorithm, str):
        raise TypeError(f"algorithm must be a string, got {type(algorithm).__name__}")
    if algorithm == "tuned" and device == "cpu":
        if _TUNER is None:
            raise ValueError("algorithm='tuned' needs numbaconv.tuning, which registers the tuner (import numbaconv)")
        tuned = _TUNER(spec)
        timings = ", ".join(f"{name} {seconds * 1e3:.3g} ms" for name, seconds in sorted(tuned.seconds.items()))
        source = "remembered from the tuning cache" if tuned.from_cache else "timed now"
        return _REGISTRY[tuned.kernel], f"tuned ({source}): the fastest of {timings}"
    if algorithm != "auto":
        chosen = get(algorithm)
        if chosen.device != device:
            raise ValueError(f"algorithm={algorithm!r} runs on the {chosen.device.upper()}, but the data is on the "
                             f"{device.upper()}; the {device.upper()} kernels are "
                             f"{sorted(a.name for a in _REGISTRY.values() if a.device == device)}")
        why_not = chosen.unsupported(spec)
        if why_not:
            raise ValueError(f"algorithm={algorithm!r} cannot serve this convolution: it {why_not}")
        return chosen, f"forced by algorithm={algorithm!r}"
    if device == "cuda":
        return _select_cuda(spec)
    if spec.is_pointwise:
        return _REGISTRY["pointwise_gemm"], (
            "1x1 kernel with groups=1 is a GEMM (C_out x C_in times C_in x pixels): numbaconv's packed AVX-512 GEMM "
            "with the epilogue fused, on Numba's thread pool alone. Measured against NumPy's BLAS over the nine "
            "networks' 122 pointwise layers (2-core VM, back to back): 1.07x (NCHW) / 1.01x (NHWC) at batch 1, "
            "1.21x / 0.95x at batch 8, and after an idle gap BLAS's second thread pool stalled for milliseconds "
            "(p99 4-36 ms against 0.2-2 ms); on another VM of the same kind the BLAS kernel was faster "
            "(this kernel 0.62x at batch 1, 0.86x at batch 8, also after gaps; with frozen weights and the fused "
            "tile epilogue, the default suite's pointwise layers 0.63-0.69x a bare np.matmul at batch 1, 0.93-0.97x "
            "at batch 8). algorithm='pointwise_blas' forces BLAS; algorithm='tuned' measures both on this machine"
        )
    if spec.is_depthwise:
        why_not = _needs_depthwise(spec)
        if why_not is None:
            return _REGISTRY["depthwise"], (
                f"groups == in_channels == {spec.in_channels} (channel multiplier {spec.channel_multiplier}): "
                "one filter per channel, memory-bound"
            )
        return _REGISTRY["grouped"], f"depthwise, but the depthwise kernel {why_not}: implicit GEMM instead"
    shape = (f"groups={spec.groups} with {spec.in_channels_per_group} input channels and "
             f"{spec.out_channels_per_group} output channels per group and a {spec.kernel_height}x{spec.kernel_width} kernel")
    weights = spec.out_channels * spec.in_channels_per_group * spec.kernel_height * spec.kernel_width
    outputs = spec.batch * spec.out_channels * spec.out_height * spec.out_width
    channels_first_1x1 = (spec.layout == "NCHW" and spec.kernel_height == spec.kernel_width == 1
                          and spec.stride == (1, 1) and not spec.has_padding)
    if cpu_implicit.thin(spec):
        return _REGISTRY["grouped_gemm"], (
            f"{shape}: thin groups, {cpu_implicit.lanes(spec.dtype) // spec.out_channels_per_group} to a vector, "
            "each pixel's channels shuffled so every lane multiplies its own group's inputs (no zero weights): "
            "numbaconv's implicit GEMM tile, channels last")
    implicit_gemm = cpu_implicit.super_group(spec) <= 2  # at most half of a vector's lanes multiply zeros
    # BLAS runs a dense layer as one large product, but grouped ones as G small ones: only a dense layer's
    # per-call weight packing can cost more than BLAS
    if implicit_gemm and not channels_first_1x1 and (weights <= GEMM_MAX_WEIGHTS_PER_OUTPUT * outputs
                                                     or spec.groups > 1):
        return _REGISTRY["grouped_gemm"], (
            f"{shape}: numbaconv's implicit GEMM (AVX-512 register tile over pixels x output channels, taps read "
            "in place of an im2col matrix, bias and activation fused), channels last")
    product = (spec.out_channels_per_group * spec.out_height * spec.out_width * spec.in_channels_per_group
               * spec.kernel_height * spec.kernel_width)
    if spec.out_channels_per_group >= BLAS_MIN_OUT_PER_GROUP and runtime.LATENCY_MODE \
            and product > LATENCY_BLAS_MAX_PRODUCT:
        return _REGISTRY["grouped_gemm" if implicit_gemm else "grouped"], (
            f"{shape}: latency mode (NUMBACONV_LATENCY=1), and a per-group product of {product} multiply-adds, "
            f"above {LATENCY_BLAS_MAX_PRODUCT}, would run on BLAS's own threads against Numba's spinning ones: "
            "the implicit GEMM instead")
    if spec.out_channels_per_group >= BLAS_MIN_OUT_PER_GROUP:
        why = ("NCHW data and a 1x1 kernel: BLAS reads the input in place (grouped_gemm would transpose it in and "
               "out)" if channels_first_1x1 else
               f"{weights} weights against {outputs} outputs (over {GEMM_MAX_WEIGHTS_PER_OUTPUT}x): packing the "
               "weights for grouped_gemm on every call "
               "would cost more than BLAS's im2col (a frozen weight's packing is kept: algorithm='grouped_gemm')")
        return _REGISTRY["grouped_blas"], f"{shape}: a GEMM per group with BLAS; {why}"
    return _REGISTRY["grouped"], (
        f"{shape}: too few output channels per group for BLAS to pay off; implicit GEMM per group")


def _select_cuda(spec: ConvSpec) -> tuple[Algorithm, str]:
    if spec.is_pointwise:
        return _REGISTRY["cuda_pointwise"], "1x1 kernel with groups=1: a tiled GEMM (C_out x C_in times C_in x pixels)"
    if spec.is_depthwise:
        why_not = _REGISTRY["cuda_depthwise"].unsupported(spec)
        if why_not is None:
            return _REGISTRY["cuda_depthwise"], (
                f"groups == in_channels == {spec.in_channels}: one filter per channel, memory-bound; "
                "staged in shared memory")
        return _REGISTRY["cuda_grouped"], f"depthwise, but the depthwise kernel {why_not}: implicit GEMM instead"
    return _REGISTRY["cuda_grouped"], (
        f"groups={spec.groups} with {spec.in_channels_per_group} input channels per group and a "
        f"{spec.kernel_height}x{spec.kernel_width} kernel: implicit GEMM per group")


@dataclass(frozen=True)
class Plan:
    """What ``conv2d`` would run for a problem, why, and what it costs."""

    kernel: str
    reason: str
    device: str
    family: str
    params: int
    flops: int
    bytes: int
    arithmetic_intensity: float
    out_shape: tuple
    spec: ConvSpec
    workspace_bytes: int = 0  # the kernel's temporaries beyond the output, as run (in pieces when large)


def plan(x_shape: tuple[int, ...], weight_shape: tuple[int, int, int, int], bias: Any = False,
         stride: IntOrPair = 1, padding: Padding = 0, dilation: IntOrPair = 1, groups: int = 1, *,
         dtype: npt.DTypeLike = np.float32, padding_mode: PaddingMode = "zeros", activation: Activation = None,
         layout: Layout = "NCHW", algorithm: str = "auto", device: Device = None) -> Plan:
    """Which kernel ``conv2d`` would run on arrays of these shapes, why, and the cost model.

    Parameters
    ----------
    x_shape, weight_shape : tuple of int
        The shapes of x and weight, as `conv2d` takes them (x's in ``layout``).
    bias : bool, shape or array
        Whether a bias is added (``True``/``False``, its shape, or the array itself).
    stride, padding, dilation, groups, padding_mode, activation, layout, algorithm, device
        As in `conv2d`; ``algorithm='tuned'`` times the kernels (`numbaconv.tune`).
    dtype : dtype
        float32 or float64.

    Returns
    -------
    Plan
        ``kernel``, ``reason``, ``params``, ``flops``, ``bytes``, ``arithmetic_intensity``, ``out_shape``, the
        validated ``spec`` and ``workspace_bytes`` (the kernel's temporaries beyond the output).
    """
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    spec = problem_from_shapes(x_shape, weight_shape, bias, stride, padding, dilation, groups, dtype=dtype,
                               padding_mode=padding_mode, activation=activation, layout=layout)
    chosen, reason = select(spec, algorithm, device or "cpu")
    workspace = 0
    if chosen.device == "cpu":  # as run_bounded would run it: the temporaries of one piece
        kernel_spec = spec.kernel_view[0]
        images, rows = pieces(chosen, kernel_spec)
        workspace = chosen.workspace(kernel_spec.band(min(images, kernel_spec.batch), rows))
    return Plan(kernel=chosen.name, reason=reason, device=chosen.device, family=spec.family,
                out_shape=spec.out_shape, spec=spec, workspace_bytes=workspace, **cost.summary(spec))
