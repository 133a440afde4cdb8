"""Roofline charts of a benchmark report (needs matplotlib: ``pip install 'numbaconv[plot]'``).

x: arithmetic intensity (FLOPs per byte of compulsory traffic, `numbaconv.cost`);
y: attained GFLOP/s.  The two roofs are the ones measured in the same run
(`numbaconv.limits`).  One point per layer and contender: colour = family,
marker = contender; a thin line joins numbaconv's point to torch's for the same layer, so
the gap to the peer reads at a glance.
"""

from __future__ import annotations

import math

COLOURS = {"pointwise": "#1f77b4", "depthwise": "#ff7f0e", "grouped": "#2ca02c"}
# (label, the row's time key, marker, filled, size)
CONTENDERS = [
    ("numbaconv", "time_s", "o", True, 46),
    ("PyTorch CPU (best layout)", "torch_s", "s", False, 40),
    ("NumPy BLAS matmul (same GEMM)", "blas_s", "^", False, 40),
    ("NumPy reference", "reference_s", "x", True, 22),
]


def _require_matplotlib():
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install 'numbaconv[plot]' (or pip install matplotlib)") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roofline(report: dict, path: str, title: str | None = None) -> str:
    """Draw the report's roofline chart to ``path`` (PNG, SVG or PDF by its suffix); return ``path``."""
    plt = _require_matplotlib()
    from matplotlib.lines import Line2D

    rows, limits = report["rows"], report.get("limits")
    if not rows:
        raise ValueError("the report has no rows to plot")
    if not limits:
        raise ValueError("the report has no measured limits (run numbaconv bench to measure them)")
    peak = limits["peak_flops_per_s"] / 1e9
    bandwidth = limits["bandwidth_bytes_per_s"] / 1e9
    intensities = [r["intensity"] for r in rows]
    low = min(min(intensities) / 4, peak / bandwidth / 40)  # room left of the points for the roof label
    high = max(max(intensities) * 2, peak / bandwidth * 4)

    fig, ax = plt.subplots(figsize=(10, 6.4), dpi=130)
    steps = 200
    grid = [low * (high / low) ** (i / steps) for i in range(steps + 1)]
    ax.plot(grid, [min(peak, a * bandwidth) for a in grid], color="black", lw=2, zorder=1)
    ridge = peak / bandwidth
    ax.axvline(ridge, color="grey", lw=0.8, ls=":", zorder=0)
    if limits.get("blas_flops_per_s"):  # BLAS's rate, a peer under the FMA roof
        blas = limits["blas_flops_per_s"] / 1e9
        ax.plot(grid, [min(blas, a * bandwidth) for a in grid], color="grey", lw=1, ls="--", zorder=1)
        ax.text(high, blas, f"BLAS {blas:.0f} GFLOP/s ", ha="right", va="bottom", fontsize=8, color="grey")

    for row in rows:  # numbaconv <-> torch, per layer
        if row.get("torch_s"):
            ax.plot([row["intensity"]] * 2, [row["flops"] / row["time_s"] / 1e9, row["flops"] / row["torch_s"] / 1e9],
                    color=COLOURS[row["kind"]], lw=0.6, alpha=0.45, zorder=2)
    used = []
    for label, key, marker, filled, size in CONTENDERS:
        points = [r for r in rows if r.get(key)]
        if not points:
            continue
        used.append((label, marker, filled, size))
        for kind, colour in COLOURS.items():
            subset = [r for r in points if r["kind"] == kind]
            if not subset:
                continue
            xs = [r["intensity"] for r in subset]
            ys = [r["flops"] / r[key] / 1e9 for r in subset]
            if filled:
                ax.scatter(xs, ys, s=size, marker=marker, color=colour, alpha=0.9 if label == "numbaconv" else 0.5,
                           zorder=4 if label == "numbaconv" else 3, linewidths=1)
            else:
                ax.scatter(xs, ys, s=size, marker=marker, facecolors="none", edgecolors=colour, linewidths=1.2, zorder=3)

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    all_rates = [r["flops"] / r[key] / 1e9 for _, key, *_ in CONTENDERS for r in rows if r.get(key)]
    ax.set_ylim(min(min(all_rates) / 2, peak / 1e3), peak * 3)
    ax.set_xlabel("arithmetic intensity (FLOP per byte of compulsory memory traffic)")
    ax.set_ylabel("attained GFLOP/s")
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.08)
    # roof labels where no point can be: above the roofs, left of the ridge; the slanted one along its line
    ax.text(low * 1.15, peak * 1.12, f"compute roof: {peak:.0f} GFLOP/s (BLAS GEMM)", ha="left", va="bottom", fontsize=9)
    fig.canvas.draw()
    start, end = low * 1.15, min(ridge / 1.5, low * 30)
    (x0, y0), (x1, y1) = ax.transData.transform([(start, start * bandwidth), (end, end * bandwidth)])
    ax.text(start, start * bandwidth * 1.35, f"memory roof: {bandwidth:.1f} GB/s", fontsize=9, ha="left",
            va="bottom", rotation=math.degrees(math.atan2(y1 - y0, x1 - x0)), rotation_mode="anchor")
    ax.text(ridge * 1.06, peak * 1.12, f"ridge: {ridge:.1f} FLOP/B", fontsize=8, color="grey", va="bottom")
    families = [Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in COLOURS.items()
                if any(r["kind"] == k for r in rows)]
    markers = [Line2D([], [], marker=m, ls="", markersize=math.sqrt(s), label=label, color="dimgrey",
                      markerfacecolor="dimgrey" if filled else "none") for label, m, filled, s in used]
    while len(families) < len(markers):  # one column per kind of entry
        families.append(Line2D([], [], ls="", label=""))
    ax.legend(handles=families + markers, loc="lower right", ncol=2, fontsize=8, title="colour: family, marker: contender",
              title_fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
