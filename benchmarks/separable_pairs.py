"""Separable pairs: `numbaconv.separable_conv2d` (depthwise then pointwise, fused) against each peer's
depthwise + pointwise pair, on the networks' own pairs.

    python benchmarks/separable_pairs.py --batch 1 --json benchmarks/results/<machine>-separable-b1.json

A pair is a depthwise layer and the pointwise layer that reads its output in `numbaconv.workloads`
(MobileNetV2's expand-depthwise-project blocks, EfficientNet-B0's, Xception's separable convolutions);
pairs of the same shape are timed once.  numbaconv runs the pair as one call, in NCHW and in NHWC data, with
frozen weights and ``out=``.  Each peer (torch, ONNX Runtime, OpenVINO, in processes of their own exactly as
``numbaconv bench`` runs them, `numbaconv.peers`) runs the depthwise layer and then the pointwise layer on the
depthwise layer's output, each call checked against the float64 reference; its pair time is the sum of the
two medians in one layout.  numbaconv and the peers are timed twice, A B A B, and each gets the mean of its
two medians.  Both halves carry a bias and no activation (the same work on every side).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys

import numpy as np

import numbaconv
from numbaconv import bench, peers, reference, timing, workloads


def pairs(networks=("mobilenet_v2", "efficientnet_b0", "xception")) -> list:
    """(depthwise layer, pointwise layer) for each depthwise layer whose output the next layer of its network
    reads through a 1x1 convolution, one per shape."""
    found, seen = [], set()
    for network in networks:
        layers = workloads.NETWORKS[network]
        for first, second in zip(layers, layers[1:]):
            dw, pw = first.spec(), second.spec()
            if dw.family != "depthwise" or pw.family != "pointwise" or dw.channel_multiplier != 1:
                continue
            if (pw.in_channels, pw.in_height, pw.in_width) != (dw.out_channels, dw.out_height, dw.out_width):
                continue
            shape = (first.in_channels, first.size, first.kernel, first.stride, second.out_channels)
            if shape not in seen:
                seen.add(shape)
                found.append((first, second))
    return found


def problem(dw_layer, pw_layer, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    channels, size = dw_layer.in_channels, dw_layer.size
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    dw_weight = (rng.standard_normal((channels, 1, dw_layer.kernel, dw_layer.kernel)) / dw_layer.kernel).astype(
        np.float32)
    dw_bias = rng.standard_normal(channels).astype(np.float32)
    pw_weight = (rng.standard_normal((pw_layer.out_channels, channels, 1, 1)) / math.sqrt(channels)).astype(
        np.float32)
    pw_bias = rng.standard_normal(pw_layer.out_channels).astype(np.float32)
    dw_kwargs = dict(stride=dw_layer.stride, padding=dw_layer.padding, groups=channels)
    return x, dw_weight, dw_bias, pw_weight, pw_bias, dw_kwargs


def ours(x, dw_weight, dw_bias, pw_weight, pw_bias, dw_kwargs, layout):
    """numbaconv's pair as one call on frozen weights into a kept ``out``; (call, output in NCHW)."""
    frozen = []
    for weight in (dw_weight, pw_weight):
        weight = weight.copy()
        weight.setflags(write=False)
        frozen.append(weight)
    data = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    kwargs = dict(stride=dw_kwargs["stride"], padding=dw_kwargs["padding"], layout=layout)
    out = numbaconv.separable_conv2d(data, frozen[0], frozen[1], dw_bias, pw_bias, **kwargs)

    def call():
        return numbaconv.separable_conv2d(data, frozen[0], frozen[1], dw_bias, pw_bias, out=out, **kwargs)

    call()
    return call, (out if layout == "NCHW" else out.transpose(0, 3, 1, 2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    parser.add_argument("--peers", default="all", help="all, none, or a comma list of " + ", ".join(peers.NAMES))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import numba

    threads = numba.get_num_threads()
    names = [] if args.peers == "none" else list(peers.available()) if args.peers == "all" else args.peers.split(",")
    processes = {name: peers.PeerProcess(name, threads) for name in names}
    rows = []
    try:
        chosen = pairs()[: args.limit]
        for index, (dw_layer, pw_layer) in enumerate(chosen, start=1):
            x, dw_weight, dw_bias, pw_weight, pw_bias, dw_kwargs = problem(dw_layer, pw_layer, args.batch)
            middle = reference.conv2d(x.astype(np.float64), dw_weight.astype(np.float64),
                                      dw_bias.astype(np.float64), **dw_kwargs)
            expected = reference.conv2d(middle, pw_weight.astype(np.float64), pw_bias.astype(np.float64))
            middle32 = middle.astype(np.float32)
            calls, errors = {}, {}
            for layout in ("NCHW", "NHWC"):
                call, output = ours(x, dw_weight, dw_bias, pw_weight, pw_bias, dw_kwargs, layout)
                calls[layout] = call
                errors[layout] = peers.verify(output, expected)
            ours_s = {layout: [] for layout in calls}
            peer_s: dict = {}
            notes = []
            for _ in range(2):  # A B A B
                for layout, call in calls.items():
                    ours_s[layout].append(timing.measure(call, args.repeat).median_s)
                for name, process in processes.items():
                    halves = []
                    for data, weight, bias, kwargs, reference_output in (
                            (x, dw_weight, dw_bias, dw_kwargs, middle), (middle32, pw_weight, pw_bias, {}, expected)):
                        found, note = process.time(data, weight, bias, kwargs, reference_output, args.repeat)
                        halves.append(found)
                        if note:
                            notes.append(f"{name}: {note}")
                    for key in halves[0]:
                        first, second = halves[0][key], halves[1].get(key)
                        if first["median_s"] is None or second is None or second["median_s"] is None:
                            notes.append(f"{key}: wrong output")
                            continue
                        peer_s.setdefault(key, []).append(first["median_s"] + second["median_s"])
            ours_median = {layout: sum(values) / len(values) for layout, values in ours_s.items()}
            peer_median = {key: sum(values) / len(values) for key, values in peer_s.items() if len(values) == 2}
            best = min(peer_median, key=peer_median.get) if peer_median else None
            row = dict(pair=f"{dw_layer.key} + {pw_layer.name}", depthwise=dw_layer.describe(),
                       pointwise=pw_layer.describe(), batch=args.batch, ours_nchw_s=ours_median["NCHW"],
                       ours_nhwc_s=ours_median["NHWC"], error_nchw=errors["NCHW"], error_nhwc=errors["NHWC"],
                       peers=peer_median, best_peer=best, best_peer_s=peer_median.get(best),
                       notes="; ".join(dict.fromkeys(notes)) or None)
            if best:
                row["speedup_nchw_vs_best_peer"] = peer_median[best] / ours_median["NCHW"]
                row["speedup_nhwc_vs_best_peer"] = peer_median[best] / ours_median["NHWC"]
            rows.append(row)
            print(f"[{index}/{len(chosen)}] {row['pair']:<44} NCHW {ours_median['NCHW'] * 1e6:8.1f} us  "
                  f"NHWC {ours_median['NHWC'] * 1e6:8.1f} us  best peer {best} "
                  f"{(row['best_peer_s'] or math.nan) * 1e6:8.1f} us  "
                  f"-> {row.get('speedup_nchw_vs_best_peer', math.nan):.2f}x / "
                  f"{row.get('speedup_nhwc_vs_best_peer', math.nan):.2f}x", flush=True)
    finally:
        for process in processes.values():
            process.close()

    summary = {layout: bench.geometric_mean(row.get(f"speedup_{layout}_vs_best_peer") for row in rows)
               for layout in ("nchw", "nhwc")}
    worst = {layout: min((row.get(f"speedup_{layout}_vs_best_peer") or math.inf) for row in rows)
             for layout in ("nchw", "nhwc")}
    print(f"geometric mean over {len(rows)} pairs, vs the best peer's pair: NCHW data {summary['nchw']:.2f}x "
          f"(worst {worst['nchw']:.2f}x), NHWC data {summary['nhwc']:.2f}x (worst {worst['nhwc']:.2f}x)")
    if args.json:
        document = dict(date=datetime.date.today().isoformat(), threads=threads, batch=args.batch,
                        machine=dict(python=sys.version.split()[0], platform=platform.platform(),
                                     numbaconv=numbaconv.__version__, peers=peers.available()),
                        summary=dict(geomean_vs_best_peer=summary, worst_vs_best_peer=worst), rows=rows)
        with open(args.json, "w") as handle:
            json.dump(document, handle, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
