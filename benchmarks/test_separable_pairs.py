"""The separable-pairs benchmark script (benchmarks/separable_pairs.py): its pairs are real consecutive
layers, and one pair runs end to end (without peers) into a JSON with numbaconv's checked output."""

from __future__ import annotations

import json

from benchmarks import separable_pairs


def test_pairs_chain_a_depthwise_layer_into_the_pointwise_layer_reading_it():
    found = separable_pairs.pairs()
    assert len(found) >= 20
    for depthwise, pointwise in found:
        dw, pw = depthwise.spec(), pointwise.spec()
        assert dw.family == "depthwise" and pw.family == "pointwise"
        assert pw.in_channels == dw.out_channels and (pw.in_height, pw.in_width) == (dw.out_height, dw.out_width)


def test_one_pair_end_to_end(tmp_path):
    target = tmp_path / "pairs.json"
    assert separable_pairs.main(["--limit", "1", "--repeat", "1", "--peers", "none", "--json", str(target)]) == 0
    document = json.loads(target.read_text())
    (row,) = document["rows"]
    assert row["ours_nchw_s"] > 0 and row["ours_nhwc_s"] > 0
    assert row["error_nchw"] < 1e-4 and row["error_nhwc"] < 1e-4
    assert row["best_peer"] is None
