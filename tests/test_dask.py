"""numbaconv.dask: lazy convolutions of Dask arrays equal the in-memory call, whatever the chunking.

Under Dask's threaded scheduler over hypothesis-drawn chunkings (batch, spatial chunks down to one pixel --
smaller than the halo --, channel chunks, odd strides and dilations, every padding mode, both layouts and
dtypes), and under a `distributed.LocalCluster` of two worker processes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array", reason="the dask extra is not installed")

import numbaconv  # noqa: E402
import numbaconv.dask as nd  # noqa: E402

TOLERANCE = {np.float32: 2e-5, np.float64: 1e-12}


def chunking(draw, size: int) -> tuple[int, ...]:
    """A random partition of ``size`` (chunks of one element included)."""
    cuts = sorted(draw(st.sets(st.integers(1, max(1, size - 1)), max_size=min(4, size - 1))))
    bounds = [0] + [c for c in cuts if 0 < c < size] + [size]
    return tuple(b - a for a, b in zip(bounds, bounds[1:]))


@st.composite
def problems(draw):
    family = draw(st.sampled_from(["pointwise", "depthwise", "grouped", "dense"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    layout = draw(st.sampled_from(["NCHW", "NHWC"]))
    if family == "pointwise":
        groups, c_in, c_out, kernel = 1, draw(st.integers(1, 6)), draw(st.integers(1, 6)), (1, 1)
    else:
        groups = {"depthwise": draw(st.integers(1, 5)), "grouped": draw(st.integers(2, 3)), "dense": 1}[family]
        per_group = 1 if family == "depthwise" else draw(st.integers(1, 3))
        c_in = groups * per_group
        c_out = groups * draw(st.integers(1, 2))
        kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (1, 1) if family == "pointwise" else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (0, 0) if family == "pointwise" else (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    padding_mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    batch = draw(st.integers(1, 3))
    reach = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    height, width = (max(r - 2 * p, p + 1, 1) + draw(st.integers(0, 12)) for r, p in zip(reach, padding))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
                  activation=draw(st.sampled_from([None, "relu", "hardswish"])), layout=layout)
    shape = (batch, c_in, height, width) if layout == "NCHW" else (batch, height, width, c_in)
    chunks = tuple(chunking(draw, size) for size in shape)
    seed = draw(st.integers(0, 2**16))
    return shape, chunks, (c_out, c_in // groups) + kernel, dtype, kwargs, seed


def arrays(shape, weight_shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape).astype(dtype), rng.standard_normal(weight_shape).astype(dtype),
            rng.standard_normal(weight_shape[0]).astype(dtype))


def assert_close(got, expected, dtype):
    assert got.shape == expected.shape and got.dtype == expected.dtype
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(got, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * scale)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_random_chunkings_equal_the_in_memory_call(problem):
    shape, chunks, weight_shape, dtype, kwargs, seed = problem
    x, weight, bias = arrays(shape, weight_shape, dtype, seed)
    expected = numbaconv.conv2d(x, weight, bias, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # channel chunks splitting groups: rechunked (tested below)
        lazy = nd.conv2d(da.from_array(x, chunks=chunks), weight, bias, **kwargs)
    assert lazy.shape == expected.shape
    assert_close(lazy.compute(scheduler="threads"), expected, dtype)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_the_family_functions_and_separable(layout, rng):
    x = rng.standard_normal((2, 6, 13, 11)).astype(np.float32)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    chunks = (1, 3, 4, 5) if layout == "NCHW" else (1, 4, 5, 3)
    lazy = da.from_array(x, chunks=chunks)
    dw = rng.standard_normal((12, 1, 3, 3)).astype(np.float32)
    pw = rng.standard_normal((5, 12, 1, 1)).astype(np.float32)
    gw, b = rng.standard_normal((4, 3, 3, 3)).astype(np.float32), rng.standard_normal(12).astype(np.float32)
    options = dict(layout=layout)
    assert_close(nd.depthwise_conv2d(lazy, dw, b, 2, 1, padding_mode="reflect", **options).compute(),
                 numbaconv.depthwise_conv2d(x, dw, b, 2, 1, padding_mode="reflect", **options), np.float32)
    with pytest.warns(UserWarning, match="with groups=1 every output channel reads all 6 input channels"):
        pointwise = nd.pointwise_conv2d(lazy, pw[:, :6], activation="relu", **options)
    assert_close(pointwise.compute(), numbaconv.pointwise_conv2d(x, pw[:, :6], activation="relu", **options),
                 np.float32)
    assert_close(nd.grouped_conv2d(lazy, gw, None, 1, 1, 1, 2, **options).compute(),
                 numbaconv.grouped_conv2d(x, gw, None, 1, 1, 1, 2, **options), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its pointwise stage takes the channels whole by itself
        separable = nd.separable_conv2d(lazy, dw, pw, b, None, 1, 2, 2, depthwise_activation="relu6", **options)
    assert_close(separable.compute(),
                 numbaconv.separable_conv2d(x, dw, pw, b, None, 1, 2, 2, depthwise_activation="relu6", **options),
                 np.float32)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_separable_blocks_in_bands_equal_the_in_memory_call(data):
    """A separable block of one channels-last image runs in bands of output rows, each band's window rows
    copied from the pieces (their segments clipped to the band): random chunkings, strides, dilations, kernel
    sizes (1x1 with a stride: windows of the taps' positions), padding modes, the band budget cut small."""
    from numbaconv import separable

    mode = data.draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    kernel = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    stride = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)))
    dilation = (data.draw(st.integers(1, 2)), 1)
    padding = tuple(data.draw(st.integers(0, 1)) for _ in kernel)
    channels = data.draw(st.integers(1, 3))
    height = max((kernel[0] - 1) * dilation[0] + 1, 2) + data.draw(st.integers(0, 14))
    width = max(kernel[1], 2) + data.draw(st.integers(0, 10))
    shape = (data.draw(st.integers(1, 2)), height, width, channels)
    chunks = (1, chunking(data.draw, height), chunking(data.draw, width), channels)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal(shape).astype(np.float32)
    dw = rng.standard_normal((channels, 1) + kernel).astype(np.float32)
    pw = rng.standard_normal((4, channels, 1, 1)).astype(np.float32)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, padding_mode=mode, layout="NHWC",
                  depthwise_activation="relu6")
    expected = numbaconv.separable_conv2d(x, dw, pw, **kwargs)
    banded = []
    original = nd._separable_in_bands
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(separable, "SEPARABLE_CHUNK_ELEMENTS", data.draw(st.integers(1, 40)))  # several bands
        patch.setattr(nd, "_separable_in_bands", lambda *a, **k: banded.append(1) or original(*a, **k))
        got = nd.separable_conv2d(da.from_array(x, chunks=chunks), dw, pw, **kwargs).compute(scheduler="sync")
    assert_close(got, expected, np.float32)
    assert banded  # the path under test ran


def test_channel_chunks_that_split_groups_are_rechunked_with_a_warning(rng):
    x = rng.standard_normal((1, 6, 8, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    with pytest.warns(UserWarning, match=r"channel chunks \(2, 4\): they split groups of 3 channels; "
                                         r"rechunked to \(3, 3\)"):
        lazy = nd.conv2d(da.from_array(x, chunks=(1, (2, 4), 8, 8)), w, groups=2, padding=1)
    assert lazy.chunks[1] == (2, 2)  # each chunk of one group gives that group's 2 output channels
    assert_close(lazy.compute(), numbaconv.conv2d(x, w, groups=2, padding=1), np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # whole groups: no warning, the chunks kept
        assert nd.conv2d(da.from_array(x, chunks=(1, 3, 8, 8)), w, groups=2).chunks[1] == (2, 2)


def test_the_weight_enters_the_graph_once(rng):
    x = rng.standard_normal((4, 3, 40, 40)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    lazy = nd.conv2d(da.from_array(x, chunks=(1, 3, 10, 10)), w, padding=1)
    graph = dict(lazy.__dask_graph__())

    def holds_w(value) -> bool:  # the weight's values anywhere in a task or literal
        if isinstance(value, np.ndarray):
            return value.shape == w.shape and np.array_equal(value, w)
        if isinstance(value, (tuple, list)):
            return any(holds_w(item) for item in value)
        return any(holds_w(item) for item in getattr(value, "args", ()))  # dask's task objects

    holding = [key for key, value in graph.items() if holds_w(value)]
    assert len(holding) == 1, holding  # one key, read by the 4 x 16 tasks
    assert lazy.numblocks == (4, 1, 4, 4)
    # output chunks follow the input's: the same for a stride-1 'same' convolution, halved for stride 2
    assert lazy.chunks[2] == lazy.chunks[3] == (10, 10, 10, 10)
    assert nd.conv2d(da.from_array(x, chunks=(1, 3, 10, 10)), w, stride=2, padding=1).chunks[2] == (5, 5, 5, 5)


def test_each_chunk_sends_its_halos_in_one_small_task(rng):
    """A chunk's pieces for its neighbours' windows are cut (copied) by one task per chunk, holding only the
    halo: with 3x3 taps an interior 10 x 10 chunk gives its 4 edges and 4 corners (44 pixels), never itself."""
    x = rng.standard_normal((1, 2, 40, 40)).astype(np.float32)
    w = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    lazy = nd.conv2d(da.from_array(x, chunks=(1, 2, 10, 10)), w, padding=1, groups=2)
    graph = dict(lazy.__dask_graph__())
    bundles = [key for key in graph if isinstance(key, tuple) and key[0].startswith("numbaconv-halos-")]
    assert len(bundles) == 16  # one per input chunk (every chunk has a neighbour)
    import dask

    sizes = [sum(piece.size for piece in dask.get(graph, key)) for key in bundles]
    assert max(sizes) == 2 * 44 and min(sizes) == 2 * (2 * 10 + 1)  # interior / corner chunks, 2 channels
    outputs = [value for key, value in graph.items() if isinstance(key, tuple) and key[0] == lazy.name]
    # an interior block reads 3 x 3 inputs: its own chunk whole, a bundle from each of its 8 neighbours
    assert len(outputs) == 16 and max(len(sum(task[1], [])) for task in outputs) == 9
    assert_close(lazy.compute(scheduler="sync"), numbaconv.conv2d(x, w, padding=1, groups=2), np.float32)


@pytest.mark.parametrize("chunk", [7, 20])
def test_windows_follow_the_outputs_not_a_huge_dilation_or_stride(rng, chunk):
    """A filter whose reach is mostly gaps (dilation and zero padding of a million; a stride of 5 over a 1x1
    or 2x2 filter) reads only the positions its taps touch: each task's window holds ``kernel`` rows per
    output row, never the raw reach (a 2-million-row window here)."""
    x = rng.standard_normal((1, 2, 20, 20)).astype(np.float32)
    seen = []
    original = nd._block

    def spy(window, *args, **kwargs):
        seen.append(window.shape)
        return original(window, *args, **kwargs)

    cases = [(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), dict(padding=10**6, dilation=10**6, groups=2)),
             (rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
              dict(padding=20, dilation=(1, 10), groups=2, padding_mode="circular")),
             (rng.standard_normal((3, 2, 1, 1)).astype(np.float32), dict(stride=5)),
             (rng.standard_normal((3, 2, 2, 2)).astype(np.float32), dict(stride=(5, 1), padding=1,
                                                                         padding_mode="reflect"))]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nd, "_block", spy)
        for w, kwargs in cases:
            seen.clear()
            expected = numbaconv.conv2d(x, w, **kwargs)
            lazy = nd.conv2d(da.from_array(x, chunks=(1, 2, chunk, chunk)), w, **kwargs)
            assert_close(lazy.compute(scheduler="sync"), expected, np.float32)
            limit = [3 * max(lazy.chunks[2]) * w.shape[2], 3 * max(lazy.chunks[3]) * w.shape[3]]
            assert seen and all(shape[2] <= limit[0] and shape[3] <= limit[1] for shape in seen), (kwargs, seen)


def test_a_thread_builds_its_windows_in_one_buffer_until_released(rng):
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    addresses = []
    original = nd._block

    def spy(window, *args, **kwargs):
        addresses.append(window.__array_interface__["data"][0])
        return original(window, *args, **kwargs)

    nd.release_buffers()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nd, "_block", spy)
        lazy = nd.conv2d(da.from_array(x, chunks=(1, 3, 6, 6)), w, groups=3, padding=1)
        assert_close(lazy.compute(scheduler="sync"), numbaconv.conv2d(x, w, groups=3, padding=1), np.float32)
        assert len(addresses) == 8 and len(set(addresses)) == 1  # one buffer for every window of this thread
        # a block that returned its window (none does) would still give its own array, not the next window
        patch.setattr(nd, "_block", lambda window, *args, **kwargs: window)
        same = nd.conv2d(da.from_array(x, chunks=(1, 3, 6, 6)), w[:, :, :1, :1], groups=3)
        np.testing.assert_array_equal(same.compute(scheduler="sync"), x)
    assert nd.release_buffers() >= 3 * 8 * 8 * 4  # the largest window: 3 channels x 8 x 8 float32
    assert nd.release_buffers() == 0


def test_bad_input_is_refused_before_any_graph(rng):
    x = da.zeros((1, 4, 8, 8), chunks=2)
    w = np.ones((4, 2, 3, 3))
    with pytest.raises(TypeError, match="dask.array.Array"):
        nd.conv2d(np.zeros((1, 4, 8, 8)), w, groups=2)
    with pytest.raises(ValueError, match="4-D"):
        nd.conv2d(da.zeros((4, 8, 8), chunks=2), w, groups=2)
    with pytest.raises(ValueError, match="groups"):
        nd.conv2d(x, w, groups=3)
    with pytest.raises(ValueError, match="threads_per_task"):
        nd.conv2d(x, w, groups=2, threads_per_task=0)
    with pytest.raises(ValueError, match="padding_mode"):
        nd.conv2d(x, w, groups=2, padding_mode="mirror")
    with pytest.raises(TypeError, match="same dtype"):
        nd.conv2d(x, w.astype(np.float32), groups=2)
    with pytest.raises(ValueError, match=r"\(C_out, C_in, 1, 1\)"):
        nd.pointwise_conv2d(x, np.ones((4, 4)))


def test_tasks_set_numba_threads_for_their_own_thread_only(rng):
    import numba

    seen = []
    original = nd._block

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        seen.append(kwargs["threads"])
        return result

    before = numba.get_num_threads()
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nd, "_block", spy)
        got = nd.conv2d(da.from_array(x, chunks=(1, 4, 5, 5)), w, groups=4, threads_per_task=1).compute(
            scheduler="threads")
    assert seen and set(seen) == {1}
    assert numba.get_num_threads() == before
    with nd._numba_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    assert_close(got, numbaconv.conv2d(x, w, groups=4), np.float32)


def test_a_local_cluster_of_two_processes(rng):
    distributed = pytest.importorskip("distributed")
    x = rng.standard_normal((3, 8, 30, 26)).astype(np.float32)
    dw = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    pw = rng.standard_normal((6, 8, 1, 1)).astype(np.float32)
    # compiled here first (into Numba's cache on disk): the two workers load the kernels instead of compiling them
    expected = numbaconv.separable_conv2d(x, dw, pw, padding=1, padding_mode="replicate")
    numbaconv.separable_conv2d(x[:, :, :8, :8], dw, pw)  # as each task calls it: on a padded window, padding 0
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        lazy = nd.separable_conv2d(da.from_array(x, chunks=(1, 8, 11, 13)), dw, pw, padding=1,
                                   padding_mode="replicate")
        got = client.compute(lazy).result()
    assert_close(got, expected, np.float32)


def test_the_demo_filters_a_raster_larger_than_each_workers_memory_limit():
    """numbaconv dask-demo's run: a 4096 x 4096 x 8 float32 raster (0.5 GiB in, 0.5 GiB out) through Zarr on two
    worker processes of 600 MiB each; every worker's peak stays under its limit and the output's corner tile
    equals the in-memory call."""
    pytest.importorskip("zarr")
    from numbaconv import dask_demo

    lines: list[str] = []
    result = dask_demo.run(size=4096, channels=8, filters=8, chunk=512, workers=2, memory_limit="600MiB",
                           progress=False, echo=lines.append)
    assert result["in_bytes"] + result["out_bytes"] > 1.5 * result["memory_limit_bytes"]
    assert len(result["peak_rss_bytes"]) == 2
    assert max(result["peak_rss_bytes"]) < result["memory_limit_bytes"], (result, lines)
    assert result["spilled_bytes"] < result["in_bytes"] / 4, (result, lines)  # streamed, not spilled (0 here)
    assert result["corner_error"] <= 1e-5
    assert any("Mpixel/s" in line for line in lines) and any("peak memory per worker" in line for line in lines)


def test_the_demo_command_checks_its_arguments(capsys):
    from numbaconv import cli

    assert cli.main(["dask-demo", "--size", "4", "--no-progress"]) == 2
    assert "size, chunk >= 8" in capsys.readouterr().err
