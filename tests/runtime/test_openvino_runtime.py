"""The openvino target: models run in the OpenVINO runtime itself (openvino.Core), on this CPU."""

import json

import numpy as np
import pytest
from onnx_nets import Block, cnn, save_with_data

from edgecnn.errors import EdgecnnError
from edgecnn.quantize.search import auto_quantize
from edgecnn.runtime.bench import bench_models
from edgecnn.runtime.evaluate import accuracy
from edgecnn.runtime.openvino import OpenVinoSession, float_precision, open_session
from edgecnn.runtime.session import Session


def test_openvino_computes_what_onnxruntime_computes(digits_run):
    x = np.load(digits_run / "test.npz")["x"]
    for variant, tolerance in (("fp32", 0.1), ("int8", 0.5)):  # OpenVINO's default runs float in bf16 where the CPU has it
        model = digits_run / f"model.{variant}.onnx"
        in_openvino = OpenVinoSession(model).predict(x, batch_size=64)  # two compiled shapes: 64 and the rest
        in_ort = Session(model).predict(x)
        assert in_openvino.shape == in_ort.shape
        assert np.abs(in_openvino - in_ort).max() < tolerance
        assert (in_openvino.argmax(1) == in_ort.argmax(1)).mean() > 0.98


def test_bench_in_the_openvino_runtime_records_it(digits_run):
    result = bench_models([digits_run / "model.fp32.onnx", digits_run / "model.int8.onnx"], provider="openvino", batches=[1, 4], warmup=1, runs=5, runtime="openvino")
    assert result["runtime"] == "openvino" and result["machine"]["openvino"][0].isdigit()
    precision = float_precision()
    assert precision in ("f32", "bf16", "f16")
    assert [m["placement"] for m in result["models"]] == [{f"OpenVINO CPU ({precision} float)": m["placement"][f"OpenVINO CPU ({precision} float)"]} for m in result["models"]]
    assert all(m["fallen_back"] == [] for m in result["models"])
    assert {(r["variant"], r["batch"]) for r in result["results"]} == {(v, b) for v in ("fp32", "int8") for b in (1, 4)}


def test_accuracy_in_openvino_matches_onnxruntime(digits_run):
    test = np.load(digits_run / "test.npz")
    model = digits_run / "model.fp32.onnx"
    assert accuracy(model, test["x"], test["y"], "openvino") == pytest.approx(accuracy(model, test["x"], test["y"]), abs=0.01)


def test_the_openvino_target_is_searched_and_timed_in_openvino(tmp_path):
    fp32, data = save_with_data(cnn((3, 24, 24), (Block(32, pool=2), Block(32)), classes=10), tmp_path, samples=64)
    decision = auto_quantize(fp32, data, max_drop=25, target="openvino", batches=[1], runs=10)
    assert decision["target"] == "openvino" and decision["timed"] == "in the OpenVINO runtime"
    assert decision["machine"]["openvino"]
    assert not any("s2d-stem" in t["config"] or "float-pool" in t["config"] for t in decision["trials"])


def test_bad_runtime_and_symbolic_shapes_are_one_line(tmp_path, digits_run):
    with pytest.raises(EdgecnnError, match=r"unknown runtime 'tvm' \(accepted: onnxruntime, openvino\)"):
        open_session(digits_run / "model.fp32.onnx", "tvm")
    fp32, _ = save_with_data(cnn((3, 24, 24), (Block(8),), classes=4), tmp_path, samples=8)
    import onnx

    model = onnx.load(fp32)
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    onnx.save(model, tmp_path / "symbolic.onnx")
    with pytest.raises(EdgecnnError, match="symbolic input dims"):
        OpenVinoSession(tmp_path / "symbolic.onnx").run(np.zeros((1, 3, 24, 24), np.float32))


@pytest.mark.slow  # trains digits (80 epochs)
def test_the_pipeline_for_openvino_times_and_reports_in_openvino(tmp_path):
    from edgecnn.pipeline import run_pipeline

    report = run_pipeline("digits", tmp_path / "digits", target="openvino", auto_quant=True, batches=(1, 8), runs=10, show_progress=False)
    assert report["provider"] == "openvino" and (tmp_path / "digits" / "bench-openvino.json").is_file()
    text = (tmp_path / "digits" / "report.md").read_text()
    assert "target openvino (in the OpenVINO runtime)" in text and "OpenVINO 20" in text
    decision = json.loads((tmp_path / "digits" / "quantize-decision.json").read_text())
    assert decision["target"] == "openvino" and decision["timed"] == "in the OpenVINO runtime"
