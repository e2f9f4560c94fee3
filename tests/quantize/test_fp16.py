import numpy as np
import onnx
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.quantize.fp16 import fp16_model
from edgecnn.runtime.card import read_card
from edgecnn.runtime.session import Session


def test_fp16_agrees_with_fp32_on_the_cpu_and_keeps_float_io(digits_run, tmp_path):
    """Top-1 on the digits test split equals fp32's, run on the CPU EP; inputs and outputs stay float32."""
    from edgecnn.data import resolve_split

    out = tmp_path / "model.fp16.onnx"
    result = fp16_model(digits_run / "model.fp32.onnx", out)
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {i.data_type for i in model.graph.initializer if len(i.dims) == 4} == {onnx.TensorProto.FLOAT16}  # conv weights
    assert read_card(model).labels == tuple(str(i) for i in range(10)) and result["size_bytes"] < result["source_size_bytes"]
    test, _ = resolve_split(None, digits_run / "model.fp32.onnx", "test")
    fp32, fp16 = Session(digits_run / "model.fp32.onnx").predict(test.x), Session(out).predict(test.x)
    assert np.array_equal(fp32.argmax(1), fp16.argmax(1)) and np.abs(fp32 - fp16).max() < 0.05


def test_fp16_refuses_int8_and_overwrites(digits_run, tmp_path):
    with pytest.raises(EdgecnnError, match="is int8; convert its fp32 source"):
        fp16_model(digits_run / "model.int8.onnx", tmp_path / "x.onnx")
    taken = tmp_path / "taken.onnx"
    taken.write_bytes(b"mine")
    with pytest.raises(EdgecnnError, match="--force"):
        fp16_model(digits_run / "model.fp32.onnx", taken)
    assert taken.read_bytes() == b"mine"
