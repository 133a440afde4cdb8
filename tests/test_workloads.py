"""The network layer tables: every shape checked against the published model it comes from."""

from __future__ import annotations

import collections

import pytest

from numbaconv import cost, workloads
from numbaconv.spec import ConvSpec

# torchvision's parameter counts (its model cards) and the input width of the final Linear(C, 1000)
TORCHVISION = {
    "mobilenet_v2": (3_504_872, 1280),
    "efficientnet_b0": (5_288_548, 1280),
    "resnet50": (25_557_032, 2048),
    "resnext50_32x4d": (25_028_904, 2048),
    "shufflenet_v2_x1_0": (2_278_604, 1024),
    "squeezenet1_0": (1_248_424, 0),  # no Linear: the classifier is the last 1x1 convolution
}


def weights(layer: workloads.Layer) -> int:
    """The layer's own parameters: weights, plus its bias where the network has one."""
    return cost.parameter_count(layer.spec()) - (0 if layer.bias else layer.out_channels)


@pytest.mark.parametrize("network", sorted(TORCHVISION))
def test_tables_add_up_to_the_torchvision_models(network):
    """conv weights and biases + a BatchNorm (2 per channel) after each conv without bias + classifier."""
    published, classifier_inputs = TORCHVISION[network]
    layers = workloads.NETWORKS[network]
    conv = sum(layer.count * weights(layer) for layer in layers)
    batch_norm = sum(layer.count * 2 * layer.out_channels for layer in layers if not layer.bias)
    classifier = classifier_inputs * 1000 + 1000 if classifier_inputs else 0
    assert conv + batch_norm + classifier == published


def test_xception_adds_up_to_the_keras_model():
    """Keras counts 4 numbers per BatchNorm channel (with the running statistics); a separable
    convolution has one BatchNorm, after its pointwise half.  keras.applications.Xception: 22,910,480."""
    layers = workloads.NETWORKS["xception"]
    conv = sum(layer.count * weights(layer) for layer in layers)
    batch_norm = sum(layer.count * 4 * layer.out_channels for layer in layers if layer.family != "depthwise")
    assert conv + batch_norm + 2048 * 1000 + 1000 == 22_910_480


@pytest.mark.parametrize("groups", [3, 8])
def test_shufflenet_v1_matches_the_papers_complexity(groups):
    """Table 1 of the ShuffleNet paper: 137 M multiply-adds at 1x width for g = 3 and g = 8
    (rounded to 1 M; no parameter count is published, and torchvision has no v1)."""
    layers = workloads.NETWORKS[f"shufflenet_v1_g{groups}"]
    multiply_adds = sum(layer.count * cost.flops(layer.spec()) // 2 for layer in layers)
    assert multiply_adds == pytest.approx(137e6, rel=0.01)


@pytest.mark.parametrize("network", sorted(workloads.NETWORKS))
def test_layers_are_distinct_named_and_valid(network):
    layers = workloads.NETWORKS[network]
    assert len({layer.name for layer in layers}) == len(layers)
    shapes = [dataclass_shape(layer) for layer in layers]
    assert len(set(shapes)) == len(shapes), "one shape, one layer (repeats are counted)"
    for layer in layers:
        assert workloads.layer(layer.key) is layer
        spec = layer.spec(batch=2, dtype="float64")
        assert isinstance(spec, ConvSpec) and spec.out_height == layer.out_size >= 1
        assert layer.count >= 1 and layer.describe()


def dataclass_shape(layer):
    return (layer.in_channels, layer.out_channels, layer.size, layer.kernel, layer.stride, layer.groups,
            layer.padding, layer.bias)


def test_families_are_tagged_from_the_shapes():
    family = {layer.key: layer.family for layer in workloads.suite("all")}
    assert family["shufflenet_v1_g3/s3_gconv1_x7"] == "grouped"  # grouped 1x1
    assert family["shufflenet_v1_g3/s2_gconv1_first"] == "pointwise"  # not grouped in the paper
    assert family["efficientnet_b0/b6_dw_x3"] == "depthwise"  # 5x5
    assert family["xception/middle_sep_pw_x25"] == "pointwise"
    assert family["resnet50/conv3_3x3_x3"] == "grouped"  # dense 3x3: the grouped kernel with G = 1
    assert set(family.values()) == set(workloads.FAMILIES)


def test_suites():
    everything = workloads.suite("all")
    assert len(everything) == sum(len(layers) for layers in workloads.NETWORKS.values())
    by_family = [layer for f in workloads.FAMILIES for layer in workloads.suite(f)]
    assert collections.Counter(map(id, by_family)) == collections.Counter(map(id, everything))
    default = workloads.suite("default")
    assert {layer.family for layer in default} == set(workloads.FAMILIES)
    assert {layer.network for layer in default} == set(workloads.NETWORKS)
    both = workloads.suite("mobilenet_v2, xception")
    assert both == workloads.NETWORKS["mobilenet_v2"] + workloads.NETWORKS["xception"]
    one = workloads.suite("resnet50/conv3_reduce_x3,mobilenet_v2/b2_expand")
    assert [layer.name for layer in one] == ["conv3_reduce_x3", "b2_expand"]
    with pytest.raises(ValueError, match="suite: no layer 'b9' in mobilenet_v2"):
        workloads.suite("mobilenet_v2/b9")
    with pytest.raises(ValueError, match="suite must be .* got 'mobilenet'"):
        workloads.suite("mobilenet")
    with pytest.raises(KeyError, match="no layer 'b9' in mobilenet_v2"):
        workloads.layer("mobilenet_v2/b9")


def test_against_torchvision_when_installed():
    """Each Conv2d that torchvision's model runs on a 224x224 image, counted by shape, is in the table."""
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models", reason="torchvision is not installed")
    for network in TORCHVISION:
        model = getattr(models, network)().eval()
        seen = collections.Counter()

        def record(module, inputs, output):
            seen[(module.in_channels, module.out_channels, inputs[0].shape[2], module.kernel_size[0],
                  module.stride[0], module.groups, module.padding[0], module.bias is not None)] += 1

        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.register_forward_hook(record)
        with torch.no_grad():
            model(torch.zeros(1, 3, 224, 224))
        ours = collections.Counter()
        for layer in workloads.NETWORKS[network]:
            ours[dataclass_shape(layer)] += layer.count
        assert seen == ours, network
