"""numbaconv: Numba-compiled pointwise, grouped and depthwise convolution kernels.

>>> import numpy as np, numbaconv
>>> x = np.ones((1, 8, 5, 5), np.float32)
>>> numbaconv.depthwise_conv2d(x, np.ones((8, 1, 3, 3), np.float32), padding=1).shape
(1, 8, 5, 5)
"""

from . import cost, reference
from .api import conv2d, depthwise_conv2d, grouped_conv2d, pointwise_conv2d
from .dispatch import Plan, algorithms, plan
from .spec import ConvSpec

__version__ = "0.1.0"

__all__ = [
    "ConvSpec",
    "Plan",
    "algorithms",
    "conv2d",
    "cost",
    "depthwise_conv2d",
    "grouped_conv2d",
    "plan",
    "pointwise_conv2d",
    "reference",
    "__version__",
]
