"""Every malformed call is rejected before any kernel runs, with a message naming the parameter and values."""

from __future__ import annotations

import numpy as np
import pytest

import numbaconv
from numbaconv import reference

X = np.zeros((2, 4, 8, 8), np.float32)
W = np.zeros((6, 2, 3, 3), np.float32)  # groups=2
B = np.zeros(6, np.float32)

CASES = [
    # (description, kwargs overriding a valid grouped call, exception, message fragment)
    ("x of rank 2", dict(x=np.zeros((4, 8), np.float32)), ValueError, r"x must be 4-D .* got 2-D shape \(4, 8\)"),
    ("x of rank 5", dict(x=np.zeros((1, 2, 4, 8, 8), np.float32)), ValueError, "got 5-D"),
    ("weight of rank 3", dict(weight=np.zeros((6, 2, 3), np.float32)), ValueError, r"weight must be 4-D .* \(6, 2, 3\)"),
    ("C_in not divisible by groups", dict(groups=3), ValueError, r"in_channels \(4\) must be divisible by groups \(3\)"),
    ("C_out not divisible by groups", dict(weight=np.zeros((5, 2, 3, 3), np.float32), bias=None),
     ValueError, r"out_channels .* 5.* divisible by groups \(2\)"),
    ("weight/input channel mismatch", dict(weight=np.zeros((6, 3, 3, 3), np.float32)), ValueError,
     r"weight.shape\[1\] \(3\) x groups \(2\) must equal the input's channels \(4\)"),
    ("kernel larger than padded input", dict(weight=np.zeros((6, 2, 11, 3), np.float32)), ValueError,
     r"kernel \(11x3.*larger than the padded input \(10x10"),
    ("dilated kernel too large", dict(dilation=5), ValueError, "larger than the padded input"),
    ("stride 0", dict(stride=0), ValueError, r"stride must be >= 1, got 0"),
    ("negative stride", dict(stride=(1, -2)), ValueError, r"stride must be >= 1, got \(1, -2\)"),
    ("dilation 0", dict(dilation=(0, 1)), ValueError, "dilation must be >= 1"),
    ("groups 0", dict(groups=0), ValueError, "groups must be >= 1, got 0"),
    ("negative padding", dict(padding=-1), ValueError, "padding must be >= 0, got -1"),
    ("unknown padding word", dict(padding="full"), ValueError, "padding must be .* 'same' or 'valid', got 'full'"),
    ("'same' with stride 2", dict(padding="same", stride=2), ValueError, r"'same' is only supported with stride 1, got stride \(2, 2\)"),
    ("stride tuple of length 3", dict(stride=(1, 1, 1)), ValueError, r"stride must be an int or a pair .* length 3"),
    ("padding tuple of length 1", dict(padding=(1,)), ValueError, "padding must be an int or a pair"),
    ("float stride", dict(stride=1.5), TypeError, "stride must be an int or a pair of ints, got float 1.5"),
    ("float in a stride pair", dict(stride=(1, 2.0)), TypeError, r"stride must be an int or a pair of ints, got \(1, 2.0\)"),
    ("bool dilation", dict(dilation=True), TypeError, "dilation must be an int"),
    ("float groups", dict(groups=2.0), TypeError, "groups must be an int, got float 2.0"),
    ("string stride", dict(stride="2"), TypeError, "stride must be an int or a pair of ints, got str"),
    ("bias of wrong length", dict(bias=np.zeros(5, np.float32)), ValueError, r"bias must have shape \(6,\) .* got \(5,\)"),
    ("bias 2-D", dict(bias=np.zeros((6, 1), np.float32)), ValueError, r"bias must have shape \(6,\)"),
    ("int input", dict(x=np.zeros((2, 4, 8, 8), np.int32)), TypeError, "got x int32 and weight float32"),
    ("complex input", dict(x=np.zeros((2, 4, 8, 8), np.complex64)), TypeError, "got x complex64"),
    ("float16 input", dict(x=np.zeros((2, 4, 8, 8), np.float16)), TypeError, "got x float16"),
    ("mixed dtypes", dict(weight=np.zeros((6, 2, 3, 3), np.float64)), TypeError, "got x float32 and weight float64"),
    ("bias dtype", dict(bias=np.zeros(6, np.float64)), TypeError, "got x float32 and bias float64"),
    ("string input", dict(x="image"), TypeError, "x must be an array, got str"),
    ("None weight", dict(weight=None), TypeError, "weight must be an array, got NoneType"),
    ("object array", dict(x=np.empty((2, 4, 8, 8), dtype=object)), TypeError, "got x object"),
    ("ragged list", dict(x=[[1.0, 2.0], [3.0]]), TypeError, "x must be an array"),
    ("out of wrong shape", dict(out=np.zeros((2, 6, 8, 7), np.float32)), ValueError, r"out must have shape \(2, 6, 8, 8\), got \(2, 6, 8, 7\)"),
    ("out of wrong dtype", dict(out=np.zeros((2, 6, 8, 8), np.float64)), ValueError, "out must have dtype float32, got float64"),
    ("out not an array", dict(out=[0.0]), TypeError, "out must be a numpy.ndarray, got list"),
    ("unknown padding_mode", dict(padding_mode="mirror"), ValueError, "padding_mode must be one of .* got 'mirror'"),
    ("reflect padding too large", dict(x=np.zeros((1, 4, 2, 8), np.float32), padding=2, padding_mode="reflect"),
     ValueError, r"'reflect' needs padding smaller than the input: padding \(2, 2, 2, 2\)"),
    ("circular padding too large", dict(x=np.zeros((1, 4, 2, 8), np.float32), padding=3, padding_mode="circular"),
     ValueError, "'circular' needs padding no larger than the input"),
    ("unknown activation", dict(activation="gelu"), ValueError, "activation must be one of .* got 'gelu'"),
    ("unknown layout", dict(layout="CHWN"), ValueError, "layout must be one of .* got 'CHWN'"),
    ("unknown algorithm", dict(algorithm="winograd"), ValueError, r"algorithm must be 'auto', 'tuned' \(CPU\) or one of .* got 'winograd'"),
    ("algorithm that cannot serve", dict(algorithm="depthwise"), ValueError,
     "algorithm='depthwise' cannot serve this convolution: it needs groups == in_channels"),
    ("unknown device", dict(device="tpu"), ValueError, "device must be None, 'cpu' or 'cuda', got 'tpu'"),
]


def call(fn, overrides):
    kwargs = dict(x=X, weight=W, bias=B, padding=1, groups=2)
    kwargs.update(overrides)
    return fn(kwargs.pop("x"), kwargs.pop("weight"), kwargs.pop("bias"), **kwargs)


# reference.conv2d shares every check but algorithm/device, which have their own rules (tested below)
PAIRS = [(numbaconv.conv2d, case) for case in CASES] + [
    (reference.conv2d, case) for case in CASES if not {"algorithm", "device"} & set(case[1])
]


@pytest.mark.parametrize("fn, case", PAIRS, ids=[f"{fn.__module__}-{case[0]}" for fn, case in PAIRS])
def test_rejected_with_clear_message(fn, case):
    description, overrides, error, message = case
    with pytest.raises(error, match=message):
        call(fn, overrides)


def test_valid_baseline_call_passes():
    """The base call of CASES is itself valid, so each case fails for its own reason."""
    assert call(numbaconv.conv2d, {}).shape == (2, 6, 8, 8)


def test_out_must_not_overlap_inputs():
    x = np.zeros((1, 4, 6, 6))
    weight = np.zeros((4, 1, 1, 1))
    with pytest.raises(ValueError, match="out must not overlap an input, but it shares memory with x"):
        numbaconv.conv2d(x, weight, groups=4, out=x)
    read_only = np.zeros((1, 4, 6, 6))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        numbaconv.conv2d(x, weight, groups=4, out=read_only)


def test_host_and_device_arrays_cannot_be_mixed():
    class FakeCudaArray:
        __cuda_array_interface__ = {"shape": (1, 4, 6, 6), "typestr": "<f4", "data": (0, False), "version": 3}

    message = "arrays must all be on the host or all on the GPU: x is a CUDA array but weight is not"
    with pytest.raises(TypeError, match=message):
        numbaconv.conv2d(FakeCudaArray(), np.zeros((4, 1, 1, 1), np.float32), groups=4)
    with pytest.raises(ValueError, match="device='cpu' but weight, x are CUDA arrays"):
        numbaconv.conv2d(FakeCudaArray(), FakeCudaArray(), device="cpu")
    with pytest.raises(ValueError, match="stream= applies to CUDA arrays only"):
        numbaconv.conv2d(X, W, groups=2, stream=object())


def test_device_cuda_without_a_gpu_says_so():
    from numbaconv import cuda as numbaconv_cuda

    if numbaconv_cuda.available():
        pytest.skip("a CUDA device (or the simulator) is available here")
    with pytest.raises(RuntimeError, match="no CUDA device is available"):
        numbaconv.conv2d(X, W, groups=2, device="cuda")


def test_family_entry_points_check_their_family():
    with pytest.raises(ValueError, match=r"pointwise_conv2d needs a \(C_out, C_in, 1, 1\) weight, got weight.shape \(6, 2, 3, 3\)"):
        numbaconv.pointwise_conv2d(X, W)
    with pytest.raises(ValueError, match=r"depthwise_conv2d needs a \(m\*C_in, 1, kH, kW\) weight for C_in=4"):
        numbaconv.depthwise_conv2d(X, W)
    with pytest.raises(ValueError, match=r"depthwise_conv2d needs .* got weight.shape \(6, 1, 3, 3\)"):
        numbaconv.depthwise_conv2d(X, np.zeros((6, 1, 3, 3), np.float32))


def test_reference_algorithm_and_device_rules():
    with pytest.raises(ValueError, match="single algorithm 'reference'"):
        reference.conv2d(X, W, groups=2, algorithm="grouped")
    with pytest.raises(ValueError, match="CPU only"):
        reference.conv2d(X, W, groups=2, device="cuda")


def test_plan_validates_too():
    with pytest.raises(ValueError, match=r"in_channels \(4\) must be divisible by groups \(3\)"):
        numbaconv.plan((1, 4, 8, 8), (6, 1, 3, 3), groups=3)
    with pytest.raises(TypeError, match="dtype must be float32 or float64, got int8"):
        numbaconv.plan((1, 4, 8, 8), (6, 4, 3, 3), dtype=np.int8)


def test_rejection_leaves_out_untouched():
    out = np.full((2, 6, 8, 8), 7.0, np.float32)
    with pytest.raises(ValueError):
        numbaconv.conv2d(X, W, B, padding=1, groups=2, out=out, algorithm="depthwise")
    assert (out == 7.0).all()


def test_the_validated_call_cache_tells_equal_values_of_other_types_apart():
    """A repeated call reuses its validated spec (keyed by the arguments and their types): True, 1.0
    and (1.0, 1) compare equal to 1 and (1, 1) but must still be refused after the valid call ran."""
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((2, 2, 3, 3), np.float32)
    expected = numbaconv.conv2d(x, w, stride=1, padding=1)
    for bad in (dict(stride=True, padding=1), dict(stride=1.0, padding=1), dict(stride=1, padding=(1.0, 1))):
        with pytest.raises(TypeError, match="must be an int or a pair of ints"):
            numbaconv.conv2d(x, w, **bad)
    for same in (dict(stride=np.int64(1), padding=[1, 1]), dict(stride=(1, 1), padding=(1, 1))):
        np.testing.assert_array_equal(numbaconv.conv2d(x, w, **same), expected)
