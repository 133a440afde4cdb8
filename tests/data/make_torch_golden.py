"""Record torch.nn.Conv2d outputs for tricky configurations into torch_golden.npz.

Run with PyTorch installed (``pip install torch==2.13.0``): ``python tests/data/make_torch_golden.py``.
The test suite then checks torch parity from this file where PyTorch is absent (as in CI).
"""

import json
import pathlib

import numpy as np
import torch

F = torch.nn.functional
ACTIVATIONS = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "silu": F.silu, "hardswish": F.hardswish}

CASES = [
    # x shape, weight shape, kwargs
    ((2, 3, 7, 8), (4, 3, 2, 2), dict(padding="same")),  # even kernel: the extra row/column goes after
    ((1, 2, 9, 6), (2, 2, 4, 3), dict(padding="same", dilation=(1, 2))),
    ((1, 4, 8, 9), (4, 1, 2, 4), dict(padding="same", groups=4, dilation=(3, 1))),
    ((2, 6, 11, 10), (6, 1, 3, 3), dict(padding=1, groups=6, stride=2)),
    ((1, 3, 10, 10), (9, 1, 5, 5), dict(padding=2, groups=3)),  # channel multiplier 3
    ((2, 8, 9, 13), (12, 2, 3, 1), dict(padding=(1, 0), groups=4, stride=(2, 3))),
    ((1, 6, 7, 7), (9, 2, 1, 1), dict(groups=3)),  # ShuffleNet-style grouped 1x1
    ((2, 5, 9, 9), (7, 5, 1, 1), dict(stride=2, padding=1)),  # 1x1 with padding: a border of bias only
    ((1, 4, 12, 12), (8, 4, 3, 3), dict(padding=2, dilation=2, stride=(1, 2))),
    ((3, 2, 5, 17), (4, 1, 3, 5), dict(groups=2, padding="valid", dilation=(2, 3))),
    ((1, 3, 4, 4), (3, 3, 4, 4), dict()),  # kernel exactly the input
    ((1, 2, 6, 7), (3, 2, 3, 3), dict(padding=2, padding_mode="reflect")),
    ((1, 2, 6, 7), (4, 1, 3, 3), dict(padding=(1, 3), padding_mode="replicate", groups=2)),
    ((1, 4, 6, 7), (4, 1, 3, 2), dict(padding=(2, 1), padding_mode="circular", groups=4)),
    ((1, 2, 5, 6), (2, 2, 2, 3), dict(padding="same", padding_mode="reflect")),
    ((2, 4, 6, 6), (4, 1, 3, 3), dict(padding=1, groups=4, activation="relu6")),
    ((2, 4, 6, 6), (8, 4, 1, 1), dict(activation="silu")),
    ((2, 4, 6, 6), (8, 2, 3, 3), dict(padding=1, groups=2, activation="hardswish")),
    ((2, 4, 6, 6), (8, 4, 3, 3), dict(padding=1, activation="relu")),
]


def main():
    rng = np.random.default_rng(2026)
    arrays, meta = {}, []
    for index, (x_shape, w_shape, kwargs) in enumerate(CASES):
        x = rng.standard_normal(x_shape) * 3
        weight = rng.standard_normal(w_shape)
        bias = rng.standard_normal(w_shape[0])
        conv_kwargs = {k: v for k, v in kwargs.items() if k != "activation"}
        mode = conv_kwargs.pop("padding_mode", "zeros")
        conv = torch.nn.Conv2d(x_shape[1], w_shape[0], w_shape[2:], bias=True, padding_mode=mode,
                               dtype=torch.float64, **conv_kwargs)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weight))
            conv.bias.copy_(torch.from_numpy(bias))
            y = ACTIVATIONS[kwargs.get("activation")](conv(torch.from_numpy(x))).numpy()
        arrays.update({f"x{index}": x, f"w{index}": weight, f"b{index}": bias, f"y{index}": y})
        meta.append(kwargs)
    arrays["meta"] = np.array(json.dumps({"torch": torch.__version__, "cases": meta}))
    np.savez_compressed(pathlib.Path(__file__).with_name("torch_golden.npz"), **arrays)


if __name__ == "__main__":
    main()
