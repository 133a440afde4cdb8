"""numbaconv.torch: the autograd bridge, and a swap-in training run against nn.Conv2d (needs torch)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from numbaconv.torch import Conv2d, conv2d  # noqa: E402


@pytest.mark.parametrize("options", [
    dict(stride=2, padding=1, groups=2),
    dict(padding="same", dilation=2, groups=6),
    dict(stride=(1, 2), padding=(2, 1), padding_mode="reflect", groups=3),
    dict(),
])
def test_gradcheck(options):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 7, 8, dtype=torch.float64, requires_grad=True)
    groups = options.get("groups", 1)
    weight = torch.randn(6, 6 // groups, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    args = (options.get("stride", 1), options.get("padding", 0), options.get("dilation", 1), groups,
            options.get("padding_mode", "zeros"))
    assert torch.autograd.gradcheck(lambda a, b, c: conv2d(a, b, c, *args), (x, weight, bias))


def block(conv):
    """A MobileNetV2 inverted-residual block (expand, depthwise, project) built from ``conv``."""
    return nn.Sequential(conv(8, 32, 1), nn.ReLU6(), conv(32, 32, 3, padding=1, groups=32), nn.ReLU6(),
                         conv(32, 8, 1), nn.Flatten(), nn.Linear(8 * 10 * 10, 4))


def train(reference, ours, inputs, targets, losses):
    """8 SGD steps of each model on the same batch, recording the losses."""
    for name, model in (("torch", reference), ("numbaconv", ours)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        losses[name] = []
        for _ in range(8):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()
            optimizer.step()
            losses[name].append(loss.item())


def devices():
    """cpu, and cuda where torch has a real GPU (the CUDA simulator cannot run torch tensors)."""
    return ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="torch has no CUDA device here")])]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_swap_in_training_matches_nn_conv2d(dtype, device):
    torch.manual_seed(0)
    reference = block(nn.Conv2d).to(dtype)
    ours = block(Conv2d).to(dtype)
    ours.load_state_dict(reference.state_dict())  # the same initial weights
    assert sum(isinstance(m, Conv2d) for m in ours.modules()) == 3
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(16, 8, 10, 10, generator=generator, dtype=dtype).to(device)
    targets = torch.randint(0, 4, (16,), generator=generator).to(device)
    reference, ours = reference.to(device), ours.to(device)
    losses = {}
    # cuDNN without TF32 (its float32 default on Ampere and later) and with fixed algorithms
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        train(reference, ours, inputs, targets, losses)
    assert losses["torch"][-1] < losses["torch"][0]  # it trains
    tolerance = 1e-4 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(losses["numbaconv"], losses["torch"], rtol=tolerance)
    for a, b in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=tolerance * 10, atol=tolerance * 10)


def test_from_torch_copies_configuration_and_weights():
    module = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2, bias=False, padding_mode="circular")
    layer = Conv2d.from_torch(module)
    assert (layer.stride, layer.padding, layer.groups, layer.bias, layer.padding_mode) == ((2, 2), (1, 1), 2, None,
                                                                                          "circular")
    x = torch.randn(1, 4, 9, 9)
    torch.testing.assert_close(layer(x), module(x), rtol=1e-5, atol=1e-5)


def test_repr_says_it_is_numbaconvs_layer():
    layer = Conv2d(3, 8, 3, padding=1)
    assert repr(layer).startswith("numbaconv.torch.Conv2d(3, 8, kernel_size=(3, 3)")
    assert repr(torch.nn.Sequential(layer)).count("numbaconv.torch.Conv2d") == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.int32])
def test_unsupported_dtypes_get_a_type_error_naming_the_supported_ones(dtype):
    x = torch.zeros((1, 3, 8, 8), dtype=dtype)
    weight = torch.zeros((8, 3, 3, 3), dtype=dtype)
    with pytest.raises(TypeError, match=r"x is a torch\.\w+ tensor; numbaconv's kernels run torch\.float32 and "
                                        r"torch\.float64"):
        conv2d(x, weight)
    layer = Conv2d(3, 8, 3).to(dtype) if dtype.is_floating_point else None
    if layer is not None:
        with pytest.raises(TypeError, match="float32 and torch.float64"):
            layer(x)
