"""A packed, cache-blocked GEMM with the convolution's epilogue: ``C = activate(A @ B + bias)``.

The explicit kernel behind ``pointwise_gemm``: NCHW pointwise is ``out[n] (C_out x P) = W (C_out x C_in)
@ X[n] (C_in x P)`` per image, NHWC pointwise ``out (N*P x C_out) = X (N*P x C_in) @ W^T (C_in x C_out)``:
one kernel, A and B read through arbitrary strides (so W^T needs no transposed copy).

Blocking (GotoBLAS / BLIS style).  The smaller operand (`share_a`: the weights, or for 7x7 layers the
pixels) is packed once for all tasks (`pack_shared`: k-major panels, zero-padded at the edge); then per
parallel task = (batch item, block of at most GEMM_BLOCK_ROWS rows x GEMM_BLOCK_COLUMNS columns of C):

    for each K block of GEMM_DEPTH:
        pack this block of the other operand          # B's columns or A's rows, unless read in place
        for each A panel:                             # the panel (TILE_ROWS x GEMM_DEPTH) stays in L1
            for each B panel:                         # streamed from L2
                simd.tile(...)                        # TILE_ROWS x (TILE_VECTORS x 16) accumulators in registers;
                                                      # the last K block adds the bias and activates as it stores

The K blocks' partial sums are added into C, so a long reduction is summed in blocks of GEMM_DEPTH
(the error of a GEMM_DEPTH-term dot product per block, like BLAS).  Tasks own their block of C: no
two threads write one place.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..config import FASTMATH, GEMM_BLOCK_COLUMNS, GEMM_BLOCK_ROWS, GEMM_DEPTH, GEMM_TILE_ROWS, GEMM_TILE_VECTORS
from .epilogue import activate
from .simd import VECTOR_BYTES, tile, transpose_block
from .twins import Twins

_U = np.uint64


def tile_columns(dtype) -> int:
    """Columns of one register tile: GEMM_TILE_VECTORS vectors of 64 bytes."""
    return GEMM_TILE_VECTORS * VECTOR_BYTES // np.dtype(dtype).itemsize


@njit(inline="always", cache=True)
def _pack_rows(a, a_row, a_k, first_row, rows, k0, kc, panels, out, out_offset, out_depth):
    """A's rows [first_row, first_row + rows), columns [k0, k0 + kc) as panels of TILE_ROWS rows:
    out[out_offset + (p*out_depth + k)*TILE_ROWS + r] = a[(first_row + p*TILE_ROWS + r)*a_row + (k0 + k)*a_k],
    zero past the last row.  (``a`` already offset to the batch item.)  Rows contiguous in k (the weights
    of an NCHW layer) are transposed a vector's lanes square at a time (`simd.transpose_block`)."""
    lanes = VECTOR_BYTES // a.itemsize
    for p in range(panels):
        valid = min(GEMM_TILE_ROWS, rows - p * GEMM_TILE_ROWS)
        base = out_offset + p * out_depth * GEMM_TILE_ROWS
        source = (first_row + p * GEMM_TILE_ROWS) * a_row + k0 * a_k
        if a_k == 1:
            for k in range(0, kc, lanes):
                for r in range(0, GEMM_TILE_ROWS, lanes):
                    transpose_block(a, source + r * a_row + k, a_row, max(0, min(lanes, valid - r)),
                                    min(lanes, kc - k), out, base + k * GEMM_TILE_ROWS + r, GEMM_TILE_ROWS,
                                    min(lanes, GEMM_TILE_ROWS - r))
            continue
        for k in range(kc):  # contiguous writes; the reads walk TILE_ROWS rows of A in step
            target = base + k * GEMM_TILE_ROWS
            column = source + k * a_k
            for r in range(valid):
                out[_U(target + r)] = a[_U(column + r * a_row)]
            for r in range(valid, GEMM_TILE_ROWS):
                out[_U(target + r)] = 0


@njit(inline="always", cache=True)
def _pack_columns(b, b_k, b_column, first_column, columns, k0, kc, panels, width, out, out_offset, out_depth):
    """B's rows [k0, k0 + kc), columns [first_column, first_column + columns) as panels of ``width`` columns:
    out[out_offset + (q*out_depth + k)*width + l] = b[(k0 + k)*b_k + (first_column + q*width + l)*b_column],
    zero past the last column."""
    lanes = VECTOR_BYTES // b.itemsize
    for q in range(panels):
        valid = min(width, columns - q * width)
        if b_k == 1 and b_column != 1:  # B's columns contiguous in k (W^T of an NHWC layer): transposed in squares
            source = k0 + (first_column + q * width) * b_column
            target = out_offset + q * out_depth * width
            for k in range(0, kc, lanes):
                for l in range(0, width, lanes):
                    transpose_block(b, source + l * b_column + k, b_column, max(0, min(lanes, valid - l)),
                                    min(lanes, kc - k), out, target + k * width + l, width, lanes)
            continue
        for k in range(kc):
            target = out_offset + (q * out_depth + k) * width
            source = (k0 + k) * b_k + (first_column + q * width) * b_column
            if b_column == 1:
                for l in range(valid):
                    out[_U(target + l)] = b[_U(source + l)]
            else:
                for l in range(valid):
                    out[_U(target + l)] = b[_U(source + l * b_column)]
            for l in range(valid, width):
                out[_U(target + l)] = 0


def _pack_shared(operand, stride_outer, stride_k, extent, depth, is_a, width, out):
    """The whole shared operand (the one all tasks read: the weights) packed once, in parallel over panels:
    A as row panels over the full depth, or B as column panels."""
    size = GEMM_TILE_ROWS if is_a else width
    panels = (extent + size - 1) // size
    for p in prange(panels):
        if is_a:
            _pack_rows(operand, stride_outer, stride_k, p * size, min(size, extent - p * size), 0, depth, 1, out,
                       p * depth * size, depth)
        else:
            _pack_columns(operand, stride_k, stride_outer, p * size, min(size, extent - p * size), 0, depth, 1,
                          width, out, p * depth * size, depth)


pack_shared = Twins(_pack_shared)


def _gemm(a, a_batch, a_row, a_k, b, b_batch, b_k, b_column, c, c_batch, c_row, batch, rows, columns, depth,
          shared, shared_is_a, pack_own, bias, bias_per_row, act, block_rows, block_columns):
    """c[n*c_batch + i*c_row + j] = activate(sum_k A[n, i, k] * B[n, k, j] + bias[i or j]) for n < batch,
    i < rows, j < columns, k < depth, where A[n, i, k] = a[n*a_batch + i*a_row + k*a_k] and
    B[n, k, j] = b[n*b_batch + k*b_k + j*b_column] (a, b, c flat; any strides but C's unit column stride).

    ``shared`` is one operand (A if ``shared_is_a``, else B) packed once by `pack_shared` (it must be the
    same for every batch item: the weights); each task packs its block of the other operand per K block
    where ``pack_own``, else reads it in place (`reads_in_place`).
    ``block_rows`` is a multiple of GEMM_TILE_ROWS, ``block_columns`` of the tile's columns."""
    width = GEMM_TILE_VECTORS * (VECTOR_BYTES // c.itemsize)  # columns of a register tile
    row_blocks = (rows + block_rows - 1) // block_rows
    column_blocks = (columns + block_columns - 1) // block_columns
    for task in prange(batch * row_blocks * column_blocks):
        column_block = task % column_blocks
        rest = task // column_blocks
        row_block = rest % row_blocks
        n = rest // row_blocks
        i0 = row_block * block_rows
        j0 = column_block * block_columns
        block_height = min(block_rows, rows - i0)
        block_width = min(block_columns, columns - j0)
        a_panels = (block_height + GEMM_TILE_ROWS - 1) // GEMM_TILE_ROWS
        b_panels = (block_width + width - 1) // width
        own = np.empty(((b_panels * width if shared_is_a else a_panels * GEMM_TILE_ROWS) if pack_own else 0)
                       * GEMM_DEPTH, dtype=c.dtype)
        c_block = n * c_batch + i0 * c_row + j0
        for k0 in range(0, max(depth, 1), GEMM_DEPTH):  # an empty reduction: one pass of kc = 0 (the epilogue of 0)
            kc = min(GEMM_DEPTH, depth - k0)
            # where tile p's A (q's B) starts and how it is strided: a shared or own packed panel, or in place
            if shared_is_a:  # A's panels from the shared packing; this task's columns of B packed k-major, or B
                a_source = shared
                a_first, a_panel, a_r, a_kk = ((i0 // GEMM_TILE_ROWS) * depth + k0) * GEMM_TILE_ROWS, \
                    depth * GEMM_TILE_ROWS, 1, GEMM_TILE_ROWS
                if pack_own:
                    _pack_columns(b[n * b_batch:], b_k, b_column, j0, block_width, k0, kc, b_panels, width, own, 0,
                                  kc)
                    b_source, b_first, b_panel, b_kk = own, 0, kc * width, width
                else:
                    b_source, b_first, b_panel, b_kk = b, n * b_batch + k0 * b_k + j0, width, b_k
            else:
                if pack_own:
                    _pack_rows(a[n * a_batch:], a_row, a_k, i0, block_height, k0, kc, a_panels, own, 0, kc)
                    a_source = own
                    a_first, a_panel, a_r, a_kk = 0, kc * GEMM_TILE_ROWS, 1, GEMM_TILE_ROWS
                else:
                    a_source = a
                    a_first, a_panel, a_r, a_kk = n * a_batch + i0 * a_row + k0 * a_k, GEMM_TILE_ROWS * a_row, a_row, a_k
                b_source, b_first, b_panel, b_kk = shared, ((j0 // width) * depth + k0) * width, depth * width, width
            # the A panel (TILE_ROWS x kc) stays in L1 while the B panels stream through from L2; the last K
            # block's tiles add the bias and activate as they store (the epilogue fused, in registers)
            final = k0 + GEMM_DEPTH >= depth
            for p in range(a_panels):
                for q in range(b_panels):
                    tile(a_source, a_first + p * a_panel, a_r, a_kk, b_source, b_first + q * b_panel, b_kk,
                         c, c_block + p * GEMM_TILE_ROWS * c_row + q * width, c_row, kc,
                         block_height - p * GEMM_TILE_ROWS, block_width - q * width, k0 > 0, final,
                         bias, (i0 + p * GEMM_TILE_ROWS) if bias_per_row else (j0 + q * width), bias_per_row, act,
                         GEMM_TILE_ROWS, GEMM_TILE_VECTORS)


gemm = Twins(_gemm, fastmath=FASTMATH)


def _gemv(w, x, out, bias, act, zero):
    """out[n, i] = activate(sum_k w[i, k] * x[n, k] + bias[i]): a 1x1 convolution of images one pixel large
    (squeeze-and-excitation layers), where a GEMM tile would be 1/12 full and packing W costs more than reading
    it once.  Each output a dot product along W's contiguous rows; the sum is reassociated into SIMD lanes
    (fastmath 'reassoc': another order, within the same error bound)."""
    rows, depth = w.shape
    for task in prange(x.shape[0] * rows):
        n = task // rows
        i = task % rows
        acc = zero
        for k in range(depth):
            acc += w[i, k] * x[n, k]
        out[n, i] = activate(acc + bias[i], act)


gemv = Twins(_gemv, fastmath={"contract", "reassoc"})


def blocks(batch: int, rows: int, columns: int, dtype, threads: int, columns_first: bool) -> tuple[int, int]:
    """``(block_rows, block_columns)`` of C per task: at most GEMM_BLOCK_ROWS x GEMM_BLOCK_COLUMNS, cut into
    equal parts until there are 4 tasks per thread where the problem has that many tiles -- columns first
    where ``columns_first`` (`share_a`: A, rows x depth, is the smaller operand), else rows.  With R row
    parts and C column parts the tasks read A C times and B R times (A's rows and B's columns are split,
    the other is read whole by each task), so cutting the larger operand's dimension first reads least;
    packing per task follows the same count."""
    width = tile_columns(dtype)
    batch = max(batch, 1)  # an empty batch: one task's blocks (else the loop below ran once per tile)
    row_tiles, column_tiles = max(1, -(-rows // GEMM_TILE_ROWS)), max(1, -(-columns // width))  # empty: one
    row_parts = -(-row_tiles * GEMM_TILE_ROWS // GEMM_BLOCK_ROWS)
    column_parts = -(-column_tiles * width // GEMM_BLOCK_COLUMNS)
    while batch * row_parts * column_parts < 4 * threads and (row_parts < row_tiles or column_parts < column_tiles):
        grow_columns = column_parts < column_tiles and (columns_first or row_parts == row_tiles)
        if grow_columns:
            column_parts += 1
        else:
            row_parts += 1
    return -(-row_tiles // row_parts) * GEMM_TILE_ROWS, -(-column_tiles // column_parts) * width


def share_a(rows: int, columns: int) -> bool:
    """Pack A once for all tasks (and B per task) when A is the smaller operand: the weights of a layer with
    many pixels.  Else B is shared: a layer whose weights outweigh its pixels (7x7) reads them once."""
    return rows <= columns  # A is rows x depth, B depth x columns


def shared_size(extent: int, depth: int, is_a: bool, dtype) -> int:
    """Elements of `pack_shared`'s output for an operand of ``extent`` rows (A) or columns (B)."""
    size = GEMM_TILE_ROWS if is_a else tile_columns(dtype)
    return -(-extent // size) * size * max(depth, 1)


def matmul(a, a_batch, a_row, a_k, b, b_batch, b_k, b_column, c, c_batch, c_row, batch, rows, columns, depth, bias,
           bias_per_row, act, threads, shared=None, shared_is_a=None):
    """`_gemm` on flat arrays (see there for the strides), choosing the shared operand (`share_a`), packing it,
    and the task blocks.  The shared operand must be the same for every batch item; where it is not, each
    item is its own call.  ``shared`` (with ``shared_is_a``): that operand already packed (`pack`), e.g.
    weights kept by `packcache`."""
    if batch == 0 or rows == 0 or columns == 0:
        return
    a_smaller = share_a(rows, columns)
    if shared is None:  # the smaller operand; over a batch, the one all items share (the weights), if one is
        shared_is_a = a_smaller if batch == 1 or (a_batch == 0) == (b_batch == 0) else a_batch == 0
    if batch > 1 and (b_batch if not shared_is_a else a_batch) != 0:  # the shared operand differs per item
        for n in range(batch):
            matmul(a[n * a_batch:], 0, a_row, a_k, b[n * b_batch:], 0, b_k, b_column, c[n * c_batch:], 0, c_row, 1,
                   rows, columns, depth, bias, bias_per_row, act, threads, shared, shared_is_a)
        return
    if shared is None:
        shared = pack(a, a_row, a_k, rows, depth, True, c.dtype) if shared_is_a else \
            pack(b, b_column, b_k, columns, depth, False, c.dtype)
    block_rows, block_columns = blocks(batch, rows, columns, c.dtype, threads, a_smaller)
    pack_own = not (reads_in_place(b_column, b_k, c.dtype) if shared_is_a else reads_in_place(a_k, a_row, c.dtype))
    gemm(batch * rows * columns * max(depth, 1), a, a_batch, a_row, a_k, b, b_batch, b_k, b_column, c, c_batch, c_row,
         batch, rows, columns, depth, shared, shared_is_a, pack_own, bias, bias_per_row, act, block_rows,
         block_columns)


def pack(operand, stride_outer, stride_k, extent, depth, is_a, dtype):
    """`pack_shared`'s panels of ``operand`` (flat): A (``is_a``: ``extent`` rows ``stride_outer`` apart) or
    B (``extent`` columns), ``depth`` deep along ``stride_k``."""
    out = np.empty(shared_size(extent, depth, is_a, dtype), dtype)
    pack_shared(extent * depth, operand, stride_outer, stride_k, extent, depth, is_a, tile_columns(dtype), out)
    return out


def reads_in_place(unit_stride: int, line_stride: int, dtype) -> bool:
    """Whether tasks read their operand in place rather than packing it: A's rows contiguous in k
    (``unit_stride`` a_k = 1, rows ``line_stride`` a_row apart), or B's rows contiguous in j (b_column = 1,
    b_k apart) -- unless those lines are a multiple of 4 KiB apart (the tile's streams would then share L1
    sets and evict each other)."""
    return unit_stride == 1 and (line_stride * np.dtype(dtype).itemsize) % 4096 != 0


def workspace(batch: int, rows: int, columns: int, depth: int, dtype, threads: int) -> int:
    """Bytes of `matmul`'s temporaries: the shared operand's packing and each running task's panels."""
    itemsize = np.dtype(dtype).itemsize
    shared_is_a = share_a(rows, columns)
    shared = shared_size(rows if shared_is_a else columns, depth, shared_is_a, dtype)
    block_rows, block_columns = blocks(batch, rows, columns, dtype, threads, shared_is_a)
    own = (block_columns if shared_is_a else block_rows) * GEMM_DEPTH
    return (shared + threads * own) * itemsize
