"""Convolution layers of real networks, as data: one source for the benchmarks, the CLI,
the tests and the docs.

Each `Layer` is one distinct convolution shape of a network at its usual input size
(224x224, 299x299 for Xception); ``count`` says how many times the network runs it.  The
family (pointwise / depthwise / grouped) is not stored: it is derived by
`numbaconv.spec.ConvSpec` like any call.  A dense k x k convolution (groups = 1, k > 1)
belongs to the ``grouped`` family (the grouped kernel with G = 1 serves it).

Sources: the architecture tables of the papers, with the shapes of the reference
implementations where the paper leaves a detail open (torchvision, or Keras for Xception).
``tests/test_workloads.py`` checks every table against the published parameter count (or,
for ShuffleNet v1, the paper's multiply-add count), so a wrong shape cannot go unnoticed.

* ``mobilenet_v2``: Sandler et al., "MobileNetV2: Inverted Residuals and Linear
  Bottlenecks", CVPR 2018, Table 2 (1x1 expand by t, 3x3 depthwise, 1x1 project).
* ``efficientnet_b0``: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
  Neural Networks", ICML 2019, Table 1 (MBConv blocks with 3x3 and 5x5 depthwise and
  squeeze-and-excitation 1x1s on the pooled 1x1 map, squeeze = block input / 4).
* ``resnet50``: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
  Table 1 (bottleneck 1x1 reduce, 3x3, 1x1 expand; stride on the 3x3 as in torchvision
  ("ResNet v1.5"); 1x1 projection shortcuts).
* ``resnext50_32x4d``: Xie et al., "Aggregated Residual Transformations for Deep Neural
  Networks", CVPR 2017, Table 1 (as ResNet-50 with twice the bottleneck width and the 3x3
  in 32 groups).
* ``shufflenet_v1_g3``, ``shufflenet_v1_g8``: Zhang et al., "ShuffleNet: An Extremely
  Efficient Convolutional Neural Network for Mobile Devices", CVPR 2018, Table 1 (1x
  width; grouped 1x1 with g = 3 or 8, bottleneck = output / 4, 3x3 depthwise; a stride-2
  unit concatenates its 3x3 average-pooled input, so its last 1x1 makes output - input
  channels; the first 1x1 of stage 2 is not grouped).
* ``shufflenet_v2_x1_0``: Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient
  CNN Architecture Design", ECCV 2018, Table 5 (1x width; each unit works on half the
  channels; a stride-2 unit has a second branch, 3x3 depthwise then 1x1).
* ``squeezenet1_0``: Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer
  parameters and <0.5MB model size", 2016, Table 1 (fire modules: 1x1 squeeze, then 1x1
  and 3x3 expand side by side; convolutions with bias, the classifier a 1x1 convolution).
* ``xception``: Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions",
  CVPR 2017, Figure 5 (299x299 input; every separable convolution is a 3x3 depthwise then
  a 1x1 pointwise; 1x1 stride-2 shortcuts in the entry and exit flows).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
    padding: int = field(default=None)  # None: kernel // 2 ("same" size at stride 1)
    bias: bool = False  # whether the network's own layer has a bias (else a BatchNorm follows)

    def __post_init__(self):
        if self.padding is None:
            object.__setattr__(self, "padding", self.kernel // 2)

    def spec(self, batch: int = 1, dtype="float32") -> ConvSpec:
        """The layer as an inference call: with a bias (a BatchNorm folds into one)."""
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

    @property
    def out_size(self) -> int:
        return (self.size + 2 * self.padding - self.kernel) // self.stride + 1

    def describe(self) -> str:
        g = f" g{self.groups}" if self.groups > 1 else ""
        s = f" s{self.stride}" if self.stride > 1 else ""
        p = f" p{self.padding}" if self.padding != self.kernel // 2 else ""
        return f"{self.in_channels}->{self.out_channels} {self.kernel}x{self.kernel}{g}{s}{p} @{self.size}"


class _Network:
    """Collects a network's convolutions in order.  Repeats of one shape are merged into one
    layer (named after the first, with ``_xN`` for N repeats) whose ``count`` is N; a name
    that is taken already gets ``_2``, ``_3``, ..."""

    def __init__(self, name: str):
        self.name = name
        self._order: list[Layer] = []
        self._counts: dict[Layer, int] = {}

    def add(self, name: str, in_channels: int, out_channels: int, size: int, kernel: int = 1, stride: int = 1,
            groups: int = 1, padding: int | None = None, bias: bool = False) -> int:
        """Add one convolution; return its output size."""
        layer = Layer(self.name, "", in_channels, out_channels, size, kernel, stride, groups, 1, padding, bias)
        if layer not in self._counts:
            self._counts[layer] = 0
            self._order.append(replace(layer, name=name))
        self._counts[layer] += 1
        return layer.out_size

    def depthwise(self, name: str, channels: int, size: int, kernel: int = 3, stride: int = 1) -> int:
        return self.add(name, channels, channels, size, kernel, stride, groups=channels)

    def layers(self) -> list[Layer]:
        result, taken = [], {}
        for layer in self._order:
            count = self._counts[replace(layer, name="")]
            name = layer.name + ("" if count == 1 else f"_x{count}")
            taken[name] = taken.get(name, 0) + 1
            if taken[name] > 1:
                name = f"{name}_{taken[name]}"
            result.append(replace(layer, name=name, count=count))
        return result


def _mobilenet_v2() -> list[Layer]:
    net = _Network("mobilenet_v2")
    size = net.add("stem", 3, 32, 224, kernel=3, stride=2)
    # (expansion t, output channels c, repeats n, first stride s) from Table 2
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    channels = 32
    for stage, (t, c, n, s) in enumerate(settings, start=1):
        for i in range(n):
            hidden = channels * t
            if t != 1:
                net.add(f"b{stage}_expand", channels, hidden, size)
            size = net.depthwise(f"b{stage}_dw", hidden, size, 3, s if i == 0 else 1)
            net.add(f"b{stage}_project", hidden, c, size)
            channels = c
    net.add("head", channels, 1280, size)
    return net.layers()


def _efficientnet_b0() -> list[Layer]:
    net = _Network("efficientnet_b0")
    size = net.add("stem", 3, 32, 224, kernel=3, stride=2)
    # (expansion, kernel, first stride, output channels, repeats) from Table 1
    settings = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    channels = 32
    for stage, (t, kernel, s, c, n) in enumerate(settings, start=1):
        for i in range(n):
            hidden = channels * t
            if t != 1:
                net.add(f"b{stage}_expand", channels, hidden, size)
            size = net.depthwise(f"b{stage}_dw", hidden, size, kernel, s if i == 0 else 1)
            squeeze = max(1, channels // 4)
            net.add(f"b{stage}_se_reduce", hidden, squeeze, 1, bias=True)
            net.add(f"b{stage}_se_expand", squeeze, hidden, 1, bias=True)
            net.add(f"b{stage}_project", hidden, c, size)
            channels = c
    net.add("head", channels, 1280, size)
    return net.layers()


def _bottleneck_resnet(name: str, widths: tuple, groups: int, conv3x3: str) -> list[Layer]:
    """ResNet-50 / ResNeXt-50: stages of bottleneck blocks (1x1 reduce to ``width``, 3x3 with
    ``groups``, 1x1 expand to 4x the ResNet width); the first block of a stage has a 1x1
    projection shortcut, and the stride (stages 3-5) on its 3x3."""
    net = _Network(name)
    size = net.add("stem", 3, 64, 224, kernel=7, stride=2) // 2  # then a 3x3 stride-2 max-pool
    channels = 64
    for stage, (blocks, width, out_channels) in enumerate(zip((3, 4, 6, 3), widths, (256, 512, 1024, 2048)), 2):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 2 else 1
            net.add(f"conv{stage}_reduce", channels, width, size)
            after = net.add(f"conv{stage}_{conv3x3}" + ("_s2" if stride == 2 else ""), width, width, size,
                            kernel=3, stride=stride, groups=groups)
            net.add(f"conv{stage}_expand", width, out_channels, after)
            if block == 0:
                net.add(f"conv{stage}_shortcut", channels, out_channels, size, stride=stride)
            size, channels = after, out_channels
    return net.layers()


def _shufflenet_v1(groups: int) -> list[Layer]:
    net = _Network(f"shufflenet_v1_g{groups}")
    size = net.add("stem", 3, 24, 224, kernel=3, stride=2) // 2  # then a 3x3 stride-2 max-pool
    stage_channels = {3: (240, 480, 960), 8: (384, 768, 1536)}[groups]
    channels = 24
    for stage, (out_channels, repeats) in enumerate(zip(stage_channels, (4, 8, 4)), start=2):
        bottleneck = out_channels // 4
        for unit in range(repeats):
            first = unit == 0
            suffix = "_first" if first else ""
            g_in = 1 if stage == 2 and first else groups
            net.add(f"s{stage}_gconv1{suffix}", channels, bottleneck, size, groups=g_in)
            size = net.depthwise(f"s{stage}_dw{suffix}", bottleneck, size, 3, 2 if first else 1)
            made = out_channels - channels if first else out_channels  # a stride-2 unit concatenates its input
            net.add(f"s{stage}_gconv2{suffix}", bottleneck, made, size, groups=groups)
            channels = out_channels
    return net.layers()


def _shufflenet_v2_x1_0() -> list[Layer]:
    net = _Network("shufflenet_v2_x1_0")
    size = net.add("stem", 3, 24, 224, kernel=3, stride=2) // 2  # then a 3x3 stride-2 max-pool
    channels = 24
    for stage, (out_channels, repeats) in enumerate(zip((116, 232, 464), (4, 8, 4)), start=2):
        half = out_channels // 2
        # stride-2 unit: branch 1 = 3x3 depthwise s2, 1x1; branch 2 = 1x1, 3x3 depthwise s2, 1x1
        after = net.depthwise(f"s{stage}_dw_s2", channels, size, 3, 2)
        net.add(f"s{stage}_pw", channels, half, after)
        net.add(f"s{stage}_pw_in", channels, half, size)
        net.depthwise(f"s{stage}_dw_s2", half, size, 3, 2)
        net.add(f"s{stage}_pw", half, half, after)
        size, channels = after, out_channels
        for _ in range(repeats - 1):  # stride-1 units work on half the channels
            net.add(f"s{stage}_pw", half, half, size)
            net.depthwise(f"s{stage}_dw", half, size)
            net.add(f"s{stage}_pw", half, half, size)
    net.add("conv5", channels, 1024, size)
    return net.layers()


def _squeezenet1_0() -> list[Layer]:
    net = _Network("squeezenet1_0")

    def pool(size):  # 3x3 stride-2 max-pool, ceil mode
        return -(-(size - 3) // 2) + 1

    size = pool(net.add("conv1", 3, 96, 224, kernel=7, stride=2, padding=0, bias=True))
    # fire modules (input channels, squeeze, expand 1x1, expand 3x3); a max-pool after fire 4 and 8
    fires = [(96, 16, 64, 64), (128, 16, 64, 64), (128, 32, 128, 128), (256, 32, 128, 128),
             (256, 48, 192, 192), (384, 48, 192, 192), (384, 64, 256, 256), (512, 64, 256, 256)]
    for number, (in_channels, squeeze, expand1, expand3) in enumerate(fires, start=2):
        net.add(f"fire{number}_squeeze", in_channels, squeeze, size, bias=True)
        net.add(f"fire{number}_expand1x1", squeeze, expand1, size, bias=True)
        net.add(f"fire{number}_expand3x3", squeeze, expand3, size, kernel=3, bias=True)
        if number in (4, 8):
            size = pool(size)
    net.add("classifier", 512, 1000, size, bias=True)
    return net.layers()


def _xception() -> list[Layer]:
    net = _Network("xception")
    size = net.add("conv1", 3, 32, 299, kernel=3, stride=2, padding=0)
    size = net.add("conv2", 32, 64, size, kernel=3, padding=0)

    def separable(name, in_channels, out_channels, size):
        net.depthwise(f"{name}_dw", in_channels, size)
        net.add(f"{name}_pw", in_channels, out_channels, size)

    channels = 64
    for block, out_channels in enumerate((128, 256, 728), start=2):  # entry flow
        separable(f"block{block}_sep1", channels, out_channels, size)
        separable(f"block{block}_sep2", out_channels, out_channels, size)
        net.add(f"block{block}_shortcut", channels, out_channels, size, stride=2)
        size, channels = (size + 1) // 2, out_channels  # 3x3 stride-2 max-pool, 'same'
    for _ in range(8 * 3):  # middle flow: 8 blocks of 3 separable convolutions
        separable("middle_sep", 728, 728, size)
    separable("block13_sep1", 728, 728, size)  # exit flow
    separable("block13_sep2", 728, 1024, size)
    net.add("block13_shortcut", 728, 1024, size, stride=2)
    size = (size + 1) // 2
    separable("block14_sep1", 1024, 1536, size)
    separable("block14_sep2", 1536, 2048, size)
    return net.layers()


NETWORKS: dict[str, list[Layer]] = {
    "mobilenet_v2": _mobilenet_v2(),
    "efficientnet_b0": _efficientnet_b0(),
    "resnet50": _bottleneck_resnet("resnet50", (64, 128, 256, 512), 1, "3x3"),
    "resnext50_32x4d": _bottleneck_resnet("resnext50_32x4d", (128, 256, 512, 1024), 32, "grouped"),
    "shufflenet_v1_g3": _shufflenet_v1(3),
    "shufflenet_v1_g8": _shufflenet_v1(8),
    "shufflenet_v2_x1_0": _shufflenet_v2_x1_0(),
    "squeezenet1_0": _squeezenet1_0(),
    "xception": _xception(),
}

# A cross-section of all three families and all the networks, for a quick default run.
DEFAULT_SUITE = [
    "mobilenet_v2/b2_expand",
    "mobilenet_v2/b2_dw",
    "mobilenet_v2/b3_dw_x2",
    "mobilenet_v2/b6_project",
    "efficientnet_b0/b6_dw_x3",
    "resnet50/conv3_reduce_x3",
    "resnext50_32x4d/conv2_grouped_x3",
    "resnext50_32x4d/conv3_grouped_s2",
    "resnext50_32x4d/conv4_grouped_x5",
    "resnext50_32x4d/conv4_expand_x6",
    "shufflenet_v1_g3/s3_gconv1_x7",
    "shufflenet_v1_g8/s3_gconv2_x7",
    "shufflenet_v2_x1_0/s3_pw_x16",
    "squeezenet1_0/fire4_expand3x3",
    "xception/middle_sep_dw_x26",
    "xception/middle_sep_pw_x25",
]

FAMILIES = ("pointwise", "depthwise", "grouped")


def layer(key: str) -> Layer:
    """A layer by its key ``network/name``."""
    network, _, name = key.partition("/")
    if network not in NETWORKS:
        raise KeyError(f"no network {network!r}; known networks: {sorted(NETWORKS)}")
    for candidate in NETWORKS[network]:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no layer {name!r} in {network}; it has {[c.name for c in NETWORKS[network]]}")


def suite(name: str) -> list[Layer]:
    """The layers of a suite: ``'default'``, ``'all'``, a family, a network, one layer by its key
    (``'resnet50/conv3_reduce_x3'``), or several of these joined by commas (``'mobilenet_v2,xception'``)."""
    if "," in name:
        return [lay for part in name.split(",") if part.strip() for lay in suite(part.strip())]
    if "/" in name:
        try:
            return [layer(name)]
        except KeyError as error:
            raise ValueError(f"suite: {error.args[0]}") from None
    if name == "default":
        return [layer(key) for key in DEFAULT_SUITE]
    if name in NETWORKS:
        return list(NETWORKS[name])
    everything = [lay for net in NETWORKS.values() for lay in net]
    if name == "all":
        return everything
    if name in FAMILIES:
        return [lay for lay in everything if lay.family == name]
    raise ValueError(f"suite must be 'default', 'all', a family {FAMILIES} or a network {sorted(NETWORKS)}, "
                     f"got {name!r}")
