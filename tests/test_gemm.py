"""numbaconv's own GEMM (cpu/gemm.py over the register tile of cpu/simd.py) as a matrix product: every edge of
the blocking (partial tiles in both directions, K blocks, empty sizes), both operand placements (A shared
and packed once, or B shared with A read in place or packed), strided operands, both dtypes, the fused
epilogue, and the precision of long reductions against BLAS.  (As a convolution it is the registered
`pointwise_gemm` kernel, which test_kernels.py runs over its grid and hypothesis problems.)"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numbaconv import limits, reference
from numbaconv.config import GEMM_DEPTH, GEMM_TILE_ROWS
from numbaconv.cpu import gemm
from numbaconv.spec import ACTIVATIONS


def product(a, b, bias, bias_per_row, act, batch_a=False, threads=2):
    """matmul on C-contiguous operands: a (M, K) or (N, M, K), b (N, K, J) -> (N, M, J)."""
    batch, depth, columns = b.shape
    rows = a.shape[-2]
    c = np.empty((batch, rows, columns), b.dtype)
    gemm.matmul(a.reshape(-1), rows * depth if batch_a else 0, depth, 1, b.reshape(-1), depth * columns, columns, 1,
                c.reshape(-1), rows * columns, columns, batch, rows, columns, depth, bias, bias_per_row, act, threads)
    return c


def expected(a, b, bias, bias_per_row, act):
    exact = np.matmul(a.astype(np.float64), b.astype(np.float64))
    exact += bias[:, None] if bias_per_row else bias[None, :]
    return reference.ACTIVATION_FUNCTIONS[ACTIVATIONS[act]](exact)


def bound(a, b, dtype):
    """|error| <= 2 (K + 2) eps (|A| |B| + |bias|): the documented bound (tests/conftest.py)."""
    depth = a.shape[-1]
    magnitude = np.matmul(np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64))) + 1
    return 2 * (depth + 2) * np.finfo(dtype).eps / 2 * magnitude


@given(rows=st.integers(1, 40), columns=st.integers(1, 80), depth=st.integers(0, 2 * GEMM_DEPTH + 5),
       batch=st.integers(1, 3), dtype=st.sampled_from([np.float32, np.float64]), bias_per_row=st.booleans(),
       act=st.integers(0, 4), threads=st.sampled_from([1, 2, 7]), seed=st.integers(0, 2**16))
def test_matmul_matches_float64(rows, columns, depth, batch, dtype, bias_per_row, act, threads, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, depth)).astype(dtype)
    b = rng.standard_normal((batch, depth, columns)).astype(dtype)
    bias = rng.standard_normal(rows if bias_per_row else columns).astype(dtype)
    got = product(a, b, bias, bias_per_row, act, threads=threads)
    wanted = expected(a, b, bias, bias_per_row, act)
    assert got.dtype == dtype
    assert (np.abs(got - wanted) <= bound(a, b, dtype)).all()


@pytest.mark.parametrize("rows, columns, depth", [
    (GEMM_TILE_ROWS, 32, GEMM_DEPTH),  # exactly one tile and one K block
    (GEMM_TILE_ROWS + 1, 33, GEMM_DEPTH + 1),  # one more of each: partial tiles, a K block of one
    (500, 3, 40),  # tall and thin: B shared, A read in place
    (3, 700, 40),  # short and wide: A shared
    (256, 256, 1024),  # rows 4 KiB apart: A packed even where it could be read in place
    (1, 1, 1),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocking_edges(rows, columns, depth, dtype):
    rng = np.random.default_rng(rows * columns + depth)
    a = rng.standard_normal((rows, depth)).astype(dtype)
    b = rng.standard_normal((2, depth, columns)).astype(dtype)
    bias = rng.standard_normal(columns).astype(dtype)
    got = product(a, b, bias, False, 1)
    assert (np.abs(got - expected(a, b, bias, False, 1)) <= bound(a, b, dtype)).all()


def test_strided_operands_and_output():
    """A read through (row, k) strides (a transposed view's memory), B with a column stride, C rows apart."""
    rng = np.random.default_rng(7)
    rows, columns, depth = 30, 50, 70
    a_t = rng.standard_normal((depth, rows)).astype(np.float32)  # A = a_t.T: a_row = 1, a_k = rows
    b_t = rng.standard_normal((columns, depth)).astype(np.float32)  # B = b_t.T: b_k = 1, b_column = depth
    c = np.full((rows, columns + 9), np.nan, np.float32)  # C rows columns + 9 apart; the gap untouched
    bias = np.zeros(columns, np.float32)
    gemm.matmul(a_t.reshape(-1), 0, 1, rows, b_t.reshape(-1), 0, 1, depth, c.reshape(-1), 0, columns + 9, 1, rows,
                columns, depth, bias, False, 0, 2)
    exact = a_t.T.astype(np.float64) @ b_t.T.astype(np.float64)
    assert np.allclose(c[:, :columns], exact, rtol=1e-5, atol=1e-4)
    assert np.isnan(c[:, columns:]).all()


def test_long_reductions_keep_blas_precision():
    """K = 18432 (a ResNet-style 2048-channel 3x3 im2col): summed in K blocks, the error stays near BLAS's
    (the first explicit kernel summed one chain and was 10-20x worse)."""
    rng = np.random.default_rng(11)
    depth = 18432
    a = rng.standard_normal((24, depth)).astype(np.float32)
    b = rng.standard_normal((1, depth, 64)).astype(np.float32)
    zero = np.zeros(64, np.float32)
    exact = np.matmul(a.astype(np.float64), b.astype(np.float64))
    ours = np.abs(product(a, b, zero, False, 0) - exact).mean()
    blas = np.abs(np.matmul(a, b) - exact).mean()
    assert ours <= 3 * blas, (ours, blas)


def test_nan_and_inf_propagate():
    a = np.ones((13, 5), np.float32)
    a[3, 2] = np.nan
    a[7, 0] = np.inf
    b = np.ones((1, 5, 33), np.float32)
    got = product(a, b, np.zeros(13, np.float32), True, 2)  # relu6 keeps NaN, clips +inf to 6
    assert np.isnan(got[0, 3]).all() and (got[0, 7] == 6).all() and (got[0, 0] == 5).all()


def test_the_fma_roof_is_measured_per_dtype():
    single, double = limits.fma_flops_per_s("float32", seconds=0.01, repeat=1), \
        limits.fma_flops_per_s("float64", seconds=0.01, repeat=1)
    assert single > 0 and double > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias_per_row", [True, False])
@pytest.mark.parametrize("act", range(len(ACTIVATIONS)))
def test_fused_epilogue_on_special_values(act, bias_per_row, dtype):
    """The tile's vector epilogue against the reference activation, value by value: NaN, infinities,
    signed zeros and each activation's kinks (-3, 0, 3, 6)."""
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -3.0, 3.0, 6.0, 6.5, -7.25, 1e30, -1e30, 0.5, -0.5],
                        dtype)
    rows = len(specials)
    a = specials[:, None] if bias_per_row else np.ones((rows, 1), dtype)
    b = np.ones((1, 1, 40), dtype) if bias_per_row else np.tile(specials, 3)[None, None, :40].copy()
    bias = np.zeros(rows if bias_per_row else 40, dtype)
    got = product(a, b, bias, bias_per_row, act)[0]
    wanted = reference.ACTIVATION_FUNCTIONS[ACTIVATIONS[act]](np.matmul(a, b[0]).astype(np.float64)).astype(dtype)
    np.testing.assert_allclose(got, wanted, rtol=4 * np.finfo(dtype).eps, atol=0, equal_nan=True)


@given(rows=st.integers(1, 70), columns=st.integers(1, 90), depth=st.integers(0, GEMM_DEPTH + 40),
       a_transposed=st.booleans(), b_transposed=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_every_operand_layout(rows, columns, depth, a_transposed, b_transposed, dtype, seed):
    """A and B each row-major or transposed (k contiguous: the packings' transposing paths, square blocks with
    ragged edges), whichever operand is shared, against float64."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, depth)).astype(dtype)
    b = rng.standard_normal((depth, columns)).astype(dtype)
    a_memory = np.ascontiguousarray(a.T) if a_transposed else a
    b_memory = np.ascontiguousarray(b.T) if b_transposed else b
    a_row, a_k = (1, rows) if a_transposed else (depth, 1)
    b_k, b_column = (1, depth) if b_transposed else (columns, 1)
    c = np.empty((rows, columns), dtype)
    bias = rng.standard_normal(columns).astype(dtype)
    gemm.matmul(a_memory.reshape(-1), 0, a_row, a_k, b_memory.reshape(-1), 0, b_k, b_column, c.reshape(-1), 0,
                columns, 1, rows, columns, depth, bias, False, 0, 2)
    assert (np.abs(c - expected(a, b, bias, False, 0)) <= bound(a, b, dtype)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transpose_block_reads_and_writes_only_its_square(dtype):
    """simd.transpose_block: rows past ``rows`` give zeros, columns past ``columns`` are neither read nor
    written, lanes past ``stored`` are left alone, everything outside the block untouched."""
    from numba import njit

    from numbaconv.cpu.simd import VECTOR_BYTES, transpose_block

    @njit
    def run(source, rows, columns, target, stored):
        transpose_block(source, 7, 40, rows, columns, target, 11, 33, stored)

    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    for rows in (lanes, 3, 1, 0):
        for columns in (lanes, 5, 0):
            for stored in (lanes, lanes - 3):
                source = np.random.default_rng(rows + columns).random(1600).astype(dtype)
                target = np.full(1600, -1, dtype)
                run(source, rows, columns, target, stored)
                wanted = np.full(1600, -1, dtype)
                for j in range(columns):
                    for i in range(stored):
                        wanted[11 + j * 33 + i] = source[7 + i * 40 + j] if i < rows else 0
                assert np.array_equal(target, wanted), (rows, columns, stored)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("depth", [0, 1, 5, 63, 64, 200])
def test_one_image_of_one_pixel_runs_the_matrix_vector_kernel_at_any_depth(depth, layout):
    """A squeeze-and-excitation call (batch 1, 1x1 image) goes to gemm.gemv whatever C_in (short reductions
    included), serially below GEMV_PARALLEL_MIN_WORK; every activation, NaN kept."""
    import numbaconv

    rng = np.random.default_rng(depth)
    for act in ACTIVATIONS:
        x = rng.standard_normal((1, depth, 1, 1)).astype(np.float32)
        if depth:
            x[0, 0, 0, 0] = np.nan
        w = rng.standard_normal((7, depth, 1, 1)).astype(np.float32)
        b = rng.standard_normal(7).astype(np.float32)
        given = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        got = numbaconv.conv2d(given, w, b, activation=act, layout=layout).reshape(1, 7)
        wanted = reference.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                  activation=act).reshape(1, 7)
        np.testing.assert_allclose(got, wanted, rtol=1e-5, atol=1e-5 * (depth + 1), equal_nan=True)


def test_an_empty_batch_plans_like_one_item():
    """An empty batch gets one item's task blocks: the block search ran once per tile of a huge empty problem
    (numbaconv.plan of a batch-0 layer with 10^7 pixels spent seconds in it; the fuzz test found it)."""
    for rows, columns in [(64, 10 ** 7), (10 ** 6, 96), (5, 7)]:
        for dtype in (np.float32, np.float64):
            assert gemm.blocks(0, rows, columns, dtype, 2, rows <= columns) == \
                gemm.blocks(1, rows, columns, dtype, 2, rows <= columns)
