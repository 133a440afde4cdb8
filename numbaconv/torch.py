"""PyTorch bridge: numbaconv's forward and backward kernels inside torch's autograd.

    from numbaconv.torch import Conv2d
    layer = Conv2d(32, 32, 3, padding=1, groups=32)   # nn.Conv2d's constructor and state_dict

torch is optional: importing this module needs it, nothing else in numbaconv does.  CPU tensors
are handed to the kernels as NumPy views (``Tensor.numpy()`` shares memory: no copies) and the
results wrapped back with ``torch.from_numpy``.  float32 and float64.

CUDA tensors run numbaconv's CUDA kernels in both directions, handed over through
``__cuda_array_interface__`` (no copies) and launched on torch's current stream.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import api, grad

__all__ = ["Conv2d", "Conv2dFunction", "conv2d"]


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy()  # a view of the tensor's memory (any strides), no copy


class Conv2dFunction(torch.autograd.Function):
    """``y = conv2d(x, weight, bias, stride, padding, dilation, groups, padding_mode)`` with numbaconv's
    kernels in both directions."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, padding_mode):
        ctx.options = (stride, padding, dilation, groups, padding_mode)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if x.is_cuda:
            result = api.conv2d(x.detach(), weight.detach(), None if bias is None else bias.detach(), stride,
                                padding, dilation, groups, padding_mode=padding_mode)
            return torch.as_tensor(result, device=x.device)
        result = api.conv2d(_numpy(x), _numpy(weight), None if bias is None else _numpy(bias), stride, padding,
                            dilation, groups, padding_mode=padding_mode)
        return torch.from_numpy(result)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, padding_mode = ctx.options
        options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode)
        if x.is_cuda:  # device arrays in, tensors of the same device out (zero-copy wrappers)
            gy, x, weight = grad_output.detach().contiguous(), x.detach(), weight.detach()
            wrap = lambda result: torch.as_tensor(result, device=x.device)  # noqa: E731
        else:
            gy, x, weight = np.ascontiguousarray(_numpy(grad_output)), _numpy(x), _numpy(weight)
            wrap = torch.from_numpy
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = wrap(grad.conv2d_grad_input(tuple(x.shape), weight, gy, **options))
        if ctx.needs_input_grad[1]:
            grad_w = wrap(grad.conv2d_grad_weight(x, tuple(weight.shape), gy, **options))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = wrap(grad.conv2d_grad_bias(gy))
        return grad_x, grad_w, grad_b, None, None, None, None, None


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """``torch.nn.functional.conv2d`` on numbaconv's kernels (differentiable)."""
    return Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, groups, padding_mode)


class Conv2d(nn.Conv2d):
    """A drop-in ``nn.Conv2d`` (same constructor, parameters, initialization and state_dict) whose
    forward and backward run numbaconv's kernels."""

    def forward(self, x):
        padding = self.padding if isinstance(self.padding, str) else tuple(self.padding)
        return conv2d(x, self.weight, self.bias, tuple(self.stride), padding, tuple(self.dilation), self.groups,
                      self.padding_mode)

    @classmethod
    def from_torch(cls, module: nn.Conv2d) -> "Conv2d":
        """A numbaconv Conv2d with ``module``'s configuration and a copy of its parameters."""
        layer = cls(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                    module.dilation, module.groups, module.bias is not None, module.padding_mode,
                    device=module.weight.device, dtype=module.weight.dtype)
        layer.load_state_dict(module.state_dict())
        return layer


