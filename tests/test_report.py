import json
import shutil

import numpy as np
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.measure import bench, evaluate_model
from edgecnn.quantize.model import QuantConfig, quantize_model
from edgecnn.report import build_report, markdown_table, pareto_figure, pareto_front
from edgecnn.run import Run


def _run_copy(digits_run, tmp_path):
    """A run folder of its own with the session run's recipe and models, and no results yet."""
    run = tmp_path / "digits"
    run.mkdir()
    for name in ("recipe.json", "model.fp32.onnx", "model.int8.onnx"):
        shutil.copyfile(digits_run / name, run / name)
    return Run(run)


def test_eval_then_bench_then_report_by_hand(digits_run, tmp_path):
    run = _run_copy(digits_run, tmp_path)
    for variant in ("fp32", "int8"):
        evaluate_model(run.onnx(variant))
    bench([run.onnx("fp32"), run.onnx("int8")], batches=[1, 8], warmup=1, runs=10)
    report = build_report(run.root)
    assert [r["variant"] for r in report["rows"]] == ["fp32", "int8"]
    assert report["rows"][0]["delta_points"] == 0.0
    assert report["rows"][0]["latency"][1]["speedup"] == 1.0
    assert report["rows"][1]["params"] == 994 and report["rows"][1]["accuracy"] is not None
    md = run.report_md.read_text()
    assert "| variant | accuracy | Δ vs fp32 | params | MACs | size | p50 b1 | p99 b1 | speedup b1 | throughput b8 | speedup b8 |" in md
    assert "onnxruntime" in md and "interleaved" in md
    assert json.loads(run.report_json.read_text())["pareto_front"]
    assert run.pareto_png.read_bytes()[:4] == b"\x89PNG"
    assert report["confusion_png"] == [str(run.confusion_png("fp32")), str(run.confusion_png("int8"))]
    assert all(run.confusion_png(v).read_bytes()[:4] == b"\x89PNG" for v in ("fp32", "int8"))


def test_a_result_whose_model_changed_is_never_reused(digits_run, tmp_path):
    run = _run_copy(digits_run, tmp_path)
    for variant in ("fp32", "int8"):
        evaluate_model(run.onnx(variant))
    bench([run.onnx("fp32"), run.onnx("int8")], batches=[1], warmup=1, runs=5)
    quantize_model(run.onnx("fp32"), QuantConfig(per_channel=False), calib=run.root, samples=64, force=True)
    report = build_report(run.root)
    assert [r["variant"] for r in report["rows"]] == ["fp32"]
    stale = [n for n in report["notes"] if "measured an earlier or missing model" in n]
    assert [n.split(" measured")[0] for n in stale] == ["eval-int8.json", "bench-cpu.json (int8)"]
    evaluate_model(run.onnx("int8"))
    rows = {r["variant"]: r for r in build_report(run.root)["rows"]}
    assert rows["int8"]["accuracy"] is not None and rows["int8"]["latency"] == {}  # its old timing stays out


def test_a_run_without_results_says_what_to_run(tmp_path):
    with pytest.raises(EdgecnnError, match="run `edgecnn eval` and `edgecnn bench`"):
        build_report(tmp_path)


def test_a_single_variant_draws_no_front_and_no_accuracy_above_100():
    import matplotlib.pyplot as plt

    one = pareto_figure([{"variant": "fp32", "accuracy": 1.0, "latency": {1: {"p50_ms": 1.0}}}], 1, "one")
    two = pareto_figure([{"variant": "fp32", "accuracy": 1.0, "latency": {1: {"p50_ms": 1.0}}},
                         {"variant": "int8", "accuracy": 0.98, "latency": {1: {"p50_ms": 0.5}}}], 1, "two")
    assert one.axes[0].get_legend() is None and not one.axes[0].get_lines()  # no front to draw, none named
    assert two.axes[0].get_legend() is not None and len(two.axes[0].get_lines()) == 1
    assert one.axes[0].get_ylim()[1] <= 100 and two.axes[0].get_ylim()[1] <= 100
    plt.close("all")


def test_pareto_front_drops_dominated_variants():
    rows = [
        {"variant": "fp32", "accuracy": 0.95, "latency": {1: {"p50_ms": 1.0}}},
        {"variant": "int8", "accuracy": 0.94, "latency": {1: {"p50_ms": 0.5}}},
        {"variant": "slow", "accuracy": 0.93, "latency": {1: {"p50_ms": 2.0}}},
    ]
    assert pareto_front(rows, 1) == ["fp32", "int8"]


def test_table_without_bench_shows_accuracy_only():
    table = markdown_table([{"variant": "fp32", "accuracy": 0.9, "delta_points": 0.0, "size_bytes": None, "latency": {}}])
    assert table.splitlines()[0] == "| variant | accuracy | Δ vs fp32 | params | MACs | size |"
    assert "90.00%" in table


def test_a_thousand_class_confusion_matrix_draws_in_bounded_memory(tmp_path):
    """An ImageNet classifier's 1,000 × 1,000 confusion matrix: a picture of bounded size, not a 45,000-pixel square."""
    import resource

    from PIL import Image

    from edgecnn.report import MAX_CONFUSION_INCHES, plot_confusion

    labels = [f"class {i}" for i in range(1000)]
    matrix = np.zeros((1000, 1000), np.int64)
    matrix[np.arange(1000), np.arange(1000)] = 1
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path = plot_confusion({"confusion": matrix.tolist(), "labels": labels, "variant": "int8", "accuracy": 1.0, "samples": 1000}, tmp_path / "c.png")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1 << 20  # KiB: under 1 GiB more at the peak
    with Image.open(path) as image:
        assert max(image.size) <= MAX_CONFUSION_INCHES * 100  # save_png draws at 100 dpi
