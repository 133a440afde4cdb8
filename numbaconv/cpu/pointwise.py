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
"""

import numpy as np

from ..arrays import pad_input, pad_input_nhwc
from ..spec import ConvSpec
from .epilogue import bias_activation_inplace, bias_activation_last_inplace
from .grouped import grouped_conv_nchw, pack_weights, split_phases


def gemm_operand(x: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """The (N, C_in, P) operand: the input padded, subsampled by the stride, C-contiguous."""
    padded = pad_input(x, spec)
    sh, sw = spec.stride
    if (sh, sw) != (1, 1):
        padded = padded[:, :, ::sh, ::sw][:, :, : spec.out_height, : spec.out_width]
    return np.ascontiguousarray(padded).reshape(spec.batch, spec.in_channels, spec.out_height * spec.out_width)


def _padded_elements(spec: ConvSpec) -> int:
    top, bottom, left, right = spec.padding
    return spec.batch * spec.in_channels * (spec.in_height + top + bottom) * (spec.in_width + left + right)


def workspace_blas(spec: ConvSpec) -> int:
    """Bytes of temporaries of `run_blas` / `run_blas_nhwc` for a C-contiguous x: the padded input (if
    padded) and its stride-subsampled copy (if strided)."""
    elements = _padded_elements(spec) if spec.has_padding else 0
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
