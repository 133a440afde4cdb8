"""Small fixed-size scratch arrays on the stack, for register accumulator tiles.

A kernel's accumulator tile (``acc[RUN]``) must live in vector registers across the whole
reduction.  Allocated with ``np.empty`` it lives on the heap, and LLVM cannot prove that the
input loads do not alias it: every multiply-add then stores the tile and reloads it (a
store-to-load round trip on the critical path).  ``stack_array(SIZE, like)`` allocates it with
``alloca`` in the function's entry block instead: memory no other pointer can reach, which LLVM
promotes to registers once the constant-trip loops over it are unrolled.

The result is valid only inside the function that calls ``stack_array`` (and the functions
inlined into it): never return it or keep it past the call.
"""

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array


@intrinsic
def stack_array(typingctx, size, like):
    """A 1-D C-contiguous array of ``size`` (a compile-time constant) elements of ``like``'s dtype
    (``like`` an array, or a NumPy scalar type such as ``np.int64``), uninitialised, in the calling
    function's stack frame."""
    if not isinstance(size, types.IntegerLiteral):
        return None  # Numba then retries with the literal value of a constant size
    if isinstance(like, types.Array):
        dtype = like.dtype
    elif isinstance(like, types.NumberClass):
        dtype = like.instance_type
    else:
        return None
    length = size.literal_value
    array_type = types.Array(dtype, 1, "C")

    def codegen(context, builder, signature, args):
        element = context.get_data_type(dtype)
        data = cgutils.alloca_once(builder, element, size=length, name="stack_array")
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(element))
        array = make_array(array_type)(context, builder)
        populate_array(array, data=data, shape=[context.get_constant(types.intp, length)], strides=[itemsize],
                       itemsize=itemsize, meminfo=None)
        return array._getvalue()

    return array_type(size, like), codegen
