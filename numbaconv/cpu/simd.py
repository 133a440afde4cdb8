"""A GEMM register tile written as LLVM vector code: the one place numbaconv leaves plain loops.

Numba has no SIMD types, and LLVM does not keep a large accumulator tile in registers when it is
written as loops over a small array (the tile is spilled and reloaded at every multiply-add), nor
does it pick 512-bit vectors on CPUs it tunes for 256 ("prefer-256-bit", most Intel server parts).
`tile` is a Numba intrinsic that emits the micro-kernel directly: ``rows x vectors`` accumulators of
one 64-byte vector each (16 float32 / 8 float64 lanes) held in registers across the whole reduction,

    for k in range(kc):
        b[v]  = load packed_b[k, v*L : (v+1)*L]                 # `vectors` unit-stride vector loads
        for r in range(rows):
            a = broadcast packed_a[k, r]                         # one scalar, splat to all lanes
            acc[r][v] = fma(a, b[v], acc[r][v])                 # rows x vectors FMAs per k

then stored (added to what is there for the second and later K blocks) with lane masks, so a tile at
the matrix's right edge neither reads nor writes past its last column, and rows past ``row_count`` are
skipped.  With 12 rows x 2 vectors, 24 accumulators + 2 B vectors + 1 broadcast fill 27 of AVX-512's
32 vector registers; each k step is 2 loads + 12 broadcasts for 24 FMAs.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

VECTOR_BYTES = 64  # AVX-512; on narrower machines LLVM splits the vectors (correct, just not faster)


def _splat(builder, value, vector_type):
    """``value`` in every lane of a vector of ``vector_type``."""
    lanes = vector_type.count
    undef = ir.Constant(vector_type, ir.Undefined)
    single = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(single, undef, ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _activate(builder, module, value, code, vector):
    """``epilogue.activate`` on a vector, for a compile-time activation ``code`` (0 none, 1 relu, 2 relu6,
    3 silu, 4 hardswish), with the same operations in the same order and NaN falling through as there."""
    def constant(x):
        return ir.Constant(vector, [x] * vector.count)

    zero = constant(0.0)
    if code == 1:
        return builder.select(builder.fcmp_ordered("<", value, zero), zero, value)
    if code == 2:
        six = constant(6.0)
        capped = builder.select(builder.fcmp_ordered(">", value, six), six, value)
        return builder.select(builder.fcmp_ordered("<", value, zero), zero, capped)
    if code == 3:  # value * (1 / (1 + exp(-value)))
        exp = cgutils.get_or_insert_function(module, ir.FunctionType(vector, [vector]),
                                             f"llvm.exp.v{vector.count}{_suffix(vector)}")
        sigmoid = builder.fdiv(constant(1.0), builder.fadd(constant(1.0), builder.call(exp, [builder.fneg(value)])))
        return builder.fmul(value, sigmoid)
    if code == 4:  # gate = value + 3: value * 0 below 0, value above 6, else value * gate / 6
        gate = builder.fadd(value, constant(3.0))
        middle = builder.fdiv(builder.fmul(value, gate), constant(6.0))
        upper = builder.select(builder.fcmp_ordered(">", gate, constant(6.0)), value, middle)
        return builder.select(builder.fcmp_ordered("<", gate, zero), builder.fmul(value, zero), upper)
    return value


def _suffix(vector):
    return "f32" if isinstance(vector.element, ir.FloatType) else "f64"


def _fma(builder, vector):
    """LLVM's fused multiply-add on ``vector`` (one instruction, one rounding)."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                          f"llvm.fma.v{vector.count}{_suffix(vector)}")


def _vectors(context, builder, dtype):
    """The LLVM types and masked-memory intrinsics of one 64-byte vector of ``dtype`` (a Numba scalar type):
    ``(scalar, lanes, vector, pointer to vector, mask type, masked_load, masked_store)``."""
    scalar = context.get_data_type(dtype)
    lanes = VECTOR_BYTES // context.get_abi_sizeof(scalar)
    vector = ir.VectorType(scalar, lanes)
    pointer = vector.as_pointer()
    i32 = ir.IntType(32)
    mask_type = ir.VectorType(ir.IntType(1), lanes)
    name = f"v{lanes}{_suffix(vector)}"
    masked_load = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector, [pointer, i32, mask_type, vector]), f"llvm.masked.load.{name}.p0")
    masked_store = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [vector, pointer, i32, mask_type]),
        f"llvm.masked.store.{name}.p0")
    return scalar, lanes, vector, pointer, mask_type, masked_load, masked_store


ACTIVATION_COUNT = 5  # the codes `_activate` knows


@intrinsic
def tile(typingctx, a, a_offset, a_row, a_k, b, b_offset, b_k, c, c_offset, c_row, kc, row_count, columns,
         accumulate, final, bias, bias_offset, bias_per_row, act, rows, vectors):
    """c[c_offset + r*c_row + j] (+)= sum_k a[a_offset + r*a_row + k*a_k] * b[b_offset + k*b_k + j]

    for r < min(rows, row_count), j < min(columns, N), k < kc, where N = vectors x lanes; ``rows`` and
    ``vectors`` are compile-time constants (integer literals).  A is read through strides (a packed panel:
    a_row = 1, a_k = rows; or the matrix itself: rows past ``row_count`` read the last valid row instead);
    B's rows of N are contiguous, ``b_k`` apart (a packed panel: b_k = N; or the matrix itself), read with
    the lanes past ``columns`` masked off.
    ``accumulate`` adds to c (K blocks after the first), else c is overwritten.  Where ``final`` (the last
    K block), the convolution's epilogue is applied to the sum before it is stored:
    ``activate(sum + bias[bias_offset + (r if bias_per_row else j)], act)``, as `epilogue.activate`."""
    if not (isinstance(rows, types.IntegerLiteral) and isinstance(vectors, types.IntegerLiteral)):
        return None
    n_rows, n_vectors = rows.literal_value, vectors.literal_value
    signature = types.void(a, a_offset, a_row, a_k, b, b_offset, b_k, c, c_offset, c_row, kc, row_count, columns,
                           accumulate, final, bias, bias_offset, bias_per_row, act, rows, vectors)

    def codegen(context, builder, sig, args):
        (a_array, a_offset, a_row, a_k, b_array, b_offset, b_k, c_array, c_offset, c_row, kc, row_count, columns,
         accumulate, final, bias_array, bias_offset, bias_per_row, act, _, _) = args
        a_data, b_data, c_data, bias_data = (context.make_array(sig.args[i])(context, builder, args[i]).data
                                             for i in (0, 4, 7, 15))
        i64, lanes, vector, acc, masks, multiply_add, load_b = _accumulators(context, builder, sig.args[0].dtype,
                                                                             n_rows, n_vectors, columns, b_data)
        # row r's offset in A, hoisted out of the k loop; rows past row_count read the last valid row (in bounds
        # of A read in place; their results are never stored)
        last = builder.sub(row_count, ir.Constant(i64, 1))
        a_rows = [builder.mul(builder.select(builder.icmp_signed("<", ir.Constant(i64, r), row_count),
                                             ir.Constant(i64, r), last), a_row) for r in range(n_rows)]
        with cgutils.for_range(builder, kc) as loop:
            k = loop.index
            a_column = builder.add(a_offset, builder.mul(k, a_k))
            b_row = builder.add(b_offset, builder.mul(k, b_k))
            multiply_add(load_b(b_row), [builder.gep(a_data, [builder.add(a_column, a_rows[r])])
                                         for r in range(n_rows)])

        rows_at = [(builder.icmp_signed("<", ir.Constant(i64, r), row_count),
                    builder.add(c_offset, builder.mul(ir.Constant(i64, r), c_row))) for r in range(n_rows)]
        _store(context, builder, sig.args[7].dtype, acc, rows_at, masks, c_data, bias_data, bias_offset,
               bias_per_row, act, final, accumulate, True)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def conv_tile(typingctx, a, a_offset, a_row, taps, b, b_offset, b_k, c, c_offset, c_row, kc, row_count, columns,
              ow_first, virtual_width, out_width, accumulate, final, bias, bias_offset, act, rows, vectors):
    """The register tile of an implicit-GEMM convolution (channels last): for r < rows, j < min(columns, N),

        sum over t < len(taps), k < kc of  a[a_offset + taps[t] + r*a_row + k] * b[b_offset + (t*kc + k)*b_k + j]

    -- row r an output pixel, t a filter tap (``taps[t]``: its place in the prepared input a), k an input
    channel, j an output channel.  Rows are "virtual pixels": row r is output column ow_first + r of an
    output row ``virtual_width`` pixels long, wrapping to the next row; the columns >= ``out_width`` of a row
    (the gap the taps overhang into) and rows >= ``row_count`` are computed but not stored.  Row r's result
    goes to c[c_offset + (oh*out_width + ow)*c_row + j] for its row oh (0 for the first) and column ow, where
    ``accumulate`` added to what is there, where ``final`` as ``activate(sum + bias[bias_offset + j], act)``.
    Every row reads A: the caller keeps a[...] in bounds for all ``rows`` rows (slack after the input).
    ``rows`` and ``vectors`` are integer literals."""
    if not (isinstance(rows, types.IntegerLiteral) and isinstance(vectors, types.IntegerLiteral)):
        return None
    n_rows, n_vectors = rows.literal_value, vectors.literal_value
    signature = types.void(a, a_offset, a_row, taps, b, b_offset, b_k, c, c_offset, c_row, kc, row_count, columns,
                           ow_first, virtual_width, out_width, accumulate, final, bias, bias_offset, act, rows, vectors)

    def codegen(context, builder, sig, args):
        (_, a_offset, a_row, _, _, b_offset, b_k, _, c_offset, c_row, kc, row_count, columns, ow_first,
         virtual_width, out_width, accumulate, final, _, bias_offset, act, _, _) = args
        taps = context.make_array(sig.args[3])(context, builder, args[3])
        taps_data = taps.data
        a_data, b_data, c_data, bias_data = (context.make_array(sig.args[i])(context, builder, args[i]).data
                                             for i in (0, 4, 7, 18))
        i64, lanes, vector, acc, masks, multiply_add, load_b = _accumulators(context, builder, sig.args[0].dtype,
                                                                             n_rows, n_vectors, columns, b_data)
        # taps outside, channels inside: the inner loop's A addresses step by one element (LLVM then walks the
        # rows by adding a_row, with no per-row pointers to keep), B's by b_k
        with cgutils.for_range(builder, builder.extract_value(taps.shape, 0)) as tap_loop:
            t = tap_loop.index
            a_base = builder.add(a_offset, builder.load(builder.gep(taps_data, [t])))
            b_base = builder.add(b_offset, builder.mul(builder.mul(t, kc), b_k))
            with cgutils.for_range(builder, kc) as loop:
                k = loop.index
                a_column = builder.add(a_base, k)
                multiply_add(load_b(builder.add(b_base, builder.mul(k, b_k))), [builder.gep(a_data, [builder.add(
                    a_column, builder.mul(ir.Constant(i64, r), a_row))]) for r in range(n_rows)])
        rows_at = _virtual_rows(builder, n_rows, row_count, ow_first, virtual_width, out_width, c_offset, c_row)
        _store(context, builder, sig.args[7].dtype, acc, rows_at, masks, c_data, bias_data, bias_offset,
               ir.Constant(ir.IntType(1), 0), act, final, accumulate, False)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def thin_tile(typingctx, a, a_offset, a_row, run_offsets, run_lengths, w, w_offset, c, c_offset, c_row, row_count,
              ow_first, virtual_width, out_width, bias, bias_offset, act, rows, width):
    """The register tile of a convolution with thin groups (``width`` input and output channels per group, a
    compile-time 2, 4 or 8 dividing a vector's lanes L), channels last: one vector holds L / width whole
    groups, and for r < rows, lane l (output channel l of the tile, in group l // width)

        c[...row r..., l] = activate(bias[bias_offset + l] + sum over taps t, i < width of
                                     a[a_offset + tap_t + r*a_row + g + (l - g + i) % width] * w[w_offset + (t*width + i)*L + l])

    with g = (l // width)*width the first lane of l's group -- no multiply by a zero, no lane idle: the input
    vector of a pixel (its L channels) is rotated within each group by i (i = 0: as loaded), so each lane sees
    its group's input (l - g + i) mod width, and multiplied by the weights packed to match.
    The taps come in runs of 1 to 3 (``run_lengths``) that read consecutive pixels (``run_offsets``: the
    first's place in a; tap j of a run reads one pixel, a_row elements, further): within a run each loaded and
    shuffled pixel feeds every tap that reads it, so a 3-tap run costs (rows + 2) x (width - 1) shuffles for
    3 x rows x width multiply-adds.  Rows are virtual pixels stored as in `conv_tile`; all rows read A."""
    if not (isinstance(rows, types.IntegerLiteral) and isinstance(width, types.IntegerLiteral)):
        return None
    n_rows, group = rows.literal_value, width.literal_value
    signature = types.void(a, a_offset, a_row, run_offsets, run_lengths, w, w_offset, c, c_offset, c_row, row_count,
                           ow_first, virtual_width, out_width, bias, bias_offset, act, rows, width)

    def codegen(context, builder, sig, args):
        (_, a_offset, a_row, _, _, _, w_offset, _, c_offset, c_row, row_count, ow_first, virtual_width, out_width,
         _, bias_offset, act, _, _) = args
        offsets = context.make_array(sig.args[3])(context, builder, args[3])
        offsets_data = offsets.data
        a_data, lengths_data, w_data, c_data, bias_data = (
            context.make_array(sig.args[i])(context, builder, args[i]).data for i in (0, 4, 5, 7, 14))
        scalar, lanes, vector, pointer, mask_type, masked_load, masked_store = _vectors(context, builder,
                                                                                        sig.args[0].dtype)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        fma = _fma(builder, vector)
        zero = ir.Constant(vector, None)
        acc = [[cgutils.alloca_once_value(builder, zero)] for _ in range(n_rows)]
        # rotation i of each group's lanes: lane l takes its group's input (l + i) mod width (rotation 0 is the
        # pixel itself: width - 1 shuffles per pixel, the weights packed to match)
        selectors = [ir.Constant(ir.VectorType(i32, lanes), [(l // group) * group + (l % group + i) % group
                                                             for l in range(lanes)]) for i in range(group)]
        tap = cgutils.alloca_once_value(builder, ir.Constant(i64, 0))  # the first tap of the run, in w

        def load(index):
            return builder.load(builder.bitcast(builder.gep(a_data, [index]), pointer), align=4)

        def weights(first, j, i):
            index = builder.add(w_offset, builder.mul(builder.add(builder.mul(builder.add(first, ir.Constant(
                i64, j)), ir.Constant(i64, group)), ir.Constant(i64, i)), ir.Constant(i64, lanes)))
            return builder.load(builder.bitcast(builder.gep(w_data, [index]), pointer), align=4)

        with cgutils.for_range(builder, builder.extract_value(offsets.shape, 0)) as loop:
            base = builder.add(a_offset, builder.load(builder.gep(offsets_data, [loop.index])))
            length = builder.load(builder.gep(lengths_data, [loop.index]))
            first = builder.load(tap)
            done = builder.append_basic_block("thin.run.done")
            switch = builder.switch(length, done)
            for run in (1, 2, 3):
                case = builder.append_basic_block(f"thin.run.{run}")
                switch.add_case(ir.Constant(i64, run), case)
                builder.position_at_end(case)
                w_vectors = [[weights(first, j, i) for i in range(group)] for j in range(run)]
                for u in range(n_rows + run - 1):  # pixel u of the run feeds rows u - j for its taps j
                    pixel = load(builder.add(base, builder.mul(ir.Constant(i64, u), a_row)))
                    for i in range(group):
                        spread = pixel if i == 0 else builder.shuffle_vector(pixel, ir.Constant(vector, ir.Undefined),
                                                                             selectors[i])
                        for j in range(run):
                            r = u - j
                            if 0 <= r < n_rows:
                                builder.store(builder.call(fma, [spread, w_vectors[j][i], builder.load(acc[r][0])]),
                                              acc[r][0])
                builder.branch(done)
            builder.position_at_end(done)
            builder.store(builder.add(first, length), tap)
        masks = [ir.Constant(mask_type, [1] * lanes)]
        rows_at = _virtual_rows(builder, n_rows, row_count, ow_first, virtual_width, out_width, c_offset, c_row)
        _store(context, builder, sig.args[7].dtype, acc, rows_at, masks, c_data, bias_data, bias_offset,
               ir.Constant(ir.IntType(1), 0), act, ir.Constant(ir.IntType(1), 1), ir.Constant(ir.IntType(1), 0),
               False)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def depthwise_tile(typingctx, x, x_offset, x_pixel, x_row, x_column, row_taps, column_taps, w, w_offset, w_row, c,
                   c_offset, c_pixel, pixel_count, channels, column_first, column_stride, column_dilation, in_width, bias,
                   bias_offset, act, pixels, checked):
    """The register tile of a depthwise convolution on channels-last data: ``pixels`` output pixels of one row
    (consecutive columns) times one vector of channels, for p < min(pixels, pixel_count), lane l < ``channels``

        c[c_offset + p*c_pixel + l] = activate(bias[bias_offset + l] + sum over i < row_taps, j < column_taps of
                                               x[x_offset + p*x_pixel + i*x_row + j*x_column + l] * w[w_offset + i*w_row + j*L + l], act)

    -- each tap's weight vector loaded once for all the tile's pixels, one input load per multiply-add (there
    is no reuse of an input vector across taps: the layer is bound by memory, not by these loads).  Pixels past
    ``pixel_count`` repeat the last one's loads and are not stored.  Where ``checked`` (a compile-time boolean),
    pixel p's tap j reads x only where its input column ``column_first + p*column_stride + j*column_dilation``
    is inside ``[0, in_width)``, contributing zero otherwise (its load is masked off): the tiles at a row's ends,
    where the taps overhang the zero padding.  The caller keeps the rows inside x (``row_taps`` counts the rows
    that are).  ``pixels`` (an integer literal) and ``checked`` (a boolean literal) are compile-time constants."""
    if not (isinstance(pixels, types.IntegerLiteral) and isinstance(checked, types.BooleanLiteral)):
        return None
    n_pixels, bounds = pixels.literal_value, checked.literal_value
    signature = types.void(x, x_offset, x_pixel, x_row, x_column, row_taps, column_taps, w, w_offset, w_row, c,
                           c_offset, c_pixel, pixel_count, channels, column_first, column_stride, column_dilation,
                           in_width, bias, bias_offset, act, pixels, checked)

    def codegen(context, builder, sig, args):
        (_, x_offset, x_pixel, x_row, x_column, row_taps, column_taps, _, w_offset, w_row, _, c_offset, c_pixel,
         pixel_count, channels, column_first, column_stride, column_dilation, in_width, _, bias_offset, act, _,
         _) = args
        x_data, w_data, c_data, bias_data = (context.make_array(sig.args[i])(context, builder, args[i]).data
                                             for i in (0, 7, 10, 19))
        scalar, lanes, vector, pointer, mask_type, masked_load, masked_store = _vectors(context, builder,
                                                                                        sig.args[0].dtype)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        fma = _fma(builder, vector)
        zero = ir.Constant(vector, None)
        alignment = ir.Constant(i32, context.get_abi_sizeof(scalar))
        mask = _lane_mask(builder, channels, lanes)
        no_lanes = ir.Constant(mask_type, [0] * lanes)
        acc = [cgutils.alloca_once_value(builder, zero) for _ in range(n_pixels)]
        # pixel p's offset in x (pixels past pixel_count read the last one's), and its first tap's column
        last = builder.sub(pixel_count, ir.Constant(i64, 1))
        index = [builder.select(builder.icmp_signed("<", ir.Constant(i64, p), pixel_count), ir.Constant(i64, p), last)
                 for p in range(n_pixels)]
        pixel_offsets = [builder.mul(p, x_pixel) for p in index]
        columns = [builder.add(column_first, builder.mul(p, column_stride)) for p in index]
        with cgutils.for_range(builder, row_taps) as row_loop:
            x_base = builder.add(x_offset, builder.mul(row_loop.index, x_row))
            w_base = builder.add(w_offset, builder.mul(row_loop.index, w_row))
            with cgutils.for_range(builder, column_taps) as column_loop:
                j = column_loop.index
                weight = builder.call(masked_load, [builder.bitcast(builder.gep(w_data, [builder.add(
                    w_base, builder.mul(j, ir.Constant(i64, lanes)))]), pointer), alignment, mask, zero])
                tap_base = builder.add(x_base, builder.mul(j, x_column))
                if bounds:
                    tap_column = builder.mul(j, column_dilation)
                for p in range(n_pixels):
                    load_mask = mask
                    if bounds:  # 0 <= column < in_width as one unsigned comparison
                        inside = builder.icmp_unsigned("<", builder.add(columns[p], tap_column), in_width)
                        load_mask = builder.select(inside, mask, no_lanes)
                    value = builder.call(masked_load, [builder.bitcast(builder.gep(x_data, [builder.add(
                        tap_base, pixel_offsets[p])]), pointer), alignment, load_mask, zero])
                    builder.store(builder.call(fma, [value, weight, builder.load(acc[p])]), acc[p])
        _store_pixels(context, builder, sig.args[10].dtype, acc, pixel_count, c_offset, c_pixel, mask, c_data,
                      bias_data, bias_offset, act)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def depthwise_row_tile(typingctx, x, x_offset, x_pixel, x_row, row_taps, w, w_offset, w_row, c, c_offset, c_pixel,
                       pixel_count, channels, column_first, in_width, bias, bias_offset, act, pixels, kernel_width,
                       stride, full):
    """`depthwise_tile` with the filter's width and the stride known at compile time (no dilation): each input
    pixel of a filter row is loaded once and feeds every tap that reads it, so a row of the tile costs
    (pixels - 1) x stride + kernel_width input loads and kernel_width weight loads for pixels x kernel_width
    multiply-adds.  Pixel p's tap j reads input pixel u = p*stride + j of each of the ``row_taps`` filter rows,
    x[x_offset + row*x_row + u*x_pixel + l], weight w[w_offset + row*w_row + j*L + l]; output and epilogue as
    `depthwise_tile`.  ``pixels``, ``kernel_width`` and ``stride`` are integer literals, and so is ``full``:
    where true the caller promises pixel_count = pixels, channels = L and every input pixel inside the row
    (plain loads and stores, no masks); else input pixel u is loaded only where its column ``column_first + u``
    is inside ``[0, in_width)`` and some stored pixel reads it (masked off, it contributes zero), so one tile
    serves a row's ends (the zero padding) and rows shorter than the tile."""
    if not (all(isinstance(value, types.IntegerLiteral) for value in (pixels, kernel_width, stride))
            and isinstance(full, types.BooleanLiteral)):
        return None
    n_pixels, n_taps, step = pixels.literal_value, kernel_width.literal_value, stride.literal_value
    whole = full.literal_value
    signature = types.void(x, x_offset, x_pixel, x_row, row_taps, w, w_offset, w_row, c, c_offset, c_pixel,
                           pixel_count, channels, column_first, in_width, bias, bias_offset, act, pixels, kernel_width,
                           stride, full)

    def codegen(context, builder, sig, args):
        (_, x_offset, x_pixel, x_row, row_taps, _, w_offset, w_row, _, c_offset, c_pixel, pixel_count, channels,
         column_first, in_width, _, bias_offset, act, _, _, _, _) = args
        x_data, w_data, c_data, bias_data = (context.make_array(sig.args[i])(context, builder, args[i]).data
                                             for i in (0, 5, 8, 15))
        scalar, lanes, vector, pointer, mask_type, masked_load, masked_store = _vectors(context, builder,
                                                                                        sig.args[0].dtype)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        fma = _fma(builder, vector)
        zero = ir.Constant(vector, None)
        alignment = ir.Constant(i32, context.get_abi_sizeof(scalar))
        inputs = (n_pixels - 1) * step + n_taps
        if whole:
            mask = ir.Constant(mask_type, [1] * lanes)
            input_masks = [None] * inputs
        else:
            mask = _lane_mask(builder, channels, lanes)
            # input pixel u is read where some stored pixel needs it and its column is inside the row
            needed = builder.add(builder.mul(builder.sub(pixel_count, ir.Constant(i64, 1)), ir.Constant(i64, step)),
                                 ir.Constant(i64, n_taps))
            no_lanes = ir.Constant(mask_type, [0] * lanes)
            input_masks = [builder.select(builder.and_(
                builder.icmp_signed("<", ir.Constant(i64, u), needed),
                builder.icmp_unsigned("<", builder.add(column_first, ir.Constant(i64, u)), in_width)), mask, no_lanes)
                for u in range(inputs)]

        def load(data, index, lane_mask):
            address = builder.bitcast(builder.gep(data, [index]), pointer)
            if lane_mask is None:
                return builder.load(address, align=context.get_abi_sizeof(scalar))
            return builder.call(masked_load, [address, alignment, lane_mask, zero])

        acc = [cgutils.alloca_once_value(builder, zero) for _ in range(n_pixels)]
        offsets = [builder.mul(ir.Constant(i64, u), x_pixel) for u in range(inputs)]
        with cgutils.for_range(builder, row_taps) as row_loop:
            x_base = builder.add(x_offset, builder.mul(row_loop.index, x_row))
            w_base = builder.add(w_offset, builder.mul(row_loop.index, w_row))
            weights = [load(w_data, builder.add(w_base, ir.Constant(i64, j * lanes)), None if whole else mask)
                       for j in range(n_taps)]
            for u in range(inputs):
                value = load(x_data, builder.add(x_base, offsets[u]), input_masks[u])
                for j in range(n_taps):
                    if (u - j) % step == 0 and 0 <= (u - j) // step < n_pixels:
                        p = (u - j) // step
                        builder.store(builder.call(fma, [value, weights[j], builder.load(acc[p])]), acc[p])
        _store_pixels(context, builder, sig.args[8].dtype, acc, pixel_count, c_offset, c_pixel, mask, c_data,
                      bias_data, bias_offset, act)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def depthwise_weight_tile(typingctx, a, a_offset, a_pixel, a_row, a_tap_row, a_tap_column, g, g_offset, g_row,
                          rows, columns, row_taps, column_taps, partial, p_offset):
    """The weight gradient of a depthwise convolution over one block of channels, channels last: for every tap
    (i < row_taps, j < column_taps) and lane l of a vector of L channels,

        partial[p_offset + (i*column_taps + j)*L + l] = sum over r < rows, q < columns of
            float64(g[g_offset + r*g_row + q*L + l]) * float64(a[a_offset + i*a_tap_row + j*a_tap_column + r*a_row + q*a_pixel + l])

    -- g the output gradient's rows (pixels of L channels), a the input rows read by the tap.  Products and sums
    in float64 whatever the dtype (a float32 vector is widened into two float64 halves): the reduction over
    many pixels loses no precision to its accumulator.  Four pixels' chains per tap in flight (one would wait
    on the multiply-add latency at every pixel), added at the end."""
    signature = types.void(a, a_offset, a_pixel, a_row, a_tap_row, a_tap_column, g, g_offset, g_row, rows, columns,
                           row_taps, column_taps, partial, p_offset)
    chains = 4

    def codegen(context, builder, sig, args):
        (_, a_offset, a_pixel, a_row, a_tap_row, a_tap_column, _, g_offset, g_row, rows, columns, row_taps,
         column_taps, _, p_offset) = args
        a_data, g_data, p_data = (context.make_array(sig.args[i])(context, builder, args[i]).data for i in (0, 6, 13))
        i64 = ir.IntType(64)
        lanes = VECTOR_BYTES // context.get_abi_sizeof(context.get_data_type(sig.args[0].dtype))
        widened, store, wide, halves = _float64_lanes(context, builder, sig.args[0].dtype)
        fma = _fma(builder, wide)
        zero = ir.Constant(wide, None)
        acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(halves)] for _ in range(chains)]
        whole = builder.mul(builder.sdiv(columns, ir.Constant(i64, chains)), ir.Constant(i64, chains))
        with cgutils.for_range(builder, row_taps) as row_loop:
            with cgutils.for_range(builder, column_taps) as column_loop:
                for chain in acc:
                    for h in chain:
                        builder.store(zero, h)
                tap_base = builder.add(a_offset, builder.add(builder.mul(row_loop.index, a_tap_row),
                                                             builder.mul(column_loop.index, a_tap_column)))
                with cgutils.for_range(builder, rows) as r_loop:
                    a_base = builder.add(tap_base, builder.mul(r_loop.index, a_row))
                    g_base = builder.add(g_offset, builder.mul(r_loop.index, g_row))

                    def step(q, chain):
                        gv = widened(g_data, builder.add(g_base, builder.mul(q, ir.Constant(i64, lanes))))
                        av = widened(a_data, builder.add(a_base, builder.mul(q, a_pixel)))
                        for h in range(halves):
                            builder.store(builder.call(fma, [gv[h], av[h], builder.load(acc[chain][h])]),
                                          acc[chain][h])

                    with cgutils.for_range_slice(builder, ir.Constant(i64, 0), whole, ir.Constant(i64, chains)) \
                            as (q, _):
                        for chain in range(chains):
                            step(builder.add(q, ir.Constant(i64, chain)), chain)
                    with cgutils.for_range_slice(builder, whole, columns, ir.Constant(i64, 1)) as (q, _):
                        step(q, 0)
                tap = builder.add(builder.mul(row_loop.index, column_taps), column_loop.index)
                totals = []
                for h in range(halves):
                    total = builder.load(acc[0][h])
                    for chain in range(1, chains):
                        total = builder.fadd(total, builder.load(acc[chain][h]))
                    totals.append(total)
                store(totals, p_data, builder.add(p_offset, builder.mul(tap, ir.Constant(i64, lanes))))
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def depthwise_weight_row_tile(typingctx, a, a_offset, a_pixel, a_row, a_tap_row, g, g_offset, g_row, rows, columns,
                              row_taps, partial, p_offset, kernel_width, stride):
    """`depthwise_weight_tile` with the filter's width and the stride known at compile time (no dilation): the
    taps of one filter row are reduced together, output pixel by output pixel -- its gradient vector widened
    once for all of them, the input pixels it meets kept in a window that slides by the stride (``stride``
    new ones widened per output pixel, not one per tap), so a float32 output pixel costs 2 x (1 + stride)
    conversions and 2 x kernel_width multiply-adds per filter row.  ``a_pixel`` is the input's element step
    from one column to the next (the stride is applied here); ``kernel_width`` and ``stride`` are integer
    literals, ``stride`` <= ``kernel_width``."""
    if not (isinstance(kernel_width, types.IntegerLiteral) and isinstance(stride, types.IntegerLiteral)):
        return None
    n_taps, step = kernel_width.literal_value, stride.literal_value
    if step > n_taps:
        return None
    signature = types.void(a, a_offset, a_pixel, a_row, a_tap_row, g, g_offset, g_row, rows, columns, row_taps,
                           partial, p_offset, kernel_width, stride)

    def codegen(context, builder, sig, args):
        (_, a_offset, a_pixel, a_row, a_tap_row, _, g_offset, g_row, rows, columns, row_taps, _, p_offset, _,
         _) = args
        a_data, g_data, p_data = (context.make_array(sig.args[i])(context, builder, args[i]).data for i in (0, 5, 11))
        i64 = ir.IntType(64)
        lanes = VECTOR_BYTES // context.get_abi_sizeof(context.get_data_type(sig.args[0].dtype))
        widened, store, wide, halves = _float64_lanes(context, builder, sig.args[0].dtype)
        fma = _fma(builder, wide)
        zero = ir.Constant(wide, None)
        acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(halves)] for _ in range(n_taps)]
        window = [[cgutils.alloca_once_value(builder, zero) for _ in range(halves)] for _ in range(n_taps)]
        with cgutils.for_range(builder, row_taps) as tap_row:
            for tap in acc:
                for h in tap:
                    builder.store(zero, h)
            row_base = builder.add(a_offset, builder.mul(tap_row.index, a_tap_row))
            with cgutils.for_range(builder, rows) as r_loop:
                a_base = builder.add(row_base, builder.mul(r_loop.index, a_row))
                g_base = builder.add(g_offset, builder.mul(r_loop.index, g_row))
                for j in range(n_taps):  # the first output pixel's input pixels
                    for h, value in enumerate(widened(a_data, builder.add(a_base, builder.mul(ir.Constant(i64, j),
                                                                                              a_pixel)))):
                        builder.store(value, window[j][h])
                with cgutils.for_range(builder, columns) as q_loop:
                    q = q_loop.index
                    gv = widened(g_data, builder.add(g_base, builder.mul(q, ir.Constant(i64, lanes))))
                    for j in range(n_taps):
                        for h in range(halves):
                            builder.store(builder.call(fma, [gv[h], builder.load(window[j][h]),
                                                             builder.load(acc[j][h])]), acc[j][h])
                    following = builder.add(q, ir.Constant(i64, 1))
                    with builder.if_then(builder.icmp_signed("<", following, columns), likely=True):
                        for j in range(n_taps - step):  # slide by the stride, then the new input pixels
                            for h in range(halves):
                                builder.store(builder.load(window[j + step][h]), window[j][h])
                        first = builder.add(builder.mul(following, ir.Constant(i64, step)),
                                            ir.Constant(i64, n_taps - step))
                        for j in range(n_taps - step, n_taps):
                            column = builder.add(first, ir.Constant(i64, j - (n_taps - step)))
                            for h, value in enumerate(widened(a_data, builder.add(a_base,
                                                                                  builder.mul(column, a_pixel)))):
                                builder.store(value, window[j][h])
            for j in range(n_taps):
                tap = builder.add(builder.mul(tap_row.index, ir.Constant(i64, n_taps)), ir.Constant(i64, j))
                store([builder.load(h) for h in acc[j]], p_data,
                      builder.add(p_offset, builder.mul(tap, ir.Constant(i64, lanes))))
        return context.get_dummy_value()

    return signature, codegen


def _lane_mask(builder, count, lanes, first=0):
    """The lanes l of a vector of ``lanes`` with first + l < ``count`` (a run-time i64): a tile's columns or channels
    that exist."""
    i64 = ir.IntType(64)
    limit = _splat(builder, count, ir.VectorType(i64, lanes))
    return builder.icmp_signed("<", ir.Constant(ir.VectorType(i64, lanes), [first + l for l in range(lanes)]), limit)


def _store_pixels(context, builder, dtype, acc, pixel_count, c_offset, c_pixel, mask, c_data, bias_data, bias_offset,
                  act):
    """The depthwise tiles' stores: pixel p's accumulator (one vector) to c_data[c_offset + p*c_pixel + l] for
    p < pixel_count and the lanes of ``mask``, as ``activate(acc + bias[bias_offset + l], act)`` (`_store`)."""
    i64 = ir.IntType(64)
    rows_at = [(builder.icmp_signed("<", ir.Constant(i64, p), pixel_count),
                builder.add(c_offset, builder.mul(ir.Constant(i64, p), c_pixel))) for p in range(len(acc))]
    false = ir.Constant(ir.IntType(1), 0)
    _store(context, builder, dtype, [[a] for a in acc], rows_at, [mask], c_data, bias_data, bias_offset, false, act,
           ir.Constant(ir.IntType(1), 1), false, False)


def _float64_lanes(context, builder, dtype):
    """The depthwise weight gradient's float64 view of one 64-byte vector of ``dtype``: ``(widened, store, wide,
    halves)`` -- ``widened(data, index)`` loads the vector at data[index] as ``halves`` float64 vectors (two,
    widened, for float32; itself for float64), ``store(values, data, index)`` writes such halves to a float64
    array, ``wide`` their LLVM type."""
    scalar, lanes, vector, pointer, mask_type, masked_load, masked_store = _vectors(context, builder, dtype)
    i64, i32 = ir.IntType(64), ir.IntType(32)
    halves = 2 if scalar == ir.FloatType() else 1
    width = lanes // halves
    wide = ir.VectorType(ir.DoubleType(), width)
    alignment = context.get_abi_sizeof(scalar)

    def widened(data, index):
        value = builder.load(builder.bitcast(builder.gep(data, [index]), pointer), align=alignment)
        if halves == 1:
            return [value]
        undef = ir.Constant(vector, ir.Undefined)
        return [builder.fpext(builder.shuffle_vector(value, undef, ir.Constant(
            ir.VectorType(i32, width), list(range(h * width, (h + 1) * width)))), wide) for h in range(2)]

    def store(values, data, index):
        for h, value in enumerate(values):
            builder.store(value, builder.bitcast(builder.gep(data, [builder.add(index, ir.Constant(i64, h * width))]),
                                                 wide.as_pointer()), align=8)

    return widened, store, wide, halves


def _virtual_rows(builder, n_rows, row_count, ow_first, virtual_width, out_width, c_offset, c_row):
    """``(stored, c index)`` of each row of a tile of virtual pixels: row r is column ow_first + r of an output
    row ``virtual_width`` long, wrapping to the next; stored where r < row_count and its column < out_width."""
    i64 = ir.IntType(64)
    rows_at = []
    ow, oh = ow_first, ir.Constant(i64, 0)
    one = ir.Constant(i64, 1)
    for r in range(n_rows):
        valid = builder.and_(builder.icmp_signed("<", ir.Constant(i64, r), row_count),
                             builder.icmp_signed("<", ow, out_width))
        rows_at.append((valid, builder.add(c_offset, builder.mul(builder.add(builder.mul(oh, out_width), ow), c_row))))
        following = builder.add(ow, one)
        wrap = builder.icmp_signed("==", following, virtual_width)
        ow = builder.select(wrap, ir.Constant(i64, 0), following)
        oh = builder.select(wrap, builder.add(oh, one), oh)
    return rows_at


def _accumulators(context, builder, dtype, n_rows, n_vectors, columns, b_data):
    """What both register tiles share: ``(i64, lanes, vector, acc, masks, multiply_add, load_b)`` -- the
    ``n_rows x n_vectors`` accumulators (allocas in the entry block, promoted to registers by LLVM's mem2reg),
    the lane masks (lane l of vector v holds column v*lanes + l, kept while < ``columns``), ``load_b(index)``
    (B's masked row at ``index``) and ``multiply_add(b, a_pointers)`` (one k step: acc[r][v] += a[r] * b[v])."""
    scalar, lanes, vector, pointer, mask_type, masked_load, masked_store = _vectors(context, builder, dtype)
    i64, i32 = ir.IntType(64), ir.IntType(32)
    fma = _fma(builder, vector)
    zero = ir.Constant(vector, None)
    acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(n_vectors)] for _ in range(n_rows)]
    masks = [_lane_mask(builder, columns, lanes, v * lanes) for v in range(n_vectors)]
    alignment = ir.Constant(i32, context.get_abi_sizeof(scalar))

    def load_b(index):
        return [builder.call(masked_load, [builder.bitcast(builder.gep(b_data, [builder.add(
            index, ir.Constant(i64, v * lanes))]), pointer), alignment, masks[v], zero]) for v in range(n_vectors)]

    def multiply_add(b, a_pointers):
        for r, a_pointer in enumerate(a_pointers):
            a = _splat(builder, builder.load(a_pointer), vector)
            for v in range(n_vectors):
                builder.store(builder.call(fma, [a, b[v], builder.load(acc[r][v])]), acc[r][v])

    return i64, lanes, vector, acc, masks, multiply_add, load_b


def _store(context, builder, dtype, acc, rows_at, masks, c_data, bias_data, bias_offset, bias_per_row, act, final,
           accumulate, per_row_cases):
    """A register tile's stores: row r of ``acc`` (``n_vectors`` vectors) goes to c_data[rows_at[r][1] + j]
    where rows_at[r][0] holds, its lanes masked by ``masks``; the sum is added to what c holds where
    ``accumulate``, and where ``final`` the bias (``bias_per_row``: bias[bias_offset + r], else
    bias[bias_offset + j]) is added and activation ``act`` applied.  One copy of the stores per epilogue (a
    switch: not final; final with each activation, bias per column or -- if ``per_row_cases`` -- per row)."""
    scalar, lanes, vector, pointer, mask_type, masked_load, masked_store = _vectors(context, builder, dtype)
    i64, i32 = ir.IntType(64), ir.IntType(32)
    module = builder.module
    alignment = ir.Constant(i32, context.get_abi_sizeof(scalar))
    zero = ir.Constant(vector, None)
    n_vectors = len(acc[0])

    def element(data, index):
        return builder.gep(data, [index])

    def store_tile(code, per_row):
        column_bias = [builder.call(masked_load, [builder.bitcast(element(bias_data, builder.add(
            bias_offset, ir.Constant(i64, v * lanes))), pointer), alignment, masks[v], zero])
            for v in range(n_vectors)] if code is not None and not per_row else None
        for r, (valid, row) in enumerate(rows_at):
            with builder.if_then(valid, likely=True):
                if code is not None and per_row:
                    row_bias = _splat(builder, builder.load(element(bias_data, builder.add(
                        bias_offset, ir.Constant(i64, r)))), vector)
                for v in range(n_vectors):
                    address = builder.bitcast(element(c_data, builder.add(row, ir.Constant(i64, v * lanes))),
                                              pointer)
                    value = builder.load(acc[r][v])
                    before = builder.block
                    with builder.if_then(accumulate):
                        old = builder.call(masked_load, [address, alignment, masks[v], zero])
                        added = builder.fadd(value, old)
                        added_block = builder.block
                    merged = builder.phi(vector)
                    merged.add_incoming(value, before)
                    merged.add_incoming(added, added_block)
                    value = merged
                    if code is not None:
                        value = _activate(builder, module, builder.fadd(
                            value, row_bias if per_row else column_bias[v]), code, vector)
                    builder.call(masked_store, [value, address, alignment, masks[v]])

    after = builder.append_basic_block("tile.stored")
    plain = builder.append_basic_block("tile.plain")
    selector = builder.select(final, builder.add(builder.mul(builder.zext(bias_per_row, i64), ir.Constant(
        i64, ACTIVATION_COUNT)), builder.add(act, ir.Constant(i64, 1))), ir.Constant(i64, 0))
    switch = builder.switch(selector, plain)
    builder.position_at_end(plain)
    store_tile(None, False)
    builder.branch(after)
    for per_row in (False, True) if per_row_cases else (False,):
        for code in range(ACTIVATION_COUNT):
            case = builder.append_basic_block(f"tile.final.{int(per_row)}.{code}")
            switch.add_case(ir.Constant(i64, int(per_row) * ACTIVATION_COUNT + code + 1), case)
            builder.position_at_end(case)
            store_tile(code, per_row)
            builder.branch(after)
    builder.position_at_end(after)


@intrinsic
def fma_chains(typingctx, out, iterations, chains):
    """``chains`` (a compile-time constant) independent chains of vector FMAs, ``iterations`` long, each on
    one 64-byte vector: acc = fma(acc, a, b), with a and b chosen so that values stay finite; the chains'
    first lanes are written to out[0:chains] so that nothing is optimized away.  2 x lanes x chains x
    iterations FLOPs: the machine's FMA peak when there are enough chains to cover the FMA latency."""
    if not isinstance(chains, types.IntegerLiteral):
        return None
    count = chains.literal_value
    signature = types.void(out, iterations, chains)

    def codegen(context, builder, sig, args):
        out_array, iterations, _ = args
        scalar = context.get_data_type(sig.args[0].dtype)
        lanes = VECTOR_BYTES // context.get_abi_sizeof(scalar)
        vector = ir.VectorType(scalar, lanes)
        fma = _fma(builder, vector)
        a = ir.Constant(vector, [0.999999] * lanes)
        b = ir.Constant(vector, [1e-6] * lanes)
        acc = [cgutils.alloca_once_value(builder, ir.Constant(vector, [float(c) * 1e-3] * lanes)) for c in range(count)]
        with cgutils.for_range(builder, iterations):
            for c in range(count):
                builder.store(builder.call(fma, [builder.load(acc[c]), a, b]), acc[c])
        data = context.make_array(sig.args[0])(context, builder, out_array).data
        for c in range(count):
            value = builder.extract_element(builder.load(acc[c]), ir.Constant(ir.IntType(32), 0))
            builder.store(value, builder.gep(data, [ir.Constant(ir.IntType(64), c)]))
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def transpose_block(typingctx, source, source_offset, source_row, rows, columns, target, target_offset, target_row,
                    stored):
    """target[target_offset + j*target_row + i] = source[source_offset + i*source_row + j] for j < columns and
    i < ``stored``, for one square block of one vector's lanes L (16 float32 / 8 float64): rows i >= ``rows``
    (and columns past ``columns`` are never read) give zeros -- the zero padding of a packed panel's edge.
    ``stored`` <= L lanes of each target row are written (the rest of a 64-byte store is masked off).

    The rows are loaded as vectors (masked to ``columns``), transposed in registers by log2(L) stages of
    two-source lane shuffles (each stage swaps the off-diagonal halves of every 2h x 2h block: h = L/2, ...,
    1), and stored as vectors: the packing of a GEMM operand whose k axis is the source's contiguous one."""
    signature = types.void(source, source_offset, source_row, rows, columns, target, target_offset, target_row,
                           stored)

    def codegen(context, builder, sig, args):
        source_array, source_offset, source_row, rows, columns, target_array, target_offset, target_row, stored = args
        scalar, lanes, vector, pointer, mask_type, masked_load, masked_store = _vectors(context, builder,
                                                                                        sig.args[0].dtype)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        source_data = context.make_array(sig.args[0])(context, builder, source_array).data
        target_data = context.make_array(sig.args[5])(context, builder, target_array).data
        alignment = ir.Constant(i32, context.get_abi_sizeof(scalar))
        zero = ir.Constant(vector, None)
        lane_numbers = ir.Constant(ir.VectorType(i64, lanes), list(range(lanes)))
        column_mask = builder.icmp_signed("<", lane_numbers, _splat(builder, columns, ir.VectorType(i64, lanes)))
        store_mask = builder.icmp_signed("<", lane_numbers, _splat(builder, stored, ir.VectorType(i64, lanes)))
        values = []
        for i in range(lanes):  # row i, or zeros past the last row (its load masked off entirely)
            mask = builder.and_(column_mask, _splat(builder, builder.icmp_signed("<", ir.Constant(i64, i), rows),
                                                    mask_type))
            address = builder.bitcast(builder.gep(source_data, [builder.add(
                source_offset, builder.mul(ir.Constant(i64, i), source_row))]), pointer)
            values.append(builder.call(masked_load, [address, alignment, mask, zero]))
        h = lanes // 2
        while h:
            low = ir.Constant(ir.VectorType(i32, lanes), [c if c & h == 0 else lanes + c - h for c in range(lanes)])
            high = ir.Constant(ir.VectorType(i32, lanes), [c + h if c & h == 0 else lanes + c for c in range(lanes)])
            for i in range(lanes):
                if i & h == 0:
                    first, second = values[i], values[i + h]
                    values[i] = builder.shuffle_vector(first, second, low)
                    values[i + h] = builder.shuffle_vector(first, second, high)
            h //= 2
        for j in range(lanes):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, j), columns)):
                address = builder.bitcast(builder.gep(target_data, [builder.add(
                    target_offset, builder.mul(ir.Constant(i64, j), target_row))]), pointer)
                builder.call(masked_store, [values[j], address, alignment, store_mask])
        return context.get_dummy_value()

    return signature, codegen
