"""PyTorch bridge: numbaconv's forward and backward kernels inside torch's autograd.

    from numbaconv.torch import Conv2d
    layer = Conv2d(32, 32, 3, padding=1, groups=32)   # nn.Conv2d's constructor and state_dict

torch is optional: importing this module needs it, nothing else in numbaconv does.  CPU tensors
are handed to the kernels as NumPy views (``Tensor.numpy()`` shares memory: no copies) and the
results wrapped back with ``torch.from_numpy``.  float32 and float64.

CUDA tensors run numbaconv's CUDA kernels in both directions, handed over through
``__cuda_array_interface__`` (no copies) and launched on torch's current stream.  Gradients of
any order (``create_graph=True``: gradient penalties, double backward) run on numbaconv's
functions too: the backward is built from differentiable grad-input and grad-weight functions.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import api, grad

__all__ = ["Conv2d", "Conv2dFunction", "GradInputFunction", "GradWeightFunction", "conv2d"]


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy()  # a view of the tensor's memory (any strides), no copy


def _run(function, *tensors, **options):
    """``function`` on the tensors' memory (NumPy views on the CPU, CUDA arrays on the GPU; None passes
    through; anything else, such as a shape, as it is), the result wrapped as a tensor (no copies)."""
    device = next(t.device for t in tensors if isinstance(t, torch.Tensor))
    if device.type == "cuda":
        arguments = [t.detach() if isinstance(t, torch.Tensor) else t for t in tensors]
        return torch.as_tensor(function(*arguments, **options), device=device)
    arguments = [_numpy(t) if isinstance(t, torch.Tensor) else t for t in tensors]
    return torch.from_numpy(function(*arguments, **options))


def _options(stride, padding, dilation, groups, padding_mode) -> dict:
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode)


# The backward of a convolution is made of two more bilinear maps, each itself differentiable with
# numbaconv's functions, so gradients of any order (double backward: gradient penalties, Hessian-vector
# products) run on numbaconv's kernels.  For y = conv(x, w) with the options fixed:
#     grad_input(gy, w)  = conv^T_w gy      d/dgy: conv(ggx, w)            d/dw: grad_weight(ggx, gy)
#     grad_weight(x, gy) = conv^T_x gy      d/dx:  grad_input(gy, ggw)     d/dgy: conv(x, ggw)
# (ggx, ggw: the gradients arriving at grad_input's and grad_weight's results).  Each identity is the
# adjoint of <a, conv(x, w)> = <grad_input(a, w), x> = <grad_weight(x, a), w>.

class Conv2dFunction(torch.autograd.Function):
    """``y = conv2d(x, weight, bias, stride, padding, dilation, groups, padding_mode)`` with numbaconv's
    kernels in both directions, differentiable to any order."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, padding_mode):
        ctx.options = _options(stride, padding, dilation, groups, padding_mode)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _run(api.conv2d, x, weight, bias, stride, padding, dilation, groups, padding_mode=padding_mode)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = GradInputFunction.apply(grad_output, weight, tuple(x.shape), ctx.options)
        if ctx.needs_input_grad[1]:
            grad_w = GradWeightFunction.apply(x, grad_output, tuple(weight.shape), ctx.options)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_output.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None, None


def _convolve(x, weight, options):
    return Conv2dFunction.apply(x, weight, None, options["stride"], options["padding"], options["dilation"],
                                options["groups"], options["padding_mode"])


class GradInputFunction(torch.autograd.Function):
    """``dL/dx = conv2d_grad_input(x_shape, weight, grad_output)``, differentiable in grad_output and weight."""

    @staticmethod
    def forward(ctx, grad_output, weight, input_shape, options):
        ctx.options = options
        ctx.save_for_backward(grad_output, weight)
        return _run(grad.conv2d_grad_input, input_shape, weight, grad_output.contiguous(), **options)

    @staticmethod
    def backward(ctx, grad_grad_input):
        grad_output, weight = ctx.saved_tensors
        d_grad_output = d_weight = None
        if ctx.needs_input_grad[0]:
            d_grad_output = _convolve(grad_grad_input, weight, ctx.options)
        if ctx.needs_input_grad[1]:
            d_weight = GradWeightFunction.apply(grad_grad_input, grad_output, tuple(weight.shape), ctx.options)
        return d_grad_output, d_weight, None, None


class GradWeightFunction(torch.autograd.Function):
    """``dL/dw = conv2d_grad_weight(x, weight_shape, grad_output)``, differentiable in x and grad_output."""

    @staticmethod
    def forward(ctx, x, grad_output, weight_shape, options):
        ctx.options = options
        ctx.save_for_backward(x, grad_output)
        return _run(grad.conv2d_grad_weight, x, weight_shape, grad_output.contiguous(), **options)

    @staticmethod
    def backward(ctx, grad_grad_weight):
        x, grad_output = ctx.saved_tensors
        d_x = d_grad_output = None
        if ctx.needs_input_grad[0]:
            d_x = GradInputFunction.apply(grad_output, grad_grad_weight, tuple(x.shape), ctx.options)
        if ctx.needs_input_grad[1]:
            d_grad_output = _convolve(x, grad_grad_weight, ctx.options)
        return d_x, d_grad_output, None, None


SUPPORTED_DTYPES = (torch.float32, torch.float64)


def _check_dtypes(**tensors) -> None:
    """TypeError naming the tensor and the supported dtypes, for bfloat16, float16 and the rest (before anything
    runs: torch cannot even hand a bfloat16 tensor to NumPy)."""
    for name, tensor in tensors.items():
        if isinstance(tensor, torch.Tensor) and tensor.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"numbaconv.torch: {name} is a {tensor.dtype} tensor; numbaconv's kernels run "
                            f"torch.float32 and torch.float64 (convert with .float() or .double())")


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """``torch.nn.functional.conv2d`` on numbaconv's kernels (differentiable); float32 and float64 tensors."""
    _check_dtypes(x=x, weight=weight, bias=bias)
    return Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, groups, padding_mode)


class Conv2d(nn.Conv2d):
    """A drop-in ``nn.Conv2d`` (same constructor, parameters, initialization and state_dict) whose
    forward and backward run numbaconv's kernels."""

    def _get_name(self) -> str:  # the repr says whose layer this is: numbaconv.torch.Conv2d(3, 8, kernel_size=...)
        return "numbaconv.torch.Conv2d"

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


