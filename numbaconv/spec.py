"""ConvSpec: the one place that normalizes and validates convolution arguments.

Every public entry point (``conv2d``, the family functions, ``reference.conv2d``
and ``plan``) builds a `ConvSpec` first; no kernel runs before it exists,
and kernels never validate.  All shape arithmetic lives here.

Semantics are those of ``torch.nn.functional.conv2d``:
``H_out = floor((H + pad_top + pad_bottom - dilation*(kH - 1) - 1) / stride) + 1``
and ``padding='same'`` puts ``total // 2`` before and the rest after, where
``total = dilation*(k - 1)`` (torch's rule for uneven padding).
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any, Literal, Union, cast

import numpy as np

from .config import COMPACT_RATIO

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# ConvSpec.border_regions: a non-zero padding mode's border outputs are recomputed from their padded windows
# (instead of padding the whole input) where they are at most 1/BORDER_SHARE of the outputs
BORDER_SHARE = 64
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
ACTIVATIONS = (None, "relu", "relu6", "silu", "hardswish")
LAYOUTS = ("NCHW", "NHWC")
DEVICES = (None, "cpu", "cuda")

# The public functions' argument types (type hints; the values are checked at run time, whatever a caller's type
# checker says).  Arrays are NumPy arrays, array-likes, or CUDA arrays exposing __cuda_array_interface__ (Numba,
# CuPy, torch), whose types numbaconv does not depend on: hence Any.
Array = Any
IntOrPair = Union[int, tuple[int, int]]
Padding = Union[int, tuple[int, int], Literal["valid", "same"]]
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
Activation = Literal["relu", "relu6", "silu", "hardswish", None]
Layout = Literal["NCHW", "NHWC"]
Device = Literal["cpu", "cuda", None]

# Integer codes the kernels receive for ``activation`` (index into ACTIVATIONS).
ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}

FAMILIES = ("pointwise", "depthwise", "grouped")

# The largest value of any integer argument (stride, padding, dilation, groups, a size): int64's.
MAX_INT = 2**63 - 1


def _is_int(value) -> bool:
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def _representable(value: int, name: str, shown) -> int:
    if abs(value) > MAX_INT:
        raise ValueError(f"{name} must be at most 2**63 - 1 (int64), got {shown!r}")
    return value


def normalize_pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints -> ``(int, int)``; TypeError/ValueError naming ``name``."""
    if _is_int(value):
        value = _representable(int(value), name, value)
        return value, value
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got a sequence of length {len(value)}: {value!r}")
        if not all(_is_int(v) for v in value):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        return _representable(int(value[0]), name, value), _representable(int(value[1]), name, value)
    raise TypeError(f"{name} must be an int or a pair of ints, got {type(value).__name__} {value!r}")


def _positive_pair(value, name: str) -> tuple[int, int]:
    pair = normalize_pair(value, name)
    if min(pair) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return pair


def _shape_tuple(shape, name: str) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a shape (a sequence of ints), got {shape!r}") from None
    if not all(_is_int(d) and d >= 0 for d in dims):
        raise ValueError(f"{name} must contain non-negative ints, got {shape!r}")
    return tuple(_representable(int(d), name, shape) for d in dims)


def count(value, name: str, minimum: int = 1) -> int:
    """An int (Python or NumPy) at least ``minimum``; TypeError/ValueError naming ``name``."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return _representable(int(value), name, value)


def shape_argument(value, name: str) -> tuple[int, ...]:
    """A shape given to `plan`/`tune`: a sequence of non-negative ints (not an array)."""
    if hasattr(value, "__array__") or hasattr(value, "__cuda_array_interface__"):
        raise TypeError(f"{name} must be a shape (a tuple of ints), got an array of shape {tuple(np.shape(value))}; "
                        f"pass its .shape")
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a shape (a tuple of ints), got {type(value).__name__}")
    return _shape_tuple(value, name)


def bias_argument(bias, out_channels: int):
    """`plan`/`tune`'s ``bias``: True/False/None, a shape (a tuple of ints) or an array (its shape) -> the bias
    shape, or None for no bias."""
    if bias is None or isinstance(bias, (bool, np.bool_)):
        return (out_channels,) if bias else None
    if isinstance(bias, (tuple, list)):
        return shape_argument(bias, "bias")
    if hasattr(bias, "shape"):
        return tuple(bias.shape)
    raise TypeError(f"bias must be True/False, a shape or an array, got {type(bias).__name__}")


def problem_from_shapes(x_shape, weight_shape, bias=False, stride=1, padding=0, dilation=1, groups=1, *,
                        dtype=np.float32, padding_mode="zeros", activation=None, layout="NCHW") -> "ConvSpec":
    """The one argument parser of `numbaconv.plan` and `numbaconv.tune` (shapes, not arrays)."""
    x_shape = shape_argument(x_shape, "x_shape")
    weight_shape = shape_argument(weight_shape, "weight_shape")
    if len(weight_shape) != 4:
        raise ValueError(f"weight_shape must be 4-D (C_out, C_in/groups, kH, kW), got {weight_shape}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    return ConvSpec.from_shapes(x_shape, weight_shape, bias_argument(bias, weight_shape[0]), stride, padding,
                                dilation, groups, dtype=dtype, padding_mode=padding_mode, activation=activation,
                                layout=layout)


def check_dtypes(x_dtype, weight_dtype, bias_dtype=None, names=("x", "weight")) -> np.dtype:
    """The common dtype of x, weight (and bias); TypeError names both when they differ
    (``names``: what the caller calls its first two arrays)."""
    x_dtype = np.dtype(x_dtype)
    weight_dtype = np.dtype(weight_dtype)
    a, b = names
    if x_dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{a} and {b} must be float32 or float64 arrays of one dtype, got {a} {x_dtype} and {b} {weight_dtype}"
        )
    if weight_dtype != x_dtype:
        raise TypeError(f"{a} and {b} must have the same dtype, got {a} {x_dtype} and {b} {weight_dtype}")
    if bias_dtype is not None and np.dtype(bias_dtype) != x_dtype:
        raise TypeError(f"bias must have the dtype of x, got x {x_dtype} and bias {np.dtype(bias_dtype)}")
    return x_dtype


@dataclass(frozen=True)
class ConvSpec:
    """A validated convolution problem in NCHW terms (whatever the caller's layout)."""

    batch: int
    in_channels: int
    in_height: int
    in_width: int
    out_channels: int
    kernel_height: int
    kernel_width: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, bottom, left, right
    groups: int
    dtype: np.dtype
    has_bias: bool = False
    batched: bool = True
    layout: Layout = "NCHW"
    padding_mode: str = "zeros"
    activation: str | None = None

    # ---- derived shape arithmetic -------------------------------------------------
    @cached_property  # asked several times per call; the spec is immutable
    def out_height(self) -> int:
        top, bottom, _, _ = self.padding
        span = self.dilation[0] * (self.kernel_height - 1) + 1
        return (self.in_height + top + bottom - span) // self.stride[0] + 1

    @cached_property
    def out_width(self) -> int:
        _, _, left, right = self.padding
        span = self.dilation[1] * (self.kernel_width - 1) + 1
        return (self.in_width + left + right - span) // self.stride[1] + 1

    @property
    def padded_elements(self) -> int:
        """Elements of the padded input, N x C_in x (H + top + bottom) x (W + left + right)."""
        top, bottom, left, right = self.padding
        return self.batch * self.in_channels * (self.in_height + top + bottom) * (self.in_width + left + right)

    @property
    def in_channels_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_channels_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def reduction_length(self) -> int:
        """Multiply-adds summed into one output element: C_in/groups * kH * kW."""
        return self.in_channels_per_group * self.kernel_height * self.kernel_width

    @property
    def is_pointwise(self) -> bool:
        return self.kernel_height == 1 and self.kernel_width == 1 and self.groups == 1

    @property
    def is_depthwise(self) -> bool:
        return self.groups == self.in_channels and self.in_channels_per_group == 1 and self.in_channels > 0

    @property
    def channel_multiplier(self) -> int:
        """C_out / C_in for a depthwise convolution."""
        return self.out_channels // self.in_channels if self.in_channels else 0

    @property
    def family(self) -> str:
        """``pointwise`` (1x1, groups=1), ``depthwise`` (groups = C_in) or ``grouped`` (the rest)."""
        if self.is_pointwise:
            return "pointwise"
        if self.is_depthwise:
            return "depthwise"
        return "grouped"

    @property
    def has_padding(self) -> bool:
        return any(self.padding)

    @property
    def activation_code(self) -> int:
        return ACTIVATION_CODES[self.activation]

    @property
    def nchw_out_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_channels, self.out_height, self.out_width)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The result's shape in the caller's layout (unbatched when the input was)."""
        n, c, h, w = self.nchw_out_shape
        shape = (n, c, h, w) if self.layout == "NCHW" else (n, h, w, c)
        return shape if self.batched else shape[1:]

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels_per_group, self.kernel_height, self.kernel_width)

    @cached_property
    def kernel_view(self) -> tuple["ConvSpec", tuple[bool, bool]]:
        """The same problem as the kernels run it, and which axes (rows, columns) are gathered.

        Work and memory must follow the output, never a raw stride, padding or dilation.  Per axis:

        * an axis whose padded extent is more than ``COMPACT_RATIO`` times (outputs x taps) -- a huge
          padding or dilation, or a stride far larger than the kernel -- is **gathered**: the kernels
          see, per output o and tap t, the one input position o*stride + t*dilation - padding reads
          (zero, or the padding mode's copy of an input pixel), a size of outputs x taps with
          stride = taps, dilation 1 and no padding (`numbaconv.arrays.kernel_input` gathers it);
        * on the others a stride larger than the window's last start is lowered to it (same output).

        Ordinary layers are returned unchanged (the spec itself).
        """
        gathered, changes = [False, False], {}
        for axis in (0, 1):
            size = (self.in_height, self.in_width)[axis]
            before, after = self.padding[2 * axis: 2 * axis + 2]
            kernel = (self.kernel_height, self.kernel_width)[axis]
            stride, dilation = self.stride[axis], self.dilation[axis]
            out = (self.out_height, self.out_width)[axis]
            padded = size + before + after
            if out > 0 and padded > COMPACT_RATIO * out * kernel:
                gathered[axis] = True
                changes[axis] = (out * kernel, 0, 0, kernel, 1)
            elif out > 0 and stride > padded - dilation * (kernel - 1):
                changes[axis] = (size, before, after, max(1, padded - dilation * (kernel - 1)), dilation)
        if not changes:
            return self, (False, False)
        heights = changes.get(0, (self.in_height, *self.padding[:2], self.stride[0], self.dilation[0]))
        widths = changes.get(1, (self.in_width, *self.padding[2:], self.stride[1], self.dilation[1]))
        view = replace(self, in_height=heights[0], in_width=widths[0], padding=heights[1:3] + widths[1:3],
                       stride=(heights[3], widths[3]), dilation=(heights[4], widths[4]))
        assert view.out_height == self.out_height and view.out_width == self.out_width
        return view, (gathered[0], gathered[1])

    def band(self, images: int, rows: int) -> "ConvSpec":
        """The sub-problem of ``images`` images and ``rows`` output rows (a band of the output): the whole
        height when ``rows`` is all of them, else exactly the padded input rows the band reads, with no
        vertical padding (`numbaconv.arrays.band_input` gathers them)."""
        if rows == self.out_height:
            return replace(self, batch=images, batched=True)
        span = self.dilation[0] * (self.kernel_height - 1) + 1
        return replace(self, batch=images, batched=True, in_height=(rows - 1) * self.stride[0] + span,
                       padding=(0, 0) + self.padding[2:])

    def input_window(self, row0: int, row1: int, column0: int, column1: int) -> tuple[int, int, int, int]:
        """``(first row, rows, first column, columns)`` of the padded input that outputs ``[row0, row1) x
        [column0, column1)`` read (counted in the padded input's rows and columns)."""
        rows = (row1 - row0 - 1) * self.stride[0] + (self.kernel_height - 1) * self.dilation[0] + 1
        columns = (column1 - column0 - 1) * self.stride[1] + (self.kernel_width - 1) * self.dilation[1] + 1
        return row0 * self.stride[0], rows, column0 * self.stride[1], columns

    @cached_property
    def border_regions(self) -> tuple[tuple[int, int, int, int], ...] | None:
        """`border_rectangles` at most 1/BORDER_SHARE of the outputs: where recomputing the border rectangles
        from their padded windows (`arrays.padded_window`, one kernel call each) beats padding the whole
        input (measured on depthwise 3x3 layers, 2026-11-26: a 512 x 512 plane 1.5-1.6x faster; 224 x 224 and
        smaller, where the border is 1/56 of the outputs or more, slower)."""
        return self.border_rectangles(BORDER_SHARE)

    def border_rectangles(self, share: int) -> tuple[tuple[int, int, int, int], ...] | None:
        """The output rectangles ``(row0, row1, column0, column1)`` whose windows reach into the padding (the
        top rows, the bottom rows, then the left and right columns between them), or None where they are more
        than 1/``share`` of the outputs (or the layer has no padding).  Every other output reads the input
        alone, whatever the padding mode: a kernel can compute the whole output with zero padding, straight
        from the input, and recompute only these rectangles under the padding mode, instead of padding the
        whole input first."""
        if not self.has_padding:
            return None
        top, _, left, _ = self.padding
        middle = []
        for size, out, before, stride, dilation, kernel in (
                (self.in_height, self.out_height, top, self.stride[0], self.dilation[0], self.kernel_height),
                (self.in_width, self.out_width, left, self.stride[1], self.dilation[1], self.kernel_width)):
            span = (kernel - 1) * dilation + 1
            first = min(out, -(-before // stride))  # o * stride < before: reads the padding before
            last = max(first, min(out, -(-(size + before - span + 1) // stride)))  # from here on, the padding after
            middle.append((first, last))
        (rows0, rows1), (columns0, columns1) = middle
        border = self.out_height * self.out_width - (rows1 - rows0) * (columns1 - columns0)
        if share * border > self.out_height * self.out_width:
            return None
        regions = [region for region in ((0, rows0, 0, self.out_width), (rows1, self.out_height, 0, self.out_width),
                                         (rows0, rows1, 0, columns0), (rows0, rows1, columns1, self.out_width))
                   if region[1] > region[0] and region[3] > region[2]]
        return tuple(regions)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["dtype"] = str(self.dtype)
        d.update(out_shape=self.out_shape, family=self.family)
        return d

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def from_shapes(
        cls,
        x_shape,
        weight_shape,
        bias_shape=None,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        *,
        dtype=np.float32,
        padding_mode="zeros",
        activation=None,
        layout="NCHW",
    ) -> "ConvSpec":
        """Validate everything that can be checked from shapes and options alone."""
        dtype = np.dtype(dtype)
        if dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if not isinstance(layout, str) or layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if activation is not None and (not isinstance(activation, str) or activation not in ACTIVATIONS):
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")

        x_shape = _shape_tuple(x_shape, "x.shape")
        weight_shape = _shape_tuple(weight_shape, "weight.shape")
        dims = "(N, H, W, C) or (H, W, C)" if layout == "NHWC" else "(N, C, H, W) or (C, H, W)"
        if len(x_shape) not in (3, 4):
            raise ValueError(f"x must be 4-D {dims}, got {len(x_shape)}-D shape {x_shape}")
        batched = len(x_shape) == 4
        full = x_shape if batched else (1,) + x_shape
        if layout == "NHWC":
            batch, height, width, in_channels = full
        else:
            batch, in_channels, height, width = full
        if not batched:
            batch = 1
        if len(weight_shape) != 4:
            raise ValueError(
                f"weight must be 4-D (C_out, C_in/groups, kH, kW), got {len(weight_shape)}-D shape {weight_shape}"
            )
        out_channels, weight_in_channels, kernel_height, kernel_width = weight_shape
        if kernel_height < 1 or kernel_width < 1:
            raise ValueError(f"weight must have a kernel of at least 1x1, got weight.shape {weight_shape}")

        if not _is_int(groups):
            raise TypeError(f"groups must be an int, got {type(groups).__name__} {groups!r}")
        groups = _representable(int(groups), "groups", groups)
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        # how x was read, for the messages about channels (NCHW data passed with layout='NHWC' and the like)
        read = f"x.shape {x_shape} read as layout={layout!r} {dims}"
        if in_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) must be divisible by groups ({groups}); {read}")
        if out_channels % groups:
            raise ValueError(f"out_channels (weight.shape[0] = {out_channels}) must be divisible by groups ({groups})")
        if weight_in_channels * groups != in_channels:
            raise ValueError(
                f"weight.shape[1] ({weight_in_channels}) x groups ({groups}) must equal the input's channels "
                f"({in_channels}); {read}, weight.shape {weight_shape}"
            )
        if bias_shape is not None:
            bias_shape = _shape_tuple(bias_shape, "bias.shape")
            if bias_shape != (out_channels,):
                raise ValueError(f"bias must have shape ({out_channels},) (C_out), got {bias_shape}")

        stride = _positive_pair(stride, "stride")
        dilation = _positive_pair(dilation, "dilation")
        pads = _resolve_padding(padding, stride, dilation, (kernel_height, kernel_width))

        pad_h, pad_w = max(pads[:2]), max(pads[2:])
        if padding_mode == "reflect" and ((pad_h and pad_h >= height) or (pad_w and pad_w >= width)):
            raise ValueError(
                f"padding_mode='reflect' needs padding smaller than the input: padding {pads} "
                f"(top, bottom, left, right) for an input of {height}x{width}"
            )
        if padding_mode == "circular" and (pad_h > height or pad_w > width):
            raise ValueError(
                f"padding_mode='circular' needs padding no larger than the input: padding {pads} "
                f"(top, bottom, left, right) for an input of {height}x{width}"
            )
        if padding_mode == "replicate" and any(pads) and (height == 0 or width == 0):
            raise ValueError(f"padding_mode='replicate' needs a non-empty input, got {height}x{width}")

        padded_h = height + pads[0] + pads[1]
        padded_w = width + pads[2] + pads[3]
        span_h = dilation[0] * (kernel_height - 1) + 1
        span_w = dilation[1] * (kernel_width - 1) + 1
        if span_h > padded_h or span_w > padded_w:
            raise ValueError(
                f"the kernel ({kernel_height}x{kernel_width} with dilation {dilation}, spanning {span_h}x{span_w}) "
                f"is larger than the padded input ({padded_h}x{padded_w}: {height}x{width} plus padding {pads})"
            )
        return cls(
            batch=batch,
            in_channels=in_channels,
            in_height=height,
            in_width=width,
            out_channels=out_channels,
            kernel_height=kernel_height,
            kernel_width=kernel_width,
            stride=stride,
            dilation=dilation,
            padding=pads,
            groups=groups,
            dtype=dtype,
            has_bias=bias_shape is not None,
            batched=batched,
            layout=cast(Layout, layout),  # checked above: one of LAYOUTS
            padding_mode=padding_mode,
            activation=activation,
        )


def _resolve_padding(padding, stride, dilation, kernel) -> tuple[int, int, int, int]:
    """int / pair / 'valid' / 'same' -> (top, bottom, left, right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' is only supported with stride 1, got stride {stride}")
            pads = []
            for d, k in zip(dilation, kernel):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
    ph, pw = normalize_pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return (ph, ph, pw, pw)
