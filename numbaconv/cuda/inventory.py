"""What the CUDA kernels compile to, without a GPU: an inventory of every kernel and a gate on it.

The simulator checks results, not what the hardware runs.  This module compiles every
``cuda.jit`` kernel of ``numbaconv.cuda`` with every argument signature the launches use (both
dtypes; C-contiguous arrays and strided views, which Numba types as layout 'A') to PTX for a
chosen compute capability through NVRTC/NVVM (`numba.cuda.compile_ptx`), assembles the PTX with
``ptxas -v`` and reports, per kernel and signature:

* registers per thread, static shared memory, stack frame and spill bytes (ptxas);
* local-memory instructions, 64-bit integer divisions and remainders (all, and those inside a
  loop: between a label and a backward branch to it) and float64 instructions (PTX);
* the occupancy the launch's block size allows (registers, shared memory, threads; see
  `occupancy`).

`failures` is the gate: a kernel fails when it does not compile, spills, uses local memory,
divides 64-bit integers inside a loop, or does float64 arithmetic in its float32 build, except
where its entry documents a float64 accumulation.  ``numbaconv info --cuda-kernels`` prints
the table; ``tests/test_cuda_gate.py`` runs the gate in CI, and fails when a kernel is added
without an entry here.

Needs numba-cuda and NVIDIA's compiler wheels (``pip install nvidia-cuda-nvcc-cu12
nvidia-cuda-nvrtc-cu12``: NVRTC to emit PTX, ptxas to assemble it); no GPU and no driver.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

# sm_90 (Hopper) multiprocessor limits, used for the occupancy estimate
SM_REGISTERS = 65536
SM_MAX_WARPS = 64
SM_MAX_BLOCKS = 32
SM_SHARED_BYTES = 233472  # 228 KiB per multiprocessor
BLOCK_RESERVED_SHARED = 1024  # the runtime's reservation per block
REGISTER_GRANULE = 256  # registers are allocated per warp in units of 256


@dataclass(frozen=True)
class Entry:
    """One kernel: how to get its dispatcher and argument types for a dtype and array layout, the
    block size of its launch, and why float64 arithmetic is allowed in its float32 build (or None)."""

    name: str
    dispatcher: object  # dtype name -> the cuda.jit dispatcher
    arguments: object  # (numba scalar type, array layout 'C'/'A') -> tuple of argument types
    block: int
    float64_allowed: str | None = None
    dtypes: tuple = ("float32", "float64")
    layouts: tuple = ("C", "A")


def entries() -> list[Entry]:
    """Every kernel the dispatcher and the backward path launch, with the signatures they launch."""
    from numba.core import types

    from . import depthwise, epilogue, gemm, grad, launch

    i64 = types.int64

    def arr(scalar, ndim, layout):
        return types.Array(scalar, ndim, layout)

    def gemm_args(s, lay):
        return (arr(s, 4, lay), arr(s, 4, lay), arr(s, 1, "C"), arr(s, 4, lay)) + (i64,) * 9

    def depthwise_args(s, lay):
        return (arr(s, 4, lay), arr(s, 4, lay), arr(s, 1, "C"), arr(s, 4, lay)) + (i64,) * 11

    def weight_gemm_args(s, lay):
        return (arr(s, 4, lay), arr(s, 4, lay), arr(types.float64, 3, "C")) + (i64,) * 10

    f64_pieces = "sums partial products into float64 pieces (documented: grad.py, Precision and determinism)"
    return [
        Entry("gemm.implicit_gemm", gemm.KERNELS.__getitem__, gemm_args, launch.GEMM_BLOCK[0] * launch.GEMM_BLOCK[1]),
        Entry("gemm.split_sum", gemm.SPLIT_SUM.__getitem__,
              lambda s, lay: (arr(s, 4, "C"), arr(s, 1, "C"), arr(s, 4, lay), i64), launch.ELEMENT_THREADS),
        Entry("depthwise.depthwise", depthwise.KERNELS.__getitem__, depthwise_args, launch.DEPTHWISE_THREADS),
        Entry("epilogue.pad_copy", lambda d: epilogue.pad_copy,
              lambda s, lay: (arr(s, 4, lay), arr(s, 4, "C"), i64, i64, i64), launch.ELEMENT_THREADS),
        Entry("epilogue.gather_copy", lambda d: epilogue.gather_copy,
              lambda s, lay: (arr(s, 4, lay), arr(s, 4, "C"), arr(i64, 1, "C"), arr(i64, 1, "C")),
              launch.ELEMENT_THREADS),
        Entry("grad.flip_transpose", lambda d: grad.flip_transpose,
              lambda s, lay: (arr(s, 4, lay), arr(s, 4, "C"), i64), launch.ELEMENT_THREADS),
        Entry("grad.upsample", lambda d: grad.upsample,
              lambda s, lay: (arr(s, 4, lay), arr(s, 4, "C"), i64, i64), launch.ELEMENT_THREADS),
        Entry("grad.fold", lambda d: grad.fold,
              lambda s, lay: (arr(s, 4, "C"), arr(s, 4, lay)) + (arr(i64, 1, "C"),) * 4, launch.ELEMENT_THREADS,
              "adds a pixel's border copies in float64 (documented: fold)"),
        Entry("grad.add_pieces", lambda d: grad.add_pieces,
              lambda s, lay: (arr(types.float64, 2, "C"), arr(s, 1, "C")), launch.ELEMENT_THREADS,
              "adds the float64 pieces, rounds once (documented: add_pieces)", layouts=("C",)),
        Entry("grad.depthwise_weight", lambda d: grad.depthwise_weight,
              lambda s, lay: (arr(s, 4, lay), arr(s, 4, lay), arr(types.float64, 2, "C")) + (i64,) * 9,
              launch.REDUCE_THREADS, f64_pieces),
        Entry("grad.channel_sums", lambda d: grad.channel_sums,
              lambda s, lay: (arr(s, 4, lay), arr(types.float64, 2, "C"), i64), launch.REDUCE_THREADS, f64_pieces),
        Entry("grad.weight_gemm", grad.WEIGHT_GEMM.__getitem__, weight_gemm_args,
              launch.GRAD_BLOCK[0] * launch.GRAD_BLOCK[1], f64_pieces),
    ]


def defined_kernels() -> set[str]:
    """The names ('module.function') of every cuda.jit kernel (not device function) in numbaconv.cuda's
    modules, found by walking their globals and their KERNELS-style dicts: what `entries` must cover."""
    import importlib
    import pkgutil

    from numba.cuda.dispatcher import CUDADispatcher

    from .. import cuda as package

    found = set()
    for info in pkgutil.iter_modules(package.__path__):
        if info.name == "inventory":
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        values = list(vars(module).values())
        for value in list(values):
            if isinstance(value, dict):
                values.extend(value.values())
        for value in values:
            if isinstance(value, CUDADispatcher) and not value.targetoptions.get("device", False):
                found.add(f"{info.name}.{value.py_func.__name__}")
    return found


def ptxas_path() -> str | None:
    """ptxas from the nvidia-cuda-nvcc wheel, else from PATH or CUDA_HOME; None if absent."""
    try:
        import nvidia.cuda_nvcc as nvcc  # the pip wheel

        for base in getattr(nvcc, "__path__", []):
            candidate = os.path.join(base, "bin", "ptxas")
            if os.path.isfile(candidate):
                return candidate
    except ImportError:
        pass
    found = shutil.which("ptxas")
    if found:
        return found
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.path.isfile(os.path.join(home, "bin", "ptxas")):
        return os.path.join(home, "bin", "ptxas")
    return None


_LABEL = re.compile(r"^\s*(\$?[\w$]+):")
_BRANCH = re.compile(r"^\s*(@!?%p\d+\s+)?bra(?:\.uni)?\s+(\$?[\w$]+)\s*;")
_RETURN = re.compile(r"^\s*(?:ret|exit)\s*;")
_DIV64 = re.compile(r"^\s*(?:@!?%p\d+\s+)?(div|rem)\.[su]64\b")
_F64 = re.compile(r"^\s*(?:@!?%p\d+\s+)?([a-z]+(?:\.[a-z0-9]+)*\.f64\b[^\s]*)")
_LOCAL = re.compile(r"^\s*(?:@!?%p\d+\s+)?(?:ld|st)\.local\b")


def _blocks(lines):
    """The PTX's basic blocks: (first line, last line, successor block indices)."""
    starts, labels = [0], {}
    for number, line in enumerate(lines):
        label = _LABEL.match(line)
        if label:
            labels[label.group(1)] = number
            starts.append(number)
        elif _BRANCH.match(line) or _RETURN.match(line):
            starts.append(number + 1)
    starts = sorted(set(start for start in starts if start < len(lines)))
    index_of = {start: i for i, start in enumerate(starts)}
    blocks = []
    for i, start in enumerate(starts):
        end = (starts[i + 1] if i + 1 < len(starts) else len(lines)) - 1
        successors, falls_through = [], True
        for line in lines[start:end + 1]:
            branch = _BRANCH.match(line)
            if branch and branch.group(2) in labels:
                successors.append(index_of[labels[branch.group(2)]])
                falls_through = bool(branch.group(1))  # a predicated branch may fall through
            elif _RETURN.match(line):
                falls_through = False
        if falls_through and i + 1 < len(starts):
            successors.append(i + 1)
        blocks.append((start, end, successors))
    return blocks


def _in_cycles(blocks) -> set:
    """Indices of the blocks on a cycle of the control-flow graph (Tarjan's strongly connected components)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], set()
    counter = [0]

    def visit(root):
        work = [(root, iter(blocks[root][2]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter[0]
                    counter[0] += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(blocks[successor][2])))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in blocks[node][2]:
                        found.update(component)

    for block in range(len(blocks)):
        if block not in index:
            visit(block)
    return found


def ptx_counts(ptx: str) -> dict:
    """Counts over the PTX instructions: 64-bit div/rem (all, and those in a loop: a block on a cycle
    of the control-flow graph), float64 instructions (conversions included; loads, stores and moves
    of float64 data not), local-memory loads and stores."""
    lines = ptx.splitlines()
    blocks = _blocks(lines)
    in_loop = [False] * len(lines)
    for block in _in_cycles(blocks):
        start, end, _ = blocks[block]
        for number in range(start, end + 1):
            in_loop[number] = True
    counts = {"div64": 0, "div64_in_loops": 0, "f64": 0, "local": 0}
    for number, line in enumerate(lines):
        if _DIV64.match(line):
            counts["div64"] += 1
            counts["div64_in_loops"] += in_loop[number]
        match = _F64.match(line)
        if match and not match.group(1).startswith(("ld.", "st.", "mov.")):
            counts["f64"] += 1
        if _LOCAL.match(line):
            counts["local"] += 1
    return counts


_USED = re.compile(r"Used (\d+) registers")
_SHARED = re.compile(r"(\d+) bytes smem")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def ptxas_counts(ptx: str, cc=(9, 0), ptxas: str | None = None) -> dict:
    """registers, shared bytes, stack frame and spill bytes that ptxas -v reports for one kernel."""
    ptxas = ptxas or ptxas_path()
    if ptxas is None:
        raise FileNotFoundError("ptxas not found: pip install nvidia-cuda-nvcc-cu12 (or put CUDA's bin on PATH)")
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "kernel.ptx")
        with open(source, "w") as handle:
            handle.write(ptx)
        done = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", source, "-o", os.path.join(folder, "k.cubin")],
                              capture_output=True, text=True, check=False)
    text = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"ptxas failed: {text.strip()}")
    used, frame, shared = _USED.search(text), _FRAME.search(text), _SHARED.search(text)
    if used is None or frame is None:
        raise RuntimeError(f"unexpected ptxas output: {text.strip()}")
    return {"registers": int(used.group(1)), "shared_bytes": int(shared.group(1)) if shared else 0,
            "stack_bytes": int(frame.group(1)), "spill_stores": int(frame.group(2)),
            "spill_loads": int(frame.group(3))}


def occupancy(registers: int, shared_bytes: int, block: int) -> float:
    """Resident warps / the multiprocessor's 64 that registers, shared memory and threads allow
    for blocks of ``block`` threads (Hopper's limits)."""
    warps = math.ceil(block / 32)
    per_warp = math.ceil(max(registers, 1) * 32 / REGISTER_GRANULE) * REGISTER_GRANULE
    by_registers = (SM_REGISTERS // per_warp) // warps
    by_shared = SM_SHARED_BYTES // (shared_bytes + BLOCK_RESERVED_SHARED)
    by_threads = SM_MAX_WARPS // warps
    blocks = min(by_registers, by_shared, by_threads, SM_MAX_BLOCKS)
    return blocks * warps / SM_MAX_WARPS


@dataclass
class Row:
    kernel: str
    dtype: str
    layout: str
    block: int
    error: str | None = None
    counts: dict = field(default_factory=dict)
    float64_allowed: str | None = None

    @property
    def occupancy(self) -> float | None:
        if self.error or not self.counts:
            return None
        return occupancy(self.counts["registers"], self.counts["shared_bytes"], self.block)


def report(cc=(9, 0), selected: list[Entry] | None = None) -> list[Row]:
    """Compile every entry for every dtype and layout; one Row each (``error`` set where it fails)."""
    from numba import cuda
    from numba.core import types

    ptxas = ptxas_path()
    rows = []
    for entry in selected if selected is not None else entries():
        for dtype in entry.dtypes:
            for layout in entry.layouts:
                row = Row(entry.name, dtype, layout, entry.block, float64_allowed=entry.float64_allowed)
                rows.append(row)
                try:
                    function = entry.dispatcher(dtype)
                    signature = entry.arguments(getattr(types, dtype), layout)
                    options = {name: function.targetoptions[name] for name in ("launch_bounds", "fastmath")
                               if function.targetoptions.get(name)}  # as the kernel's own compile gets them
                    ptx, _ = cuda.compile_ptx(function.py_func, signature, cc=cc, **options)
                    row.counts = {**ptx_counts(ptx), **ptxas_counts(ptx, cc, ptxas)}
                except Exception as exc:  # reported, and the gate fails on it
                    row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return rows


def failures(rows: list[Row]) -> list[str]:
    """The gate: one line per broken rule."""
    found = []
    for row in rows:
        where = f"{row.kernel} [{row.dtype}, {row.layout}]"
        if row.error:
            found.append(f"{where}: does not compile ({row.error})")
            continue
        c = row.counts
        if c["spill_stores"] or c["spill_loads"]:
            found.append(f"{where}: spills ({c['spill_stores']} bytes stored, {c['spill_loads']} loaded)")
        if c["stack_bytes"] or c["local"]:
            found.append(f"{where}: uses local memory ({c['stack_bytes']} bytes stack frame, {c['local']} "
                         "local loads/stores in the PTX)")
        if c["div64_in_loops"]:
            found.append(f"{where}: {c['div64_in_loops']} 64-bit integer divisions/remainders inside loops")
        if row.dtype == "float32" and c["f64"] and not row.float64_allowed:
            found.append(f"{where}: {c['f64']} float64 instructions in a float32 kernel")
    return found


def table(rows: list[Row]) -> str:
    """The inventory as aligned text, one line per kernel, dtype and layout."""
    head = (f"{'kernel':24s} {'dtype':7s} {'lay':3s} {'block':>5s} {'regs':>4s} {'smem':>6s} {'stack':>5s} "
            f"{'spill':>5s} {'local':>5s} {'div64':>5s} {'inloop':>6s} {'f64':>4s} {'occup':>5s}")
    lines = [head]
    for row in rows:
        if row.error:
            lines.append(f"{row.kernel:24s} {row.dtype:7s} {row.layout:3s} error: {row.error}")
            continue
        c = row.counts
        f64 = f"{c['f64']}{'*' if row.float64_allowed and c['f64'] else ''}"
        lines.append(f"{row.kernel:24s} {row.dtype:7s} {row.layout:3s} {row.block:5d} {c['registers']:4d} "
                     f"{c['shared_bytes']:6d} {c['stack_bytes']:5d} {c['spill_stores'] + c['spill_loads']:5d} "
                     f"{c['local']:5d} {c['div64']:5d} {c['div64_in_loops']:6d} {f64:>4s} {row.occupancy:5.0%}")
    lines.append("* float64 allowed in the float32 build: a documented float64 accumulation")
    return "\n".join(lines)
