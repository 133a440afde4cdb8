"""The CUDA kernels' launches for one validated problem (`numbaconv.cuda.run` prepares the arrays; `numbaconv.dispatch`
registers `run_gemm`, `run_depthwise` and `depthwise_unsupported` for its CUDA kernels): a launcher works out the
grid, the split-K slices and the scalar arguments once, then launches on batched NCHW device views.  Nothing
here imports the dispatcher: the kernels sit below it."""

from __future__ import annotations

import math

from numba import cuda

from ..spec import PADDING_MODES, ConvSpec
from . import fastlaunch, launch, simulated


def padded(spec: ConvSpec, x, stream):
    """x with a non-zero padding mode applied (a fresh device array); x itself for zeros."""
    top, bottom, left, right = spec.padding
    if spec.padding_mode == "zeros" or not spec.has_padding:
        return x, top, left
    n, c, h, w = x.shape
    padded = cuda.device_array((n, c, h + top + bottom, w + left + right), x.dtype, stream=stream)
    threads = 128
    blocks = max(1, math.ceil(padded.size / threads))
    mode = PADDING_MODES.index(spec.padding_mode)  # zeros 0, reflect 1, replicate 2, circular 3
    from .epilogue import pad_copy

    fastlaunch.launch(pad_copy, blocks, threads, stream, x, padded, top, left, mode)
    return padded, 0, 0


def multiprocessors() -> int:
    """The current GPU's multiprocessor count (2 under the simulator, so that split-K runs in tests)."""
    if simulated():
        return 2
    device = cuda.get_current_device()
    count = _MULTIPROCESSORS.get(device.id)
    if count is None:
        count = _MULTIPROCESSORS[device.id] = device.MULTIPROCESSOR_COUNT
    return count


_MULTIPROCESSORS: dict = {}


def gemm_launcher(spec: ConvSpec, keep: bool = False):
    """launch(x, weight, bias, out, stream) of the implicit GEMM for ``spec`` (batched NCHW views), its grid,
    split-K slices and scalar arguments worked out once.  With ``keep`` (a prepared call, whose stream is fixed)
    the split-K partial sums go to a buffer allocated on the first launch and reused (launches on one stream run
    in order), while the kept buffers stay under KEPT_WORKSPACE_BYTES in all; else to a fresh one per launch."""
    from .gemm import KERNELS, SPLIT_SUM

    n, c_out, h_out, w_out = spec.batch, spec.out_channels, spec.out_height, spec.out_width  # the NCHW view's
    depth = spec.in_channels_per_group * spec.kernel_height * spec.kernel_width
    grid, block, slice_depth = launch.gemm(n, spec.groups, c_out // spec.groups, h_out * w_out, depth,
                                           multiprocessors())
    slices = grid[2]
    kernel, split_sum = KERNELS[spec.dtype.name], SPLIT_SUM[spec.dtype.name]
    sum_grid, sum_block = launch.elements(n * c_out * h_out * w_out)
    code = spec.activation_code

    partial_shape = (slices * n, c_out, h_out, w_out)
    kept = []

    def run(x, weight, bias, out, stream):
        global _kept_workspace_bytes
        x, pad_top, pad_left = padded(spec, x, stream)
        if slices == 1:
            target = out
        elif kept:
            target = kept[0]
        else:
            target = cuda.device_array(partial_shape, out.dtype, stream=stream)
            if keep and _kept_workspace_bytes + target.nbytes <= KEPT_WORKSPACE_BYTES:
                _kept_workspace_bytes += target.nbytes
                kept.append(target)
        fastlaunch.launch(kernel, grid, block, stream, x, weight, bias, target, spec.groups, *spec.stride, pad_top,
                          pad_left, *spec.dilation, code, slice_depth)
        if slices > 1:
            fastlaunch.launch(split_sum, sum_grid, sum_block, stream, target, bias, out, code)

    return run


KEPT_WORKSPACE_BYTES = 64 << 20  # split-K partial-sum buffers kept by prepared calls, in all
_kept_workspace_bytes = 0


def forget_kept_workspace() -> None:
    """The prepared calls holding kept split-K buffers are gone (`numbaconv.cuda.run`): count from zero again."""
    global _kept_workspace_bytes
    _kept_workspace_bytes = 0


def run_gemm(spec: ConvSpec, x, weight, bias, out, stream):
    gemm_launcher(spec)(x, weight, bias, out, stream)


def depthwise_unsupported(spec: ConvSpec) -> str | None:
    if not spec.is_depthwise:
        return (f"needs groups == in_channels (one input channel per group), got groups={spec.groups} "
                f"with in_channels={spec.in_channels}")
    if spec.kernel_height * spec.kernel_width > launch.DEPTHWISE_MAX_TAPS:
        return f"stages at most {launch.DEPTHWISE_MAX_TAPS} filter taps, got {spec.kernel_height}x{spec.kernel_width}"
    if spec.out_channels > launch.MAX_GRID_Y:
        return f"launches one block row per output channel (at most {launch.MAX_GRID_Y}), got {spec.out_channels}"
    if launch.depthwise_tile(spec.out_height, spec.out_width, (spec.kernel_height, spec.kernel_width),
                             spec.stride, spec.dilation, spec.out_channels) is None:
        return "needs one output's input window to fit the shared-memory tile (kernel extent too large)"
    return None


def depthwise_launcher(spec: ConvSpec, keep: bool = False):
    """launch(x, weight, bias, out, stream) of the depthwise kernel for ``spec``, its tile and grid worked out once
    (``keep``: as gemm_launcher's; this kernel has no workspace)."""
    from .depthwise import KERNELS

    n, c_out, h_out, w_out = spec.batch, spec.out_channels, spec.out_height, spec.out_width  # the NCHW view's
    tile = launch.depthwise_tile(h_out, w_out, (spec.kernel_height, spec.kernel_width), spec.stride, spec.dilation,
                                 c_out)
    grid, block = launch.depthwise(n, c_out, h_out, w_out, tile)
    kernel = KERNELS[spec.dtype.name]
    code, multiplier = spec.activation_code, spec.channel_multiplier

    def run(x, weight, bias, out, stream):
        x, pad_top, pad_left = padded(spec, x, stream)
        fastlaunch.launch(kernel, grid, block, stream, x, weight, bias, out, multiplier, *spec.stride, pad_top,
                          pad_left, *spec.dilation, code, *tile)

    return run


def run_depthwise(spec: ConvSpec, x, weight, bias, out, stream):
    depthwise_launcher(spec)(x, weight, bias, out, stream)
