"""The compiled-code gate of the CUDA kernels (numbaconv.cuda.inventory), without a GPU.

Every kernel compiles for Hopper (sm_90) with every signature its launches use; ptxas accepts it
with no spills and no local memory; no 64-bit integer division or remainder runs inside a loop;
no float32 kernel does float64 arithmetic outside a documented float64 accumulation. A kernel
added without an inventory entry fails here too. Needs numba-cuda and NVIDIA's compiler wheels
(``nvidia-cuda-nvcc-cu12``, ``nvidia-cuda-nvrtc-cu12``: in the ``test`` extra, so CI runs it).
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1",
                                reason="the simulator compiles nothing")


@pytest.fixture(scope="module")
def inventory():
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    from numbaconv.cuda import inventory

    return inventory


@pytest.fixture(scope="module")
def compilers(inventory):
    from numba import cuda
    from numba.core import types

    try:
        cuda.compile_ptx(lambda a: None, (types.float32[:],), cc=(9, 0))
    except Exception as exc:
        pytest.skip(f"NVIDIA's NVRTC/NVVM is not installed ({type(exc).__name__})")
    if inventory.ptxas_path() is None:
        pytest.skip("ptxas is not installed (pip install nvidia-cuda-nvcc-cu12)")
    return inventory


@pytest.fixture(scope="module")
def rows(compilers):
    return compilers.report((9, 0))


def test_every_kernel_is_in_the_inventory(inventory):
    inventoried = {entry.name for entry in inventory.entries()}
    defined = inventory.defined_kernels()
    assert defined == inventoried, (f"kernels without an inventory entry: {sorted(defined - inventoried)}; "
                                    f"entries of no kernel: {sorted(inventoried - defined)}")


def test_the_gate_passes(rows, compilers):
    assert rows and all(not row.error for row in rows), [row.error for row in rows if row.error]
    assert compilers.failures(rows) == []


def test_every_kernel_and_signature_is_reported(rows, compilers):
    reported = {(row.kernel, row.dtype, row.layout) for row in rows}
    wanted = {(entry.name, dtype, layout) for entry in compilers.entries()
              for dtype in entry.dtypes for layout in entry.layouts}
    assert reported == wanted
    assert all(row.counts["registers"] > 0 and 0 < row.occupancy <= 1 for row in rows)


def test_the_gate_catches_what_it_forbids(compilers):
    """A kernel with a 64-bit division in a loop, float64 arithmetic in float32, and a local array indexed at
    run time: each rule reports it."""
    from numba import cuda, float64
    from numba.core import types

    def bad(x, out, n):
        scratch = cuda.local.array(16, types.float32)
        i = cuda.grid(1)
        total = 0.0
        for k in range(n):
            scratch[(i + k) % 16] = x[(i * k) // (n + 1)]
            total += float64(scratch[k % 16]) * 1.5
        out[i] = total

    entry = compilers.Entry("test.bad", lambda dtype: cuda.jit(bad),
                            lambda scalar, layout: (types.Array(scalar, 1, layout), types.Array(scalar, 1, layout),
                                                    types.int64), 128, dtypes=("float32",), layouts=("C",))
    (row,) = compilers.report((9, 0), [entry])
    found = " | ".join(compilers.failures([row]))
    assert "inside loops" in found and "float64 instructions" in found and "local memory" in found, found
    allowed = compilers.Entry(**{**entry.__dict__, "float64_allowed": "documented"})
    (row,) = compilers.report((9, 0), [allowed])
    assert "float64" not in " | ".join(compilers.failures([row]))


def test_a_kernel_that_does_not_compile_fails_the_gate(compilers):
    from numba import cuda
    from numba.core import types

    def broken(x):
        x[0] = undefined_name  # noqa: F821

    entry = compilers.Entry("test.broken", lambda dtype: cuda.jit(broken),
                            lambda scalar, layout: (types.Array(scalar, 1, layout),), 32,
                            dtypes=("float32",), layouts=("C",))
    (row,) = compilers.report((9, 0), [entry])
    assert row.error and compilers.failures([row])[0].startswith("test.broken [float32, C]: does not compile")


def test_ptx_counts_find_loops_divisions_float64_and_local_memory(inventory):
    """A loop is a cycle of the control-flow graph: the cold block LLVM places after the loop, which branches
    back up to a join point, is not in one."""
    ptx = """
    div.s64 %rd1, %rd2, %rd3;
    @%p0 bra $L__cold;
$L__join:
    mov.u64 %rd10, 0;
$L__BB0_1:
    rem.s64 %rd4, %rd5, %rd6;
    @%p1 div.u64 %rd7, %rd8, %rd9;
    cvt.f64.f32 %fd1, %f1;
    add.f64 %fd2, %fd1, %fd1;
    ld.global.f64 %fd3, [%rd1];
    st.local.f32 [%rd2], %f1;
    @%p2 bra $L__BB0_1;
$L__BB0_2:
    div.s32 %r1, %r2, %r3;
    bra.uni $L__BB0_3;
$L__BB0_3:
    ret;
$L__cold:
    div.u64 %rd11, %rd12, %rd13;
    bra.uni $L__join;
"""
    counts = inventory.ptx_counts(ptx)
    assert counts == {"div64": 4, "div64_in_loops": 2, "f64": 2, "local": 1}
    looped = ptx.replace("bra.uni $L__BB0_3;", "bra.uni $L__cold;")  # now the cold block is on a cycle
    assert inventory.ptx_counts(looped)["div64_in_loops"] == 3


@pytest.mark.parametrize("registers, shared, block, expected", [
    (126, 8192, 256, 0.25),     # 126 -> 128 per thread: 2 blocks of 8 warps
    (48, 22016, 256, 0.625),    # 48 regs -> 5 blocks by registers
    (32, 0, 256, 1.0),
    (255, 0, 128, 0.125),       # 255 -> 256 per thread: 2 blocks of 4 warps
    (32, 100_000, 256, 0.25),   # shared memory: 2 blocks
    (16, 0, 32, 0.5),           # 32 blocks of one warp at most
])
def test_occupancy_follows_hoppers_limits(inventory, registers, shared, block, expected):
    assert inventory.occupancy(registers, shared, block) == pytest.approx(expected)
