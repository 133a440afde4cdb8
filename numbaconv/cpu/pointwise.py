"""Pointwise (1x1, groups=1) convolution: per image, out[C_out, P] = W[C_out, C_in] x X[C_in, P].

Two paths share the preparation (padding and stride are applied by building the
C_in x P operand, which for a 1x1 kernel is the strided, padded input itself):

* ``pointwise``: the explicit-loop kernel.  It is the implicit-GEMM kernel of
  ``grouped.py`` run on the pixel-flattened view (H_out x W_out -> 1 x P), so the
  register tile of 4 output channels x 16 pixels spans whole rows and the pixel
  tiles of TASK_PIXELS keep the C_in x tile operand in L2.
* ``pointwise_blas``: NumPy's matmul (the machine's BLAS sgemm/dgemm) per batch,
  then one Numba pass for bias and activation.  Packed BLAS micro-kernels are
  several times faster than the explicit loops on this class of shape.
* ``pointwise_gemm``: numbaconv's own packed GEMM (`numbaconv.cpu.gemm`: AVX-512 register tiles
  emitted as LLVM vector code) with the bias and activation fused into the blocks' epilogue, on
  Numba's thread pool alone (no second pool to hand the cores to).  NCHW: ``W @ X[n]`` per image;
  NHWC: ``X @ W^T`` over the whole batch, W^T read through strides (no transposed copy).
"""

import numba
import numpy as np

from ..arrays import pad_input, pad_input_nhwc
from ..config import GEMV_MIN_DEPTH, GEMV_PARALLEL_MIN_WORK
from ..spec import ConvSpec
from . import gemm, packcache
from .epilogue import bias_activation_inplace, bias_activation_last_inplace
from .grouped import grouped_conv_nchw, pack_weights, split_phases


def gemm_operand(x: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """The (N, C_in, P) operand: the input padded, subsampled by the stride, C-contiguous."""
    padded = pad_input(x, spec)
    sh, sw = spec.stride
    if (sh, sw) != (1, 1):
        padded = padded[:, :, ::sh, ::sw][:, :, : spec.out_height, : spec.out_width]
    return np.ascontiguousarray(padded).reshape(spec.batch, spec.in_channels, spec.out_height * spec.out_width)


def workspace_blas(spec: ConvSpec) -> int:
    """Bytes of temporaries of `run_blas` / `run_blas_nhwc` for a C-contiguous x: the padded input (if
    padded) and its stride-subsampled copy (if strided)."""
    elements = spec.padded_elements if spec.has_padding else 0
    if spec.stride != (1, 1):
        elements += spec.batch * spec.in_channels * spec.out_height * spec.out_width
    return elements * spec.dtype.itemsize


def workspace_explicit(spec: ConvSpec) -> int:
    """Bytes of temporaries of `run_explicit`: the GEMM operand and its phase-split copy, the packed weights."""
    operand = spec.batch * spec.in_channels * (spec.out_height * spec.out_width + 16)
    packed = -(-spec.out_channels // 4) * 4 * spec.in_channels
    return workspace_blas(spec) + (operand + packed) * spec.dtype.itemsize


def run_explicit(spec: ConvSpec, x, weight, bias, out):
    operand = gemm_operand(x, spec)
    pixels = operand.shape[2]
    grouped_conv_nchw(
        out.size * spec.in_channels,
        split_phases(operand.reshape(spec.batch, spec.in_channels, 1, pixels), 1),
        pack_weights(weight, 1),
        bias,
        out.reshape(spec.batch, spec.out_channels, 1, pixels),
        1, 1, 1, 1, 1, 1, 1, 1, pixels, spec.activation_code,
    )


def run_blas(spec: ConvSpec, x, weight, bias, out):
    operand = gemm_operand(x, spec)
    product = out.reshape(spec.batch, spec.out_channels, operand.shape[2])
    np.matmul(weight.reshape(spec.out_channels, spec.in_channels), operand, out=product)
    if spec.has_bias or spec.activation is not None:
        bias_activation_inplace(product, bias, spec.activation_code)


# ---- channels-last (NHWC) ------------------------------------------------------------------------
# In NHWC a 1x1 convolution over the whole batch is one GEMM with no transposes at all:
# out[N*H_out*W_out, C_out] = X[N*H_out*W_out, C_in] x W^T[C_in, C_out].

def gemm_operand_nhwc(x: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """The (N*P, C_in) operand from batched NHWC x: padded, subsampled by the stride, C-contiguous."""
    x = pad_input_nhwc(x, spec)
    sh, sw = spec.stride
    if (sh, sw) != (1, 1):
        x = np.ascontiguousarray(x[:, ::sh, ::sw][:, : spec.out_height, : spec.out_width])
    return x.reshape(spec.batch * spec.out_height * spec.out_width, spec.in_channels)  # C_in may be 0


def run_blas_nhwc(spec: ConvSpec, x, weight, bias, out):
    """x batched NHWC (any strides), out C-contiguous (N, H_out, W_out, C_out)."""
    product = out.reshape(spec.batch * spec.out_height * spec.out_width, spec.out_channels)
    np.matmul(gemm_operand_nhwc(x, spec), weight.reshape(spec.out_channels, spec.in_channels).T, out=product)
    if spec.has_bias or spec.activation is not None:
        bias_activation_last_inplace(product, bias, spec.activation_code)


# ---- numbaconv's own GEMM ---------------------------------------------------------------------------------
def _kept_packing(spec: ConvSpec, weight, weights, as_a: bool):
    """The (C_out x C_in) ``weights`` packed for `gemm.matmul` as its A (NCHW: W @ X) or B (W^T) operand, kept
    by `packcache` for a frozen caller's ``weight``; None for any other weight (matmul packs it per call)."""
    return packcache.packed(weight, ("pointwise", as_a), lambda: gemm.pack(
        weights.reshape(-1), spec.in_channels, 1, spec.out_channels, spec.in_channels, as_a, spec.dtype))


def _run_channels_last(spec: ConvSpec, operand, weights, bias, out, weight):
    """out (rows x C_out) = operand (rows x C_in) @ W^T + bias, activated: NHWC data, and images of one pixel
    in either layout (NCHW and NHWC are then one memory layout, (N, C)).  One pixel per image with a long
    reduction, or one image of one pixel, is a matrix-vector product per image (`gemm.gemv`: no packing of W,
    which is read once).
    ``weight``: the caller's array, whose packing `packcache` keeps where it is frozen."""
    rows = operand.shape[0]
    if spec.out_height * spec.out_width == 1 and (spec.in_channels >= GEMV_MIN_DEPTH or rows == 1):
        gemm.gemv(rows * spec.out_channels * spec.in_channels, weights, operand, out.reshape(rows, spec.out_channels),
                  bias, spec.activation_code, np.zeros((), spec.dtype)[()], minimum=GEMV_PARALLEL_MIN_WORK)
        return
    shared = _kept_packing(spec, weight, weights, False)
    gemm.matmul(np.ascontiguousarray(operand).reshape(-1), 0, spec.in_channels, 1, weights.reshape(-1), 0, 1,
                spec.in_channels, out.reshape(-1), 0, spec.out_channels, 1, rows, spec.out_channels,
                spec.in_channels, bias, False, spec.activation_code, numba.get_num_threads(), shared, False)


def run_gemm(spec: ConvSpec, x, weight, bias, out):
    """NCHW: out[n] (C_out x P) = W (C_out x C_in) @ X[n] (C_in x P) + bias, activated."""
    operand = gemm_operand(x, spec)
    pixels = operand.shape[2]
    weights = np.ascontiguousarray(weight.reshape(spec.out_channels, spec.in_channels))
    if pixels == 1:  # (N, C_in, 1) is (N, C_in): the channels-last product
        _run_channels_last(spec, operand.reshape(spec.batch, spec.in_channels), weights, bias, out, weight)
        return
    shared = _kept_packing(spec, weight, weights, True)
    gemm.matmul(weights.reshape(-1), 0, spec.in_channels, 1, operand.reshape(-1), spec.in_channels * pixels, pixels, 1,
                out.reshape(-1), spec.out_channels * pixels, pixels, spec.batch, spec.out_channels, pixels,
                spec.in_channels, bias, True, spec.activation_code, numba.get_num_threads(), shared, True)


def run_gemm_nhwc(spec: ConvSpec, x, weight, bias, out):
    """NHWC: out (N*P x C_out) = X (N*P x C_in) @ W^T (C_in x C_out) + bias, W^T read in place."""
    weights = np.ascontiguousarray(weight.reshape(spec.out_channels, spec.in_channels))
    _run_channels_last(spec, gemm_operand_nhwc(x, spec), weights, bias, out, weight)


def workspace_gemm(spec: ConvSpec) -> int:
    """Bytes of `run_gemm`'s temporaries: the operand copy (padded or strided input) and the GEMM's packing."""
    pixels = spec.out_height * spec.out_width
    threads = numba.config.NUMBA_NUM_THREADS
    if spec.layout == "NHWC":
        packing = gemm.workspace(1, spec.batch * pixels, spec.out_channels, spec.in_channels, spec.dtype, threads)
    else:
        packing = gemm.workspace(spec.batch, spec.out_channels, pixels, spec.in_channels, spec.dtype, threads)
    return workspace_blas(spec) + packing
