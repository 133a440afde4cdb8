"""Tunables, in one place.

Kernels read these module constants at compile time (Numba freezes globals), so changing one needs a
fresh process *and* a cleared on-disk cache: Numba keys a cached kernel on its own source file, not on
this one, so after an edit here the kernels load compiled with the old values while the Python side
sizes their buffers with the new ones (a heap corruption, seen with GEMM_TILE_VECTORS = 3).  Clear it
with ``find numbaconv -name '*.nbi' -delete`` (or touch the kernel modules).
"""

# Floating-point flags for every CPU kernel.  Only ``contract`` (fuse a*b+c
# into one FMA, which is at least as accurate as the separate operations):
# no ``nnan``/``ninf``/``reassoc``, so NaN and Inf propagate exactly as in the
# NumPy reference and the summation order is the one written in the loops.
FASTMATH = {"contract"}

# Implicit-GEMM register tile (grouped / dense / explicit pointwise kernel):
# 4 output channels (fixed by the kernel's unrolled body) x TILE_PIXELS output
# pixels are accumulated in registers across the whole reduction
# (C_in/groups x kH x kW).  16 float32 = one AVX-512 vector per channel.
TILE_PIXELS = 16

# Pixels of one parallel task of that kernel.  Tasks are (image, group, plane
# segment, pixel tile, channel block) with the channel block varying fastest, so
# consecutive tasks of one thread reuse the same input tile from cache.  256
# float32 pixels x C_in/G keeps the input tile in L2 for real networks' channels.
TASK_PIXELS = 256

# Elementwise passes over fewer elements than this run serially: waking Numba's thread pool
# costs ~50-80 us on this 2-core VM, more than a serial pass over 128K float32 elements.
PARALLEL_MIN_ELEMENTS = 1 << 17

# Kernels whose work (multiply-adds) is below this run their serial compilation, for the same reason.
PARALLEL_MIN_WORK = 1 << 15

# Depthwise kernel tiling (cpu/depthwise.py): a task's phase buffer of padded input rows holds at
# most this many elements (16K float32 = 64 KiB, inside L2), and a task computes about
# this many outputs (several small planes per task, so the per-task set-up is amortized).
DEPTHWISE_BUFFER_ELEMENTS = 16384
# Depthwise, channels last, under a reflect/replicate/circular border: where the outputs that read the padding
# are at most 1/DEPTHWISE_BORDER_SHARE of them, the kernel runs with zero padding straight from the input and
# one border kernel recomputes that frame (no padded copy of the input); else the input is padded as a whole
# first.  Measured (3x3, padding 1, 2026-11-26): the frame 1/7 of a 28 x 28 plane 1.66x faster than the copy,
# 1/4 of a 14 x 14 plane 0.82x.
DEPTHWISE_BORDER_SHARE = 6
DEPTHWISE_TASK_OUTPUTS = 1 << 14

# Grouped/dense convolutions with at least this many output channels per group go to BLAS (im2col
# then a batched sgemm over the groups) by default; thinner groups (ResNeXt's 4 per group) to the
# explicit implicit-GEMM kernel.  Measured on the full suite's grouped layers (issue 5).
BLAS_MIN_OUT_PER_GROUP = 8
# In latency mode (NUMBACONV_LATENCY=1) Numba's workers spin between kernels on their bound cores, and a
# BLAS product large enough for OpenBLAS to thread (its worker then waits for a spinning core) ran 5-8x
# slower: grouped_blas serves only per-group products of at most this many multiply-adds there
# (C_out/G x pixels x C_in/G*kH*kW; ResNeXt's g32 layers ~0.45 M, ResNet-50's stem 118 M).
LATENCY_BLAS_MAX_PRODUCT = 1 << 22
# grouped_gemm packs the weights on every call (a frozen weight's packing is kept): where a dense layer has more
# than this many weights per output value, grouped_blas's im2col is cheaper by default (a grouped layer is G small
# products for BLAS, slower still: ResNeXt's 1024-channel g32 3x3 ran 0.16x the best peer on it).  Measured (ResNet-50, batch 1,
# frozen): the 128-channel 3x3 stride 2 at 1.5x ran 1.18-1.29 ms against BLAS's 1.53-2.05; 512 channels at 7x7
# (94x) packs 9.4 MiB per call, 1.0 ms.
GEMM_MAX_WEIGHTS_PER_OUTPUT = 4

# separable_conv2d (separable.py): the depthwise result of one chunk of the batch (whole images, or a
# band of rows) holds at most this many values, so it is still in cache when the pointwise product
# reads it.  4M float32 = 16 MiB, half this machine's 32 MiB L3.  Measured (issue 5): chunks of 1 MiB
# (one core's L2) ran 0.7-0.9x the unfused pair at batch 1 and 8, because every chunk is two more
# parallel regions while the intermediate fits the L3 anyway; so only intermediates beyond half the
# L3 are cut.
SEPARABLE_CHUNK_ELEMENTS = 1 << 22

# Degenerate geometry (spec.ConvSpec.kernel_view): an axis whose padded input is more than this many
# times (outputs x taps) long -- a huge padding, dilation or stride -- is gathered into exactly the
# positions the taps read, so work and memory follow the output.  Real layers are far below it
# (a 3x3 stride-2 layer's ratio is about 2/3).
COMPACT_RATIO = 4

# Peak memory (dispatch.run_bounded): a kernel call whose temporaries (padded copies, im2col, phase
# splits) would exceed this x threads runs in pieces of the batch, or in bands of output rows of one
# image, each within this budget -- so on large problems peak memory stays near the output's size
# (plus the budget) whatever the batch or image size.  16 MiB per thread (32 MiB on this
# 2-core machine, its L3): every batch-1 layer of the nine networks runs in one piece (4 MiB cut
# ResNeXt's stride-2 grouped layer into row bands and cost it 13-55 % of its time, measured).
WORKSPACE_BYTES_PER_THREAD = 16 << 20

# Kernel temporaries up to this size are taken from a buffer kept per thread (arrays.scratch) instead of
# being allocated per call: glibc hands freed blocks of a few MiB back to the system and every page of the
# next call's block faults in again (~1 us a page on this VM).  At most this much is held per thread and slot.
SCRATCH_BYTES = 8 << 20

# The packed GEMM (cpu/gemm.py, cpu/simd.py): a register tile of GEMM_TILE_ROWS rows x GEMM_TILE_VECTORS
# 64-byte vectors (12 x 32 float32: 24 of AVX-512's 32 vector registers hold accumulators), K blocks of
# GEMM_DEPTH (the A panel, 12 x 384 float32 = 18 KiB, stays in the 48 KiB L1 while the B panels of
# 384 x 32 = 48 KiB stream through from L2), and tasks of at most GEMM_BLOCK_ROWS x GEMM_BLOCK_COLUMNS of C
# (a K block of their operands, 384 x 384 and 384 x 512 float32, 1.3 MiB together, stays in the 2 MiB L2).
# Measured one thread, the suite's pointwise GEMMs with packed weights (issue 15): K blocks of 384 ran
# 1.00-1.16x those of 256 (512 and 768 no better); streaming the A panels past an L1-resident B panel
# instead ran 0.85-0.9x on short reductions (MobileNetV2's 16->96).
GEMM_TILE_ROWS = 12
GEMM_TILE_VECTORS = 2
GEMM_DEPTH = 384
GEMM_BLOCK_ROWS = 384
GEMM_BLOCK_COLUMNS = 512
# Images of one output pixel (squeeze-and-excitation layers) with at least this many input channels run as a
# matrix-vector product per image (cpu/gemm.gemv: W read once, unpacked); shorter reductions as the GEMM.
GEMV_MIN_DEPTH = 64
# ... and a single image of one pixel runs it whatever its depth, serially below this many multiply-adds.  Measured
# (frozen weights, 2-core VM, whole conv2d calls): at batch 1 the matrix-vector kernel against the GEMM, 16.6 against
# 24.2 us (48->1152), 7.8 against 13.1 (10->240), 6.6 against 11.6 (32->8); serial against parallel, 10.9 against
# 15.9 us at 55 K multiply-adds (1152->48), 36.4 against 28.8 at 442 K.  At batch 8 a short reduction with many
# outputs stays on the GEMM (48->1152: 25 us against 58).
GEMV_PARALLEL_MIN_WORK = 1 << 17
# Packed weights of frozen (read-only) weight arrays are kept for later calls (cpu/packcache.py), up to this
# many bytes in all, least recently used first out: 128 MiB holds the packed 1x1 weights of any one network of
# the suite (ResNeXt-50's, the largest, 82 MiB in float32; ResNet-50's 46 MiB, MobileNetV2's 8 MiB).
PACKED_WEIGHTS_BYTES = 128 << 20
