import json

import numpy as np
import onnx
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.quantize.model import QuantConfig, int8_path, quantize_model
from edgecnn.runtime import META_LABELS, META_QUANTIZATION, Session, read_metadata


def test_int8_model_carries_metadata_and_agrees_with_fp32(digits_run):
    int8 = digits_run / "model.int8.onnx"
    model = onnx.load(str(int8))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    meta = read_metadata(model)
    assert META_LABELS in meta
    record = json.loads(meta[META_QUANTIZATION])
    assert record["format"] == "qdq" and record["per_channel"] and record["samples"] == 128
    from edgecnn.data import load_dataset

    test = load_dataset("digits").test
    fp32_pred = Session(digits_run / "model.fp32.onnx").predict(test.x).argmax(1)
    int8_pred = Session(int8).predict(test.x).argmax(1)
    assert (fp32_pred == int8_pred).mean() >= 0.97


@pytest.mark.parametrize(
    "config",
    [QuantConfig(format="qoperator"), QuantConfig(per_channel=False, method="entropy"), QuantConfig(dynamic=True)],
    ids=["qoperator", "per-tensor-entropy", "dynamic"],
)
def test_other_configurations_produce_runnable_models(digits_run, tmp_path, config):
    out = quantize_model(digits_run / "model.fp32.onnx", config, calib=digits_run, samples=64, out=tmp_path / "q.onnx")
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    assert Session(out["model"]).predict(x).shape == (4, 10)


def test_quantize_errors_are_one_line(digits_run, tmp_path):
    fp32 = digits_run / "model.fp32.onnx"
    with pytest.raises(EdgecnnError, match="--force"):
        quantize_model(fp32, calib=digits_run)
    with pytest.raises(EdgecnnError, match="unknown format 'int4'"):
        quantize_model(fp32, QuantConfig(format="int4"), calib=digits_run, out=tmp_path / "a.onnx")
    with pytest.raises(EdgecnnError, match="--keep-float-pool .* add --float-stem"):
        quantize_model(fp32, QuantConfig(keep_float_pool=True), calib=digits_run, out=tmp_path / "a.onnx")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((4, 1, 28, 28), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(EdgecnnError, match=r"shape \[1, 28, 28\].*expects \['batch', 1, 8, 8\]"):
        quantize_model(fp32, calib=wrong, out=tmp_path / "b.onnx")
    assert not (tmp_path / "b.onnx").exists()


def test_int8_path_names():
    assert int8_path("runs/x/model.fp32.onnx").name == "model.int8.onnx"
    assert int8_path("runs/x/model.pruned.fp32.onnx").name == "model.pruned.int8.onnx"
    assert int8_path("mine.onnx").name == "mine.int8.onnx"
