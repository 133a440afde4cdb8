"""ShuffleNet's channel shuffle: after a grouped convolution, interleave the groups' channels so the
next grouped convolution sees channels from every group.

Channel ``g*(C/G) + i`` moves to position ``i*G + g``: view the channels as a (G, C/G) matrix and
transpose it.  Same result as ``torch.nn.ChannelShuffle(groups)``.
"""

from __future__ import annotations

import numpy as np

from . import arrays
from .spec import Array, Layout, count


def channel_shuffle(x: Array, groups: int, *, layout: Layout = "NCHW") -> np.ndarray:
    """x (N, C, H, W) or (C, H, W) (channels last with ``layout='NHWC'``) with its channels shuffled
    across ``groups``; a new C-contiguous array of x's dtype (x is not modified)."""
    x = arrays.as_host_array(x, "x")
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be one of ('NCHW', 'NHWC'), got {layout!r}")
    groups = count(groups, "groups")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be 3-D or 4-D, got shape {x.shape}")
    axis = x.ndim - 1 if layout == "NHWC" else x.ndim - 3
    channels = x.shape[axis]
    if channels % groups:
        raise ValueError(f"groups must divide the channels ({channels}), got groups={groups}")
    if channels == 0:
        return np.ascontiguousarray(x).copy()  # nothing to shuffle (any groups divides 0 channels)
    split = x.shape[:axis] + (int(groups), channels // groups) + x.shape[axis + 1:]
    shuffled = np.swapaxes(np.reshape(x, split), axis, axis + 1)  # a view when x is contiguous
    return np.ascontiguousarray(shuffled).reshape(x.shape)
