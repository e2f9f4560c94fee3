import json

from edgecnn.bench import bench_models
from edgecnn.evaluate import evaluate_model
from edgecnn.files import write_json
from edgecnn.report import build_report, markdown_table, pareto_front


def test_report_from_a_run_folder(digits_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for variant in ("fp32", "int8"):
        model = digits_run / f"model.{variant}.onnx"
        write_json(run / f"eval-{variant}.json", evaluate_model(model, digits_run))
    models = [digits_run / "model.fp32.onnx", digits_run / "model.int8.onnx"]
    write_json(run / "bench-cpu.json", bench_models(models, batches=[1, 8], warmup=1, runs=10))
    report = build_report(run)
    assert [r["variant"] for r in report["rows"]] == ["fp32", "int8"]
    assert report["rows"][0]["delta_points"] == 0.0
    assert report["rows"][0]["latency"][1]["speedup"] == 1.0
    md = (run / "report.md").read_text()
    assert "| variant | accuracy | Δ vs fp32 | params | MACs | size | p50 b1 | p99 b1 | speedup b1 | throughput b8 | speedup b8 |" in md
    assert "onnxruntime" in md and "interleaved" in md
    assert json.loads((run / "report.json").read_text())["pareto_front"]
    assert (run / "pareto.png").read_bytes()[:4] == b"\x89PNG"


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
