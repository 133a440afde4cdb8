"""Draw the documentation's figures from the library itself (run by the MkDocs hook before every
build, or by hand: ``python docs/scripts/figures.py [OUT_DIR]``; needs matplotlib).

Every number drawn comes from numbaconv: connectivity from a ConvSpec's group arithmetic,
parameters / FLOPs / bytes from :mod:`numbaconv.cost` on layers of :mod:`numbaconv.workloads`,
the shuffle permutation from :func:`numbaconv.channel_shuffle` itself, the roofline charts from
the committed benchmark results through :mod:`numbaconv.plot`.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
# the committed results drawn as roofline charts: figure name -> JSON
ROOFLINES = {
    "roofline-cpu-forward.png": "cpu-amd-epyc-2core-2026-11-25.json",
    "roofline-cpu-backward.png": "cpu-amd-epyc-2core-2026-11-25-backward.json",
}
FAMILY_COLOURS = {"pointwise": "#1f77b4", "depthwise": "#ff7f0e", "grouped": "#2ca02c"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def connectivity(path):
    """Which input channel feeds which output channel: standard, grouped (G=4), depthwise (G=C)."""
    import numbaconv

    plt = _plt()
    channels = 8
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.6), dpi=130)
    for ax, groups, title in zip(axes, (1, 4, channels), ("standard (G = 1)", "grouped (G = 4)",
                                                        "depthwise (G = C)")):
        spec = numbaconv.ConvSpec.from_shapes((1, channels, 8, 8), (channels, channels // groups, 3, 3), None,
                                              1, 1, 1, groups)
        cig, cog = spec.in_channels_per_group, spec.out_channels_per_group
        for o in range(channels):
            for i in range(channels):
                if i // cig == o // cog:  # output o of group g reads the inputs of group g only
                    ax.plot([0, 1], [i, o], color=plt.cm.tab10((o // cog) % 10), lw=1.2, alpha=0.8)
        ax.scatter([0] * channels, range(channels), color="black", s=18, zorder=3)
        ax.scatter([1] * channels, range(channels), color="black", s=18, zorder=3)
        params = numbaconv.cost.parameter_count(spec)
        ax.set_title(f"{title}\n{params} weights ({channels}x{cig}x3x3)", fontsize=10)
        ax.set_xticks([0, 1], ["input\nchannels", "output\nchannels"])
        ax.set_yticks([])
        ax.set_xlim(-0.15, 1.15)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def grouped_cost(path, limits):
    """Parameters, FLOPs, bytes and the roofline time of ResNeXt's 3x3 (256 -> 256 @ 28) across G."""
    from numbaconv import cost, workloads

    plt = _plt()
    layer = workloads.layer("resnext50_32x4d/conv3_grouped_x3")
    groups = [g for g in (1, 2, 4, 8, 16, 32, 64, 128, 256) if layer.in_channels % g == 0]
    specs = [workloads.Layer(**{**layer.__dict__, "groups": g}).spec() for g in groups]
    base = specs[0]
    series = {
        "parameters": [cost.parameter_count(s) / cost.parameter_count(base) for s in specs],
        "FLOPs": [cost.flops(s) / cost.flops(base) for s in specs],
        "minimum bytes": [cost.min_bytes(s) / cost.min_bytes(base) for s in specs],
        "roofline time": [cost.roofline_seconds(s, limits["peak_flops_per_s"], limits["bandwidth_bytes_per_s"]) /
                          cost.roofline_seconds(base, limits["peak_flops_per_s"], limits["bandwidth_bytes_per_s"])
                          for s in specs],
    }
    fig, ax = plt.subplots(figsize=(7.5, 4.4), dpi=130)
    for (name, values), style in zip(series.items(), ("o-", "s--", "^-", "D-")):
        ax.plot(groups, values, style, label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(groups, [str(g) for g in groups])
    ax.set_xlabel("groups G")
    ax.set_ylabel("relative to G = 1")
    ax.set_title(f"{layer.in_channels}->{layer.out_channels} 3x3 @{layer.size}x{layer.size} "
                 f"(ResNeXt-50 conv3 uses G = {layer.groups})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def bottleneck_and_fire(path):
    """Channel widths and weights of a ResNet-50 bottleneck and a SqueezeNet fire module."""
    from numbaconv import cost, workloads

    plt = _plt()
    blocks = {
        "ResNet-50 bottleneck (conv3)": ["resnet50/conv3_reduce_x3", "resnet50/conv3_3x3_x3", "resnet50/conv3_expand_x4"],
        "SqueezeNet fire4": ["squeezenet1_0/fire4_squeeze", "squeezenet1_0/fire4_expand1x1",
                             "squeezenet1_0/fire4_expand3x3"],
    }
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8), dpi=130)
    for ax, (title, keys) in zip(axes, blocks.items()):
        layers = [workloads.layer(k) for k in keys]
        names = [f"{l.name.split('_', 1)[1].rsplit('_x', 1)[0]}\n{l.in_channels}->{l.out_channels} "
                 f"{l.kernel}x{l.kernel}" for l in layers]
        weights = [cost.parameter_count(l.spec()) for l in layers]
        colours = [FAMILY_COLOURS[l.spec().family] for l in layers]
        bars = ax.bar(range(len(layers)), weights, color=colours)
        for bar, value in zip(bars, weights):
            ax.annotate(f"{value:,}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom",
                        fontsize=8)
        ax.set_xticks(range(len(layers)), names, fontsize=8)
        ax.set_ylabel("weights (+ bias)")
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.15)
    fig.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in FAMILY_COLOURS.values()],
               labels=[f"{family} family" for family in FAMILY_COLOURS], loc="upper center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path)
    plt.close(fig)


def separable_cost(path):
    """Standard 3x3 against depthwise + pointwise for MobileNetV2- and Xception-sized layers."""
    from numbaconv import ConvSpec, cost

    plt = _plt()
    cases = [(32, 64, 112), (128, 128, 56), (256, 256, 28), (512, 512, 14), (728, 728, 19)]
    labels, ratios_params, ratios_flops = [], [], []
    for c_in, c_out, size in cases:
        x = (1, c_in, size, size)
        standard = ConvSpec.from_shapes(x, (c_out, c_in, 3, 3), None, 1, 1, 1, 1)
        depthwise = ConvSpec.from_shapes(x, (c_in, 1, 3, 3), None, 1, 1, 1, c_in)
        pointwise = ConvSpec.from_shapes(x, (c_out, c_in, 1, 1), None, 1, 0, 1, 1)
        labels.append(f"{c_in}->{c_out}\n@{size}")
        ratios_params.append(cost.parameter_count(standard) /
                             (cost.parameter_count(depthwise) + cost.parameter_count(pointwise)))
        ratios_flops.append(cost.flops(standard) / (cost.flops(depthwise) + cost.flops(pointwise)))
    fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=130)
    positions = np.arange(len(cases))
    ax.bar(positions - 0.18, ratios_params, 0.36, label="parameters", color="#1f77b4")
    ax.bar(positions + 0.18, ratios_flops, 0.36, label="FLOPs", color="#ff7f0e")
    ax.axhline(9, color="grey", ls=":", lw=1)
    ax.annotate("k^2 = 9", (len(cases) - 0.6, 9.1), fontsize=8, color="grey")
    ax.set_xticks(positions, labels, fontsize=8)
    ax.set_ylabel("standard 3x3 / separable")
    ax.set_title("how much cheaper depthwise + pointwise is than one 3x3 convolution", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def shuffle(path):
    """Where channel_shuffle(x, 3) sends each of 12 channels (colour: the group it came from)."""
    import numbaconv

    plt = _plt()
    channels, groups = 12, 3
    x = np.arange(channels, dtype=np.float32).reshape(channels, 1, 1)
    moved = numbaconv.channel_shuffle(x, groups)[:, 0, 0].astype(int)  # moved[j]: the channel now at j
    fig, ax = plt.subplots(figsize=(7.5, 3.2), dpi=130)
    per_group = channels // groups
    for j, source in enumerate(moved):
        colour = plt.cm.tab10(source // per_group)
        ax.plot([source, j], [1, 0], color=colour, lw=1.6)
    ax.scatter(range(channels), [1] * channels, c=[plt.cm.tab10(c // per_group) for c in range(channels)], s=60,
               zorder=3)
    ax.scatter(range(channels), [0] * channels, c=[plt.cm.tab10(s // per_group) for s in moved], s=60, zorder=3)
    ax.set_yticks([0, 1], ["after\nshuffle", "before\n(3 groups)"])
    ax.set_xticks(range(channels))
    ax.set_xlabel("channel")
    ax.set_title("channel_shuffle(x, groups=3): the next grouped layer sees every group", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def rooflines(out_dir):
    from numbaconv import plot

    for name, result in ROOFLINES.items():
        report = json.loads((RESULTS / result).read_text())
        direction = report["settings"].get("direction", "forward")
        plot.roofline(report, str(out_dir / name), title=f"{report['machine']['cpu']}: {direction} pass, "
                      f"{report['settings']['dtype']}, batch {report['settings']['batch']}")


def main(out_dir=None) -> list[pathlib.Path]:
    out_dir = pathlib.Path(out_dir or ROOT / "docs" / "figures")
    out_dir.mkdir(parents=True, exist_ok=True)
    forward = json.loads((RESULTS / ROOFLINES["roofline-cpu-forward.png"]).read_text())
    connectivity(out_dir / "connectivity.png")
    grouped_cost(out_dir / "grouped-cost.png", forward["limits"])
    bottleneck_and_fire(out_dir / "bottleneck-fire.png")
    separable_cost(out_dir / "separable-cost.png")
    shuffle(out_dir / "shuffle.png")
    rooflines(out_dir)
    return sorted(out_dir.glob("*.png"))


if __name__ == "__main__":
    for written in main(sys.argv[1] if len(sys.argv) > 1 else None):
        print(written)
