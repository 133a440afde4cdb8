"""The CUDA kernels against the NumPy reference, with the CPU kernels' tolerance.

Runs where ``numbaconv.cuda.available()``: on a GPU (``pytest -m cuda tests/cuda``) and, in CI,
under Numba's simulator (``tests/test_cuda_simulator.py`` reruns this directory with
``NUMBA_ENABLE_CUDASIM=1``; tiles shrink there so tiny inputs span several blocks).
Full-size real-network layers run on a real GPU only: the simulator runs every thread in Python.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, assert_matches_reference

import numbaconv
from numbaconv import cuda as numbaconv_cuda
from numbaconv import workloads

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not numbaconv_cuda.available(), reason="no CUDA device and the simulator is off")]

if numbaconv_cuda.available():
    from numba import cuda

CUDA_KERNELS = ["cuda_pointwise", "cuda_depthwise", "cuda_grouped"]

# (x shape, weight shape, keyword arguments): every family, stride, padding, dilation, multiplier
CASES = [
    ((2, 4, 5, 7), (6, 4, 1, 1), {}),
    ((1, 4, 5, 7), (6, 4, 1, 1), dict(stride=2)),
    ((2, 4, 6, 5), (4, 1, 3, 3), dict(groups=4, padding=1)),
    ((1, 3, 7, 6), (6, 1, 3, 2), dict(groups=3, padding=(1, 2), stride=(2, 1), dilation=(1, 2))),
    ((1, 4, 9, 9), (4, 1, 5, 5), dict(groups=4, padding=2, stride=2)),
    ((2, 4, 6, 6), (6, 2, 3, 3), dict(groups=2, padding=1, stride=2)),
    ((1, 6, 5, 5), (9, 2, 1, 1), dict(groups=3)),
    ((1, 3, 8, 7), (5, 3, 3, 3), dict(padding="same", dilation=2)),
    ((1, 2, 6, 6), (4, 2, 2, 3), dict(padding="valid", stride=(1, 2))),
]


def serving(x_shape, w_shape, **kwargs):
    names = []
    for name in CUDA_KERNELS:
        try:
            numbaconv.plan(x_shape, w_shape, True, device="cuda", algorithm=name, **kwargs)
            names.append(name)
        except ValueError:
            pass
    return names


def problem(rng, x_shape, w_shape, dtype):
    return (rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype),
            rng.standard_normal(w_shape[0]).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_every_serving_kernel_matches_the_reference(rng, x_shape, w_shape, kwargs, dtype):
    x, w, b = problem(rng, x_shape, w_shape, dtype)
    names = serving(x_shape, w_shape, **kwargs)
    assert "cuda_grouped" in names
    for name in names:
        got = numbaconv.conv2d(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), algorithm=name, **kwargs)
        assert got.dtype == dtype
        assert_matches_reference(got.copy_to_host(), x, w, b, **kwargs)


def test_random_configurations(rng):
    """A seeded random sample over the forward options for every kernel that serves it (the simulator is too slow
    for hypothesis's count): groups, depthwise multipliers, strides, dilations, paddings and their modes,
    activations, odd sizes, NHWC and strided views, both dtypes; deep reductions reach split-K."""
    for _ in range(20):
        groups = int(rng.choice([1, 2, 3, 4]))
        depthwise = bool(rng.integers(2))
        cin = groups * (1 if depthwise else int(rng.integers(1, 6)))
        cout = groups * int(rng.integers(1, 4))
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        kwargs = dict(groups=groups, stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                      dilation=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                      padding=(int(rng.integers(0, 3)), int(rng.integers(0, 3))),
                      padding_mode=str(rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"])),
                      activation=rng.choice([None, "relu", "relu6", "silu", "hardswish"]))
        height = (kh - 1) * kwargs["dilation"][0] + 1 + int(rng.integers(0, 7))
        width = (kw - 1) * kwargs["dilation"][1] + 1 + int(rng.integers(0, 7))
        height, width = max(height, kwargs["padding"][0] + 1), max(width, kwargs["padding"][1] + 1)
        dtype = rng.choice(DTYPES)
        x_shape, w_shape = (int(rng.integers(1, 3)), cin, height, width), (cout, cin // groups, kh, kw)
        x, w, b = problem(rng, x_shape, w_shape, dtype)
        x *= 4  # reach the activations' bends
        expected = numbaconv.reference.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                              **kwargs)
        nhwc = bool(rng.integers(2))
        strided = bool(rng.integers(2))
        host = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x
        d_x = cuda.to_device(np.repeat(host, 2, axis=-1))[:, :, :, ::2] if strided else cuda.to_device(host)
        for name in serving(x_shape, w_shape, **kwargs):
            got = numbaconv.conv2d(d_x, cuda.to_device(w), cuda.to_device(b), algorithm=name,
                                   layout="NHWC" if nhwc else "NCHW", **kwargs).copy_to_host()
            if nhwc:
                got = got.transpose(0, 3, 1, 2)
            tolerance = 1e-4 if dtype == np.float32 else 1e-10
            scale = max(1.0, float(np.abs(expected).max()))
            assert np.abs(got - expected).max() <= tolerance * scale, (name, x_shape, w_shape, kwargs, nhwc, strided)


# Every padding mode with and without an activation, every activation at least once: the border is read in the
# kernels' gathers and the activation applied in their shared epilogue, apart (the 15 pairs cost 33 s simulated;
# the random configurations below and on a GPU draw pairs beyond these).
@pytest.mark.parametrize("padding_mode, activation", [
    ("reflect", None), ("reflect", "relu"), ("replicate", None), ("replicate", "relu6"), ("circular", None),
    ("circular", "silu"), ("reflect", "hardswish")])
def test_padding_modes_and_activations(rng, padding_mode, activation):
    x, w, b = problem(rng, (1, 4, 5, 6), (4, 1, 3, 3), np.float32)
    x *= 4  # reach relu6's and hardswish's upper bends
    kwargs = dict(groups=4, padding=(1, 2), padding_mode=padding_mode, activation=activation)
    for name in ("cuda_depthwise", "cuda_grouped"):
        got = numbaconv.conv2d(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), algorithm=name, **kwargs)
        assert_matches_reference(got.copy_to_host(), x, w, b, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((1, 16, 2, 2), (3, 16, 3, 3), dict(padding=1, activation="relu")),  # one block, 144-deep
    ((1, 256, 3, 1), (4, 128, 1, 1), dict(groups=2, activation="hardswish")),  # grouped, 128-deep
    ((1, 36, 2, 3), (5, 36, 2, 2), dict(padding=(0, 1), dilation=(1, 2))),  # 144-deep: a GPU's last slice short
])
def test_split_k_slices_add_up_in_order(rng, x_shape, w_shape, kwargs, dtype):
    """Grids too small for the GPU split the reduction (launch.gemm); the slices' sums, bias and activation.
    Deep enough to split with the GPU's tiles (16-deep steps, at least 4 per slice) and the simulator's."""
    from numbaconv.cuda import launch, launches, run

    x, w, b = problem(rng, x_shape, w_shape, dtype)
    spec = numbaconv.plan(x_shape, w_shape, True, device="cuda", algorithm="cuda_grouped", **kwargs).spec
    depth = spec.in_channels_per_group * spec.kernel_height * spec.kernel_width
    grid, _, _ = launch.gemm(spec.batch, spec.groups, spec.out_channels_per_group,
                             spec.out_height * spec.out_width, depth, launches.multiprocessors())
    assert grid[2] > 1
    run._forget_prepared()
    d_x, d_w, d_b = cuda.to_device(x), cuda.to_device(w), cuda.to_device(b)
    for _ in range(2):  # the second call is prepared and reuses the first's partial-sum buffer
        got = numbaconv.conv2d(d_x, d_w, d_b, algorithm="cuda_grouped", **kwargs)
        assert_matches_reference(got.copy_to_host(), x, w, b, **kwargs)
        assert launches._kept_workspace_bytes == grid[2] * np.dtype(dtype).itemsize * got.size


def test_layouts_views_unbatched_empty_and_out(rng):
    x, w, b = problem(rng, (2, 4, 6, 8), (4, 2, 3, 3), np.float64)
    kwargs = dict(groups=2, padding=1)
    expected = numbaconv.reference.conv2d(x, w, b, **kwargs)
    # a strided device view (every other column) is read in place
    wide = cuda.to_device(np.repeat(x, 2, axis=3))
    view = wide[:, :, :, ::2]
    got = numbaconv.conv2d(view, cuda.to_device(w), cuda.to_device(b), **kwargs)
    np.testing.assert_allclose(got.copy_to_host(), expected, rtol=1e-12, atol=1e-12)
    # NHWC in, NHWC out
    x_nhwc = cuda.to_device(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    got = numbaconv.conv2d(x_nhwc, cuda.to_device(w), cuda.to_device(b), layout="NHWC", **kwargs)
    np.testing.assert_allclose(got.copy_to_host(), expected.transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
    # unbatched
    got = numbaconv.conv2d(cuda.to_device(x[1]), cuda.to_device(w), cuda.to_device(b), **kwargs)
    np.testing.assert_allclose(got.copy_to_host(), expected[1], rtol=1e-12, atol=1e-12)
    # empty batch
    got = numbaconv.conv2d(cuda.to_device(x[:0]), cuda.to_device(w), None, **kwargs)
    assert got.shape == (0, 4, 6, 8)
    # out= on the device is written and returned; inputs are left alone
    d_x = cuda.to_device(x)
    out = cuda.device_array(expected.shape, np.float64)
    assert numbaconv.conv2d(d_x, cuda.to_device(w), cuda.to_device(b), out=out, **kwargs) is out
    np.testing.assert_allclose(out.copy_to_host(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(d_x.copy_to_host(), x)
    with pytest.raises(ValueError, match="out must not overlap an input, but it shares memory with x"):
        numbaconv.conv2d(d_x, cuda.to_device(np.ones((4, 4, 1, 1))), out=d_x)
    with pytest.raises(ValueError, match=r"out must have shape \(2, 4, 6, 8\)"):
        numbaconv.conv2d(d_x, cuda.to_device(w), out=cuda.device_array((2, 4, 6, 7)), **kwargs)


def test_repeated_calls_skip_validation_but_not_safety(rng):
    """A repeated call on Numba arrays runs a prepared launch (cuda/run.py, _PREPARED): the same results, one entry
    per distinct call, and out's overlap with an input still refused."""
    from numbaconv.cuda import run

    run._forget_prepared()
    x, w, b = problem(rng, (2, 4, 6, 5), (6, 2, 3, 3), np.float32)
    kwargs = dict(groups=2, padding=1, activation="relu")
    d_x, d_w, d_b = cuda.to_device(x), cuda.to_device(w), cuda.to_device(b)
    for _ in range(3):
        assert_matches_reference(numbaconv.conv2d(d_x, d_w, d_b, **kwargs).copy_to_host(), x, w, b, **kwargs)
        assert_matches_reference(numbaconv.conv2d(d_x, d_w, None, **kwargs).copy_to_host(), x, w, None, **kwargs)
    assert len(run._PREPARED) == 2  # with and without a bias
    out = cuda.device_array((2, 6, 6, 5), np.float32)
    for _ in range(2):
        assert numbaconv.conv2d(d_x, d_w, d_b, out=out, **kwargs) is out
        assert_matches_reference(out.copy_to_host(), x, w, b, **kwargs)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for _ in range(2):  # NHWC: a strided view per call, the same prepared launch
        got = numbaconv.conv2d(cuda.to_device(x_nhwc), d_w, d_b, layout="NHWC", **kwargs).copy_to_host()
        assert_matches_reference(got.transpose(0, 3, 1, 2), x, w, b, **kwargs)
    assert len(run._PREPARED) == 4
    square = cuda.to_device(rng.standard_normal((1, 4, 5, 5)).astype(np.float32))
    pointwise = cuda.to_device(rng.standard_normal((4, 4, 1, 1)).astype(np.float32))
    entries = len(run._PREPARED)
    numbaconv.conv2d(square, pointwise, out=cuda.device_array_like(square))
    assert len(run._PREPARED) == entries + 1
    with pytest.raises(ValueError, match="out must not overlap an input, but it shares memory with x"):
        numbaconv.conv2d(square, pointwise, out=square)  # the same key: prepared, and still checked
    assert len(run._PREPARED) == entries + 1
    with pytest.raises(ValueError, match="groups"):  # a new argument is validated, not looked up
        numbaconv.conv2d(d_x, d_w, d_b, groups=3)


def test_numba_arrays_round_trip_on_the_device(rng):
    x, w, b = problem(rng, (1, 4, 5, 5), (4, 1, 3, 3), np.float32)
    d_x = cuda.to_device(x)
    got = numbaconv.depthwise_conv2d(d_x, cuda.to_device(w), cuda.to_device(b), padding=1)
    assert type(got) is type(d_x)  # the same family: a Numba device array, never a host copy
    assert_matches_reference(got.copy_to_host(), x, w, b, padding=1, groups=4)


def test_device_cuda_copies_numpy_in_and_out(rng):
    x, w, b = problem(rng, (1, 4, 5, 5), (6, 2, 3, 3), np.float32)
    got = numbaconv.conv2d(x, w, b, groups=2, padding=1, device="cuda")
    assert isinstance(got, np.ndarray)
    assert_matches_reference(got, x, w, b, groups=2, padding=1)
    out = np.empty_like(got)
    assert numbaconv.conv2d(x, w, b, groups=2, padding=1, device="cuda", out=out) is out


def test_forcing_across_devices_is_refused(rng):
    x, w, _ = problem(rng, (1, 4, 5, 5), (4, 4, 1, 1), np.float32)
    with pytest.raises(ValueError, match="algorithm='grouped' runs on the CPU, but the data is on the CUDA"):
        numbaconv.conv2d(cuda.to_device(x), cuda.to_device(w), algorithm="grouped")
    with pytest.raises(ValueError, match="needs groups == in_channels"):
        numbaconv.plan(x.shape, w.shape, device="cuda", algorithm="cuda_depthwise")


@pytest.mark.skipif(numbaconv_cuda.simulated(), reason="full-size layers: real GPU only")
@pytest.mark.parametrize("key", workloads.DEFAULT_SUITE)
def test_real_layers_at_full_size(rng, key):
    layer = workloads.layer(key)
    x, w, b = problem(rng, (2, layer.in_channels, layer.size, layer.size),
                      (layer.out_channels, layer.in_channels // layer.groups, layer.kernel, layer.kernel), np.float32)
    kwargs = dict(stride=layer.stride, padding=layer.padding, groups=layer.groups)
    got = numbaconv.conv2d(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), **kwargs)
    assert_matches_reference(got.copy_to_host(), x, w, b, **kwargs)


@pytest.mark.skipif(numbaconv_cuda.simulated(), reason="CuPy and torch need a real GPU")
@pytest.mark.parametrize("library", ["cupy", "torch"])
def test_cupy_and_torch_arrays_round_trip_zero_copy(rng, library):
    module = pytest.importorskip(library)
    x, w, b = problem(rng, (1, 8, 6, 6), (8, 1, 3, 3), np.float32)
    if library == "cupy":
        arrays = [module.asarray(a) for a in (x, w, b)]
    else:
        if not module.cuda.is_available():
            pytest.skip("torch has no CUDA here")
        arrays = [module.from_numpy(a).cuda() for a in (x, w, b)]
    got = numbaconv.depthwise_conv2d(*arrays, padding=1)
    assert type(got) is type(arrays[0])  # CuPy in, CuPy out; torch in, torch out
    pointer = got.__cuda_array_interface__["data"][0]
    assert pointer not in {a.__cuda_array_interface__["data"][0] for a in arrays}
    host = got.get() if library == "cupy" else got.cpu().numpy()
    assert_matches_reference(host, x, w, b, padding=1, groups=8)


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
def test_conv1d_on_device_arrays(rng, layout):
    x = rng.standard_normal((2, 4, 9)).astype(np.float32)
    if layout == "NLC":
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    w = rng.standard_normal((8, 1, 3)).astype(np.float32)  # depthwise 1-D, multiplier 2
    kwargs = dict(groups=4, padding=1, stride=2, layout=layout)
    got = numbaconv.conv1d(cuda.to_device(x), cuda.to_device(w), **kwargs)
    assert got.shape == numbaconv.reference.conv1d(x, w, **kwargs).shape
    np.testing.assert_allclose(got.copy_to_host(), numbaconv.reference.conv1d(x, w, **kwargs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", [
    dict(groups=2, stride=2**40),  # a stride far beyond the input: lowered to the window's last start
    dict(groups=2, dilation=(40, 1), padding=(20, 1)),  # rows gathered: 43 padded rows for 3 outputs x 2 taps
    dict(groups=1, stride=(1, 30), padding=(1, 40), padding_mode="replicate"),  # columns gathered
])
def test_degenerate_geometry_is_gathered_on_the_device(rng, kwargs):
    """Huge strides, dilations and paddings run in work and memory of the output (ConvSpec.kernel_view)."""
    x, w, b = problem(rng, (2, 2, 3, 4), (2, 2 // kwargs["groups"], 2, 3), np.float32)
    got = numbaconv.conv2d(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), **kwargs)
    assert_matches_reference(got.copy_to_host(), x, w, b, **kwargs)
