"""The cost model: parameters, FLOPs, minimum bytes moved, arithmetic intensity, roofline.

All functions take a `numbaconv.spec.ConvSpec` (build one from shapes with
``ConvSpec.from_shapes``), so tests, benchmarks, the CLI and ``plan()`` count alike.

* parameters  = C_out * C_in/G * kH * kW  (+ C_out with a bias)
* FLOPs       = 2 * N * C_out * C_in/G * kH * kW * H_out * W_out   (a multiply-add is 2 FLOPs;
  bias and activation are not counted, as is customary)
* min. bytes  = itemsize * (input + weights + bias + output): each crosses the memory bus once
* intensity   = FLOPs / min. bytes
* roofline    = min(peak FLOP/s, intensity * bandwidth): the best attainable rate

The backward pass (grad input, grad weight and grad bias from grad_output) counts

* FLOPs       = 2 x the forward's: grad input and grad weight are each a product of the
  forward's size (the bias gradient's sum is not counted)
* min. bytes  = itemsize * (x + grad_output + weights read, grad input + grad weights (+ bias) written)
"""

from __future__ import annotations

from .spec import ConvSpec


def parameter_count(spec: ConvSpec) -> int:
    count = spec.out_channels * spec.in_channels_per_group * spec.kernel_height * spec.kernel_width
    return count + (spec.out_channels if spec.has_bias else 0)


def flops(spec: ConvSpec) -> int:
    n, c_out, h_out, w_out = spec.nchw_out_shape
    return 2 * n * c_out * spec.reduction_length * h_out * w_out


def min_bytes(spec: ConvSpec) -> int:
    input_elems = spec.batch * spec.in_channels * spec.in_height * spec.in_width
    output_elems = spec.batch * spec.out_channels * spec.out_height * spec.out_width
    return spec.dtype.itemsize * (input_elems + parameter_count(spec) + output_elems)


def backward_flops(spec: ConvSpec) -> int:
    return 2 * flops(spec)


def backward_min_bytes(spec: ConvSpec) -> int:
    input_elems = spec.batch * spec.in_channels * spec.in_height * spec.in_width
    output_elems = spec.batch * spec.out_channels * spec.out_height * spec.out_width
    weights = spec.out_channels * spec.in_channels_per_group * spec.kernel_height * spec.kernel_width
    bias = spec.out_channels if spec.has_bias else 0
    return spec.dtype.itemsize * (2 * input_elems + output_elems + 2 * weights + bias)


def arithmetic_intensity(spec: ConvSpec) -> float:
    """FLOPs per byte of compulsory memory traffic."""
    moved = min_bytes(spec)
    return flops(spec) / moved if moved else 0.0


def roofline_flops_per_s(spec: ConvSpec, peak_flops_per_s: float, bandwidth_bytes_per_s: float) -> float:
    """The attainable FLOP/s for this problem on a machine with the given roofs."""
    return min(peak_flops_per_s, arithmetic_intensity(spec) * bandwidth_bytes_per_s)


def roofline_seconds(spec: ConvSpec, peak_flops_per_s: float, bandwidth_bytes_per_s: float,
                     backward: bool = False) -> float:
    """The least time the problem (its backward pass with ``backward``) can take:
    max(compute time, memory time)."""
    if backward:
        return max(backward_flops(spec) / peak_flops_per_s, backward_min_bytes(spec) / bandwidth_bytes_per_s)
    return max(flops(spec) / peak_flops_per_s, min_bytes(spec) / bandwidth_bytes_per_s)


def summary(spec: ConvSpec) -> dict:
    return {
        "params": parameter_count(spec),
        "flops": flops(spec),
        "bytes": min_bytes(spec),
        "arithmetic_intensity": arithmetic_intensity(spec),
    }
