"""Convolution layers of real networks, as data: one source for the benchmarks, the CLI,
the tests and the docs.

Each :class:`Layer` is one distinct convolution shape of a network at 224x224 input;
``count`` says how many times the network runs it.  The family (pointwise / depthwise /
grouped) is not stored: it is derived by :class:`~numbaconv.spec.ConvSpec` like any call.

Sources (the architecture tables of the papers, shapes as in torchvision's models):

* MobileNetV2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
  CVPR 2018, Table 2 (inverted residual blocks: 1x1 expand by t, 3x3 depthwise, 1x1 project).
* ResNeXt-50 (32x4d): Xie et al., "Aggregated Residual Transformations for Deep Neural
  Networks", CVPR 2017, Table 1 (1x1 reduce, 3x3 with 32 groups, 1x1 expand; stride on the
  3x3 as in torchvision; 1x1 projection shortcuts).
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import ConvSpec


@dataclass(frozen=True)
class Layer:
    network: str
    name: str
    in_channels: int
    out_channels: int
    size: int  # input height = width
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    count: int = 1

    @property
    def padding(self) -> int:
        return self.kernel // 2

    def spec(self, batch: int = 1, dtype="float32") -> ConvSpec:
        return ConvSpec.from_shapes(
            (batch, self.in_channels, self.size, self.size),
            (self.out_channels, self.in_channels // self.groups, self.kernel, self.kernel),
            (self.out_channels,), self.stride, self.padding, 1, self.groups, dtype=dtype,
        )

    @property
    def family(self) -> str:
        return self.spec().family

    @property
    def key(self) -> str:
        return f"{self.network}/{self.name}"

    def describe(self) -> str:
        g = f" g{self.groups}" if self.groups > 1 else ""
        s = f" s{self.stride}" if self.stride > 1 else ""
        return f"{self.in_channels}->{self.out_channels} {self.kernel}x{self.kernel}{g}{s} @{self.size}"


def _mobilenet_v2() -> list[Layer]:
    net = "mobilenet_v2"
    layers = [Layer(net, "stem", 3, 32, 224, kernel=3, stride=2)]
    # (expansion t, output channels c, repeats n, first stride s) from Table 2
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    channels, size = 32, 112
    seen: dict[tuple, int] = {}
    ordered: list[tuple] = []

    def add(name, *shape, **kw):
        key = (shape, tuple(sorted(kw.items())))
        if key not in seen:
            seen[key] = 0
            ordered.append((name, shape, kw, key))
        seen[key] += 1

    for stage, (t, c, n, s) in enumerate(settings, start=1):
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = channels * t
            if t != 1:
                add(f"b{stage}_expand", channels, hidden, size)
            add(f"b{stage}_dw", hidden, hidden, size, kernel=3, stride=stride, groups=hidden)
            size = size // stride
            add(f"b{stage}_project", hidden, c, size)
            channels = c
    add("head", channels, 1280, size)
    for name, shape, kw, key in ordered:
        layers.append(Layer(net, name + ("" if seen[key] == 1 else f"_x{seen[key]}"), *shape, count=seen[key], **kw))
    return _unique_names(layers)


def _resnext50_32x4d() -> list[Layer]:
    net = "resnext50_32x4d"
    layers = [Layer(net, "stem", 3, 64, 224, kernel=7, stride=2)]
    # (blocks, width of the grouped 3x3, output channels, input size of the stage)
    stages = [(3, 128, 256, 56), (4, 256, 512, 56), (6, 512, 1024, 28), (3, 1024, 2048, 14)]
    in_channels = 64
    for index, (blocks, width, out_channels, size) in enumerate(stages, start=2):
        stride = 1 if index == 2 else 2
        after = size // stride
        layers += [
            Layer(net, f"conv{index}_reduce_first", in_channels, width, size),
            Layer(net, f"conv{index}_grouped_first", width, width, size, kernel=3, stride=stride, groups=32),
            Layer(net, f"conv{index}_expand", width, out_channels, after, count=blocks),
            Layer(net, f"conv{index}_shortcut", in_channels, out_channels, size, stride=stride),
            Layer(net, f"conv{index}_reduce", out_channels, width, after, count=blocks - 1),
            Layer(net, f"conv{index}_grouped", width, width, after, kernel=3, groups=32, count=blocks - 1),
        ]
        in_channels = out_channels
    return layers


def _unique_names(layers: list[Layer]) -> list[Layer]:
    names: dict[str, int] = {}
    result = []
    for layer in layers:
        names[layer.name] = names.get(layer.name, 0) + 1
        if names[layer.name] > 1:
            layer = Layer(**{**layer.__dict__, "name": f"{layer.name}_{names[layer.name]}"})
        result.append(layer)
    return result


NETWORKS: dict[str, list[Layer]] = {
    "mobilenet_v2": _mobilenet_v2(),
    "resnext50_32x4d": _resnext50_32x4d(),
}

# A small cross-section of all three families for a quick default run.
DEFAULT_SUITE = [
    ("mobilenet_v2", "b2_expand"),
    ("mobilenet_v2", "b2_dw"),
    ("mobilenet_v2", "b3_dw_x2"),
    ("mobilenet_v2", "b6_project"),
    ("mobilenet_v2", "head"),
    ("resnext50_32x4d", "conv2_grouped"),
    ("resnext50_32x4d", "conv3_grouped_first"),
    ("resnext50_32x4d", "conv4_grouped"),
    ("resnext50_32x4d", "conv3_reduce"),
    ("resnext50_32x4d", "conv4_expand"),
]


def layer(key: str) -> Layer:
    network, _, name = key.partition("/")
    for candidate in NETWORKS.get(network, []):
        if candidate.name == name:
            return candidate
    raise KeyError(f"no layer {key!r}; known networks: {sorted(NETWORKS)}")


def suite(name: str) -> list[Layer]:
    """``'default'``, a network name, a family name, or ``'all'``."""
    if name == "default":
        return [layer(f"{net}/{n}") for net, n in DEFAULT_SUITE]
    if name in NETWORKS:
        return list(NETWORKS[name])
    everything = [lay for net in NETWORKS.values() for lay in net]
    if name == "all":
        return everything
    if name in ("pointwise", "depthwise", "grouped"):
        return [lay for lay in everything if lay.family == name]
    raise ValueError(f"suite must be 'default', 'all', a family or one of {sorted(NETWORKS)}, got {name!r}")
