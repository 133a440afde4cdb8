"""numbaconv: Numba-compiled pointwise, grouped and depthwise convolution kernels.

>>> import numpy as np, numbaconv
>>> x = np.ones((1, 8, 5, 5), np.float32)
>>> numbaconv.depthwise_conv2d(x, np.ones((8, 1, 3, 3), np.float32), padding=1).shape
(1, 8, 5, 5)
"""

import os

# Numba's OpenMP workers spin for ~300k iterations (about 8 ms here) after each parallel
# region, holding the cores that the next NumPy/BLAS call needs: a BLAS product followed
# by one of our kernels then costs ~8 ms extra.  A short spin keeps back-to-back kernels
# fast and frees the cores at once.  Only a default: a value the user set wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
# The same from the other side: after each call, numpy's OpenBLAS workers spin for 2**28 cycles
# (~80 ms) by default, and a Numba kernel launched meanwhile waits a whole scheduler slice (~8 ms)
# for a core.  2**4 cycles makes them sleep at once.  It takes effect only if numpy is not yet
# imported (OpenBLAS reads it when it loads): import numbaconv first, or export it yourself.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import cost, reference  # noqa: E402
from .api import conv2d, depthwise_conv2d, grouped_conv2d, pointwise_conv2d  # noqa: E402
from .convolution1d import conv1d  # noqa: E402
from .dispatch import Plan, algorithms, plan  # noqa: E402
from .grad import conv2d_grad_bias, conv2d_grad_input, conv2d_grad_weight  # noqa: E402
from .separable import separable_conv2d  # noqa: E402
from .shuffle import channel_shuffle  # noqa: E402
from .spec import ConvSpec  # noqa: E402
from .tuning import Tuned, tune  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ConvSpec",
    "channel_shuffle",
    "Plan",
    "algorithms",
    "conv1d",
    "conv2d",
    "conv2d_grad_bias",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "cost",
    "depthwise_conv2d",
    "grouped_conv2d",
    "plan",
    "pointwise_conv2d",
    "reference",
    "separable_conv2d",
    "tune",
    "Tuned",
    "__version__",
]
