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
        scalar, lanes, vector, pointer, mask_type, masked_load, masked_store = _vectors(context, builder,
                                                                                        sig.args[0].dtype)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        module = builder.module
        fma = cgutils.get_or_insert_function(module, ir.FunctionType(vector, [vector] * 3),
                                             f"llvm.fma.v{lanes}{_suffix(vector)}")
        a_data = context.make_array(sig.args[0])(context, builder, a_array).data
        b_data = context.make_array(sig.args[4])(context, builder, b_array).data
        c_data = context.make_array(sig.args[7])(context, builder, c_array).data
        bias_data = context.make_array(sig.args[15])(context, builder, bias_array).data
        zero = ir.Constant(vector, None)
        # accumulators: allocas in the entry block, promoted to registers by LLVM (mem2reg)
        acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(n_vectors)] for _ in range(n_rows)]
        # lane masks: lane l of vector v holds column v*lanes + l, kept while < columns
        limit = _splat(builder, columns, ir.VectorType(i64, lanes))
        masks = [builder.icmp_signed("<", ir.Constant(ir.VectorType(i64, lanes), [v * lanes + l for l in range(lanes)]),
                                     limit) for v in range(n_vectors)]
        alignment = ir.Constant(i32, context.get_abi_sizeof(scalar))
        # row r's offset in A, hoisted out of the k loop; rows past row_count read the last valid row (in bounds
        # of A read in place; their results are never stored)
        last = builder.sub(row_count, ir.Constant(i64, 1))
        a_rows = [builder.mul(builder.select(builder.icmp_signed("<", ir.Constant(i64, r), row_count),
                                             ir.Constant(i64, r), last), a_row) for r in range(n_rows)]
        with cgutils.for_range(builder, kc) as loop:
            k = loop.index
            a_column = builder.add(a_offset, builder.mul(k, a_k))
            b_row = builder.add(b_offset, builder.mul(k, b_k))
            b = [builder.call(masked_load, [builder.bitcast(builder.gep(b_data, [builder.add(
                b_row, ir.Constant(i64, v * lanes))]), pointer), alignment, masks[v], zero]) for v in range(n_vectors)]
            for r in range(n_rows):
                a = _splat(builder, builder.load(builder.gep(a_data, [builder.add(a_column, a_rows[r])])), vector)
                for v in range(n_vectors):
                    builder.store(builder.call(fma, [a, b[v], builder.load(acc[r][v])]), acc[r][v])

        def element(data, index):
            return builder.gep(data, [index])

        def store_tile(code, per_row):
            """The tile's stores: the sum (plus what c holds, where ``accumulate``), then -- where ``code`` is
            not None -- the bias (per row or per column) and activation ``code``."""
            column_bias = [builder.call(masked_load, [builder.bitcast(element(bias_data, builder.add(
                bias_offset, ir.Constant(i64, v * lanes))), pointer), alignment, masks[v], zero])
                for v in range(n_vectors)] if code is not None and not per_row else None
            for r in range(n_rows):
                with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, r), row_count), likely=True):
                    row = builder.add(c_offset, builder.mul(ir.Constant(i64, r), c_row))
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

        # one copy of the stores per epilogue: not final; final with each activation, bias per row or column
        after = builder.append_basic_block("tile.stored")
        plain = builder.append_basic_block("tile.plain")
        selector = builder.select(final, builder.add(builder.mul(builder.zext(bias_per_row, i64), ir.Constant(
            i64, ACTIVATION_COUNT)), builder.add(act, ir.Constant(i64, 1))), ir.Constant(i64, 0))
        switch = builder.switch(selector, plain)
        builder.position_at_end(plain)
        store_tile(None, False)
        builder.branch(after)
        for per_row in (False, True):
            for code in range(ACTIVATION_COUNT):
                case = builder.append_basic_block(f"tile.final.{int(per_row)}.{code}")
                switch.add_case(ir.Constant(i64, int(per_row) * ACTIVATION_COUNT + code + 1), case)
                builder.position_at_end(case)
                store_tile(code, per_row)
                builder.branch(after)
        builder.position_at_end(after)
        return context.get_dummy_value()

    return signature, codegen


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
        name = f"v{lanes}{'f32' if isinstance(scalar, ir.FloatType) else 'f64'}"
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3), f"llvm.fma.{name}")
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
