import json

import numpy as np
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.measure import bench, evaluate_model
from edgecnn.run import Run, file_digest


def test_evaluate_run_model_on_its_test_split(digits_run):
    result = evaluate_model(digits_run / "model.fp32.onnx")
    assert result["variant"] == "fp32" and result["samples"] == 297
    assert result["accuracy"] > 0.85  # 12 epochs; the full recipe reaches the seed's 95.96%
    assert np.trace(np.array(result["confusion"])) == round(result["accuracy"] * 297)


def test_evaluate_npz_and_bad_data(digits_run, tmp_path):
    from edgecnn.data import load_dataset

    test = load_dataset("digits").test
    npz = tmp_path / "d.npz"
    np.savez(npz, x=test.x[:50], y=test.y[:50])
    assert evaluate_model(digits_run / "model.int8.onnx", npz)["samples"] == 50
    np.savez(tmp_path / "nolabels.npz", x=test.x[:5])
    with pytest.raises(EdgecnnError, match="lacks arrays \\['y'\\]"):
        evaluate_model(digits_run / "model.int8.onnx", tmp_path / "nolabels.npz")
    with pytest.raises(EdgecnnError, match="unknown split 'dev'"):
        evaluate_model(digits_run / "model.int8.onnx", split="dev")


def test_eval_and_bench_in_a_run_are_recorded_there(digits_run):
    run = Run(digits_run)
    result = evaluate_model(run.onnx("int8"))
    assert result["recorded"] == str(run.eval_json("int8"))
    recorded = json.loads(run.eval_json("int8").read_text())
    assert recorded["model_sha256"] == file_digest(run.onnx("int8")) and recorded["accuracy"] == result["accuracy"]
    timing = bench([run.onnx("fp32"), run.onnx("int8")], batches=[1], warmup=1, runs=3)
    assert timing["recorded"] == str(run.bench_json("cpu"))
    assert {r["variant"] for r in json.loads(run.bench_json("cpu").read_text())["results"]} == {"fp32", "int8"}


def test_results_on_other_data_or_models_are_not_recorded(digits_run, tmp_path):
    from edgecnn.data import load_dataset

    test = load_dataset("digits").test
    npz = tmp_path / "d.npz"
    np.savez(npz, x=test.x[:20], y=test.y[:20])
    before = Run(digits_run).eval_json("fp32")
    stamp = before.stat().st_mtime_ns if before.is_file() else None
    assert "recorded" not in evaluate_model(digits_run / "model.fp32.onnx", npz)
    assert "recorded" not in evaluate_model(digits_run / "model.fp32.onnx", split="val")
    assert (before.stat().st_mtime_ns if before.is_file() else None) == stamp
    outside = tmp_path / "loose.onnx"
    outside.write_bytes((digits_run / "model.fp32.onnx").read_bytes())
    assert "recorded" not in bench([outside], batches=[1], warmup=0, runs=2)
