"""Turn a benchmark report (the JSON of ``numbaconv bench --json``) into tables: the rows for
the terminal, and Markdown for README and the docs (``numbaconv report FILE --markdown``)."""

from __future__ import annotations

import math

COLUMNS = ["layer", "family", "shape", "kernel", "first call ms", "ms", "after gap ms", "GFLOP/s", "GB/s", "roofline",
           "vs best peer", "best peer", "vs torch", "vs BLAS", "vs reference"]
TEXT_COLUMNS = ("layer", "family", "shape", "kernel", "best peer")

NOTES = ("ms: median of the repeats after a warm-up call.  first call: that kernel's first call in the process "
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


def title(report: dict) -> str:
    settings, machine = report["settings"], report["machine"]
    direction = " backward pass," if settings.get("direction") == "backward" else ""
    return (f"numbaconv bench:{direction} suite {settings['suite']}, batch {settings['batch']}, {settings['dtype']}, "
            f"{settings['device']}, {machine['numba_threads']} threads, {machine['cpu']}")


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


def summary_lines(report: dict) -> list[str]:
    lines = ["geometric means per family:"]
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


def footnote(report: dict) -> str:
    settings = report["settings"]
    return (f"{machine_line(report)}; {settings['dtype']}, batch {settings['batch']}, median of {settings['repeat']}; "
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
            + f". {machine_line(reports[0])}; {reports[0]['settings']['dtype']}; back to back: median of "
            f"{reports[0]['settings']['repeat']}; after a gap: {', '.join(gaps)}; {', '.join(dates)}.")
