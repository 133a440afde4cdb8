"""Turn a benchmark report (the JSON of ``numbaconv bench --json``) into tables: the rows for
the terminal, and Markdown for README and the docs (``numbaconv report FILE --markdown``)."""

from __future__ import annotations

import statistics

import math

COLUMNS = ["layer", "family", "shape", "kernel", "first call ms", "ms", "after gap ms", "GFLOP/s", "GB/s", "roofline",
           "vs best peer", "best peer", "vs torch", "vs BLAS", "vs reference"]
TEXT_COLUMNS = ("layer", "family", "shape", "kernel", "best peer")

NOTES = ("ms: median of the samples after a warm-up call (a sample: enough calls in a row to last 1 ms; samples until "
         "their interquartile range is within 5% of the median or the time budget is spent; a row whose spread stays "
         "over 10%, or during whose timing other work took over 10% of the cores, is noisy, its time marked ~).  first call: that kernel's first call in the process "
         "(JIT compile or load from Numba's cache; the run's first also pays Numba's start-up), blank when loaded before.  roofline: the least time this "
         "machine's measured roofs allow / our time (1 = at the roof; above 1 when the data stays in cache).  "
         "vs X: X's time / numbaconv's time (above 1: numbaconv faster).  vs BLAS: the same GEMM through NumPy's "
         "matmul.  best peer: the fastest of torch, ONNX Runtime and OpenVINO in NCHW or NHWC, each timed in a process "
         "of its own after its output was checked; numbaconv and the peers are timed twice, A B A B, and each gets "
         "the mean of its two medians.  numbaconv gets the weights read-only (frozen), as a deployed model "
         "holds them, and keeps their packing, as OpenVINO and ONNX Runtime pack theirs once.  after gap: "
         "median of a call made after an idle gap and one call (numbaconv.timing).")


def ratio(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def milliseconds(seconds) -> str:
    return "" if seconds is None or not math.isfinite(seconds) else f"{seconds * 1e3:.3f}"


def fraction(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.0%}"


def cells(row: dict) -> list[str]:
    """One row of the table, from a row of the report (a dict, as in the JSON; a report written
    before a column existed shows "-" there)."""
    return [row["layer"], row["kind"], row["shape"], row["kernel"], milliseconds(row["first_call_s"]),
            milliseconds(row["time_s"]), milliseconds(row.get("gap_s")) or "-", f"{row['gflops']:.1f}",
            f"{row['gbps']:.1f}", fraction(row["roofline_fraction"]), ratio(row.get("speedup_vs_best_peer")),
            row.get("best_peer") or "-", ratio(row["speedup_vs_torch"]), ratio(row["fraction_of_blas"]),
            ratio(row["speedup_vs_reference"])]


# The default view: what a reader needs, within 100 columns (`compact_cells`); ``--wide`` shows `COLUMNS`.
COMPACT_COLUMNS = ["layer", "family", "shape", "ms", "rate", "roof", "vs ref", "vs peer"]
COMPACT_TEXT_COLUMNS = ("layer", "family", "shape")
COMPACT_NOTES = ("ms: median of the samples after a warm-up call (~: noisy: the samples spread over 10%, or other "
                 "work took over 10% of the cores).  rate: "
                 "GB/s for depthwise layers (memory-bound), GFLOP/s for the others.  roof: the least time this machine's measured roofs allow / our time.  vs ref, vs peer: "
                 "the NumPy reference's and the fastest peer's (torch, ONNX Runtime, OpenVINO, any layout; on a GPU and "
                 "for the backward pass, torch) time / "
                 "numbaconv's (above 1: numbaconv faster).  --wide: every column, the peers' names and the "
                 "timing method.")
NETWORK_ABBREVIATIONS = {"efficientnet_b0": "effnet", "mobilenet_v2": "mbv2", "resnet50": "rn50",
                         "resnext50_32x4d": "rnx50", "shufflenet_v1_g3": "shv1g3", "shufflenet_v1_g8": "shv1g8",
                         "shufflenet_v2_x1_0": "shv2", "squeezenet1_0": "sqz", "xception": "xcp"}


def short_layer(key: str) -> str:
    """``network/name`` with the network abbreviated (``mobilenet_v2/b2_dw`` -> ``mbv2/b2_dw``)."""
    network, _, name = key.partition("/")
    return f"{NETWORK_ABBREVIATIONS.get(network, network)}/{name}" if name else key


def short_ratio(value) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.0f}x" if value >= 100 else f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def short_milliseconds(seconds) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    value = seconds * 1e3
    return f"{value:.0f}" if value >= 1000 else f"{value:.1f}" if value >= 100 else f"{value:.3f}"


def compact_cells(row: dict) -> list[str]:
    """One row of the default (compact) table; a noisy row's time ends in "~" (`noise_lines`)."""
    rate = f"{row['gbps']:.1f} GB/s" if row["kind"] == "depthwise" else f"{row['gflops']:.0f} GF/s"
    mark = "~" if row.get("noisy") else ""
    return [short_layer(row["layer"]), row["kind"], row["shape"], short_milliseconds(row["time_s"]) + mark, rate,
            fraction(row["roofline_fraction"]), short_ratio(row["speedup_vs_reference"]),
            short_ratio(peer_speedup(row))]


def peer_speedup(row: dict) -> float | None:
    """The fastest peer's time / numbaconv's: the peer libraries' best where they ran (a CPU forward pass),
    else torch's (the CUDA bench's cuDNN, the backward bench)."""
    best = row.get("speedup_vs_best_peer")
    return best if best is not None else row.get("speedup_vs_torch")


def plain_table(header: list[str], body: list[list[str]], text_columns=()) -> list[str]:
    """Aligned columns one space apart, no box: for pipes, files and logs (text left, numbers right)."""
    widths = [max([len(cell) for cell in column] or [0]) for column in zip(header, *body)]

    def line(cells):
        return " ".join(cell.ljust(width) if name in text_columns else cell.rjust(width)
                        for name, cell, width in zip(header, cells, widths)).rstrip()

    return [line(header)] + [line(cells) for cells in body]


def title(report: dict) -> str:
    settings, machine = report["settings"], report["machine"]
    direction = " backward pass," if settings.get("direction") == "backward" else ""
    where = (f"{machine['gpu']}" if settings["device"] == "cuda" and machine.get("gpu")
             else f"{machine['numba_threads']} threads, {machine['cpu']}")
    return (f"numbaconv bench:{direction} suite {settings['suite']}, batch {settings['batch']}, {settings['dtype']}, "
            f"{settings['device']}, {where}")


def limits_line(report: dict) -> str:
    limits = report.get("limits")
    if not limits:
        return ""
    if "fma" in limits:  # the FMA peak as the compute roof, BLAS beside it as a peer
        return (f"roofs measured in the run: {limits['peak_flops_per_s'] / 1e9:.0f} GFLOP/s FMA peak "
                f"({limits['fma']}; BLAS peer {limits['blas_flops_per_s'] / 1e9:.0f} GFLOP/s, {limits['gemm']}), "
                f"{limits['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s copy ({limits['copy']})")
    return (f"roofs measured in the run: {limits['peak_flops_per_s'] / 1e9:.0f} GFLOP/s ({limits['gemm']}), "
            f"{limits['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s copy ({limits['copy']})")


def noise_lines(report: dict) -> list[str]:
    """Warnings when the machine was busy: rows whose samples (numbaconv's or the best peer's) spread over
    timing.NOISY_DISPERSION of their median or during whose timing other work took over
    timing.OTHER_LOAD_LIMIT of the cores, and a GEMM rate (NumPy's BLAS) that moved during the run."""
    lines = []
    rows = report["rows"]
    sampling = report["settings"].get("sampling") or {}
    spread_limit, load_limit = sampling.get("noisy_dispersion", 0.1), sampling.get("other_load_limit", 0.1)
    noisy = [row for row in rows if row.get("noisy")]
    if noisy:
        lines.append(f"noisy: {len(noisy)} of {len(rows)} rows (time marked ~) had samples spread over "
                     f"{spread_limit:.0%} of their median (numbaconv's or the best peer's) or other work taking over "
                     f"{load_limit:.0%} of the cores while they were timed: their ratios may be off, re-run them on "
                     "an idle machine")
    loads = [row["other_load"] for row in rows if row.get("other_load") is not None]
    if loads and statistics.mean(loads) > load_limit:
        lines.append(f"noisy run: other work took {statistics.mean(loads):.0%} of the cores on average (up to "
                     f"{max(loads):.0%}) while numbaconv was timed")
    check = report["settings"].get("machine_check") or {}
    before, after = check.get("gemm_before_flops_per_s"), check.get("gemm_after_flops_per_s")
    if before and after and abs(after / before - 1) > check.get("tolerance", 0.25):
        lines.append(f"noisy run: a 768x768 GEMM (NumPy's BLAS) ran at {before / 1e9:.0f} GFLOP/s before the layers "
                     f"and {after / 1e9:.0f} after: other work shared the cores")
    return lines


def summary_lines(report: dict) -> list[str]:
    lines = noise_lines(report) + ["geometric means per family:"]
    for kind, values in report["summary"]["families"].items():
        line = f"  {kind:10s} {values['layers']:3d} layers  "
        if values.get("worst_speedup_vs_best_peer") is not None:
            line += (f"vs best peer {ratio(values.get('geomean_speedup_vs_best_peer'))} (worst "
                     f"{ratio(values.get('worst_speedup_vs_best_peer'))}, after a gap "
                     f"{ratio(values.get('geomean_gap_speedup_vs_best_peer'))})  ")
        line += (f"vs torch {ratio(values['geomean_speedup_vs_torch'])}  vs BLAS "
                 f"{ratio(values['geomean_fraction_of_blas'])}  roofline {fraction(values['geomean_roofline_fraction'])}"
                 f"  vs reference {ratio(values['geomean_speedup_vs_reference'])}")
        slowdown = values.get("geomean_gap_slowdown")
        if slowdown is not None and math.isfinite(slowdown):
            line += f"  after a gap / back to back {ratio(slowdown)} (p99 {ratio(values.get('geomean_gap_p99_slowdown'))})"
        lines.append(line)
    notes = report["settings"].get("peer_notes") or {}
    if notes:
        lines.append("peers left out: " + ", ".join(f"{name} ({why})" for name, why in notes.items()))
    first = report.get("first_call_s") or {}
    if first:
        lines.append("first call per kernel (compile or cache load): "
                     + ", ".join(f"{name} {seconds * 1e3:.0f} ms" for name, seconds in first.items()))
    return lines


def _markdown(header: list[str], body: list[list[str]]) -> str:
    align = ["---" if h in TEXT_COLUMNS or h in ("network", "family", "layout") else "---:" for h in header]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


def markdown_rows(report: dict) -> str:
    return _markdown(COLUMNS, [cells(row) for row in report["rows"]])


def _family_cells(values: dict) -> list[str]:
    return [str(values["layers"]), ratio(values["geomean_speedup_vs_reference"]), ratio(values["geomean_speedup_vs_torch"]),
            ratio(values["geomean_fraction_of_blas"]), fraction(values["geomean_roofline_fraction"])]


FAMILY_HEADER = ["layers", "vs reference", "vs torch", "vs BLAS", "roofline"]


def markdown_families(report: dict) -> str:
    """Geometric means per family over every row."""
    body = [[kind] + _family_cells(values) for kind, values in report["summary"]["families"].items()]
    return _markdown(["family"] + FAMILY_HEADER, body)


def markdown_networks(report: dict) -> str:
    """Geometric means per network and family."""
    body = [[net, kind] + _family_cells(values)
            for net, kinds in report["summary"]["networks"].items() for kind, values in kinds.items()]
    return _markdown(["network", "family"] + FAMILY_HEADER, body)


def markdown_totals(report: dict) -> str:
    """Per complete network: all its convolutions of one forward pass (each shape times its count)."""
    totals = [(net, t) for net, t in report.get("network_totals", {}).items() if t.get("complete")]
    header = ["network", "convolutions", "numbaconv ms", "torch ms", "vs torch", "reference ms"]
    body = [[net, str(t["convolutions"]), f"{t['numbaconv_s'] * 1e3:.1f}",
             f"{t['torch_s'] * 1e3:.1f}" if t.get("torch_s") else "-",
             ratio(t["torch_s"] / t["numbaconv_s"]) if t.get("torch_s") else "-", f"{t['reference_s'] * 1e3:.1f}"]
            for net, t in totals]
    return _markdown(header, body) if body else ""


def markdown_summary(report: dict, short: bool = False) -> str:
    """The Markdown summary: per family (``short``) or per network and family, then the
    whole-network times, then a footnote with the machine, versions and roofs."""
    parts = [markdown_families(report) if short else markdown_networks(report)]
    totals = markdown_totals(report)
    if totals:
        parts.append("All convolutions of one forward pass (each layer shape times its count in the network):\n\n"
                     + totals)
    parts.append(footnote(report))
    return "\n\n".join(parts)


def machine_line(report: dict) -> str:
    machine = report["machine"]
    versions = ", ".join(f"{name} {machine[name]}" for name in ("numba", "llvmlite", "numpy", "torch") if machine.get(name))
    return (f"{machine['cpu']}, {machine['cores']} cores, {machine['numba_threads']} Numba threads "
            f"({machine['threading_layer']}); {versions}; NumPy BLAS {machine.get('numpy_blas', '?')}")


def repeats(settings: dict) -> str:
    """How a report's times were sampled: "median of 10" (reports before sampling), or the sampling rule."""
    sampling = settings.get("sampling")
    if not sampling:
        return f"median of {settings['repeat']}"
    return (f"median of at least {settings['repeat']} samples of >= {sampling['min_sample_s'] * 1e3:g} ms each, until "
            f"their IQR is within {sampling['target_dispersion']:.0%} of the median or {sampling['budget_s']:g} s")


def footnote(report: dict) -> str:
    settings = report["settings"]
    return (f"{machine_line(report)}; {settings['dtype']}, batch {settings['batch']}, {repeats(settings)}; "
            f"{report['date'][:10]}. " + limits_line(report) + ".")


def markdown_peers(reports: list[dict]) -> str:
    """numbaconv against the fastest peer (any library, either layout), one line per family, batch
    and numbaconv layout over the reports given: the geometric mean and the worst layer back to
    back, the geometric mean after an idle gap, and numbaconv's own after-gap slowdown (median and
    p99 over back to back)."""
    header = ["family", "batch", "layout", "layers", "vs best peer", "worst layer", "vs best peer after a gap",
              "after gap / back to back", "p99 after gap / back to back"]
    body = []
    for data in reports:
        settings = data["settings"]
        for kind, values in data["summary"]["families"].items():
            body.append([kind, str(settings["batch"]), settings.get("layout", "NCHW"), str(values["layers"]),
                         ratio(values.get("geomean_speedup_vs_best_peer")),
                         ratio(values.get("worst_speedup_vs_best_peer")),
                         ratio(values.get("geomean_gap_speedup_vs_best_peer")),
                         ratio(values.get("geomean_gap_slowdown")), ratio(values.get("geomean_gap_p99_slowdown"))])
    body.sort(key=lambda cells: (cells[0], int(cells[1]), cells[2]))
    peers = sorted({f"{name} {version}" for data in reports
                    for name, version in (data["settings"].get("peer_versions") or {}).items()})
    dates = sorted({data["date"][:10] for data in reports})
    gaps = sorted({f"median of {data['settings'].get('gap_rounds')} gaps of "
                   f"{data['settings'].get('gap_s', 0) * 1e3:.0f} ms" if data["settings"].get("gap_rounds")
                   else "not measured" for data in reports})
    return (_markdown(header, body) + "\n\nPeers, each in a process of its own: " + (", ".join(peers) or "none installed")
            + f". {machine_line(reports[0])}; {reports[0]['settings']['dtype']}; back to back: "
            f"{repeats(reports[0]['settings'])}; after a gap: {', '.join(gaps)}; {', '.join(dates)}.")
