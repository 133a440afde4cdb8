"""numbaconv: Numba-compiled pointwise, grouped and depthwise convolution kernels.

>>> import numpy as np, numbaconv
>>> x = np.ones((1, 8, 5, 5), np.float32)
>>> numbaconv.depthwise_conv2d(x, np.ones((8, 1, 3, 3), np.float32), padding=1).shape
(1, 8, 5, 5)
"""

# First: the threading layer (TBB where installed: fork- and thread-safe) and the thread pools' environment
# defaults, before anything compiles or NumPy's BLAS loads (numbaconv.runtime).
from . import runtime  # noqa: E402,F401  isort: skip

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
