import json

import onnx
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.info import describe_model


def test_describe_model(digits_run):
    info = describe_model(digits_run / "model.fp32.onnx")
    assert info["params"] == 994
    assert info["opset"]["ai.onnx"] == 17
    assert info["inputs"] == [{"name": "input", "type": "float", "shape": ["batch", 1, 8, 8]}]
    assert info["ops"]["Conv"] == 2
    assert info["metadata"]["edgecnn.recipe"] == "digits"
    assert info["macs"] == 14_144


def test_a_misspelled_card_key_is_refused(digits_run, tmp_path):
    model = onnx.load(str(digits_run / "model.fp32.onnx"))
    model.metadata_props.add(key="edgecnn.lables", value=json.dumps(["a"]))
    onnx.save(model, str(tmp_path / "typo.onnx"))
    with pytest.raises(EdgecnnError, match=r"'edgecnn.lables' is not known \(accepted: edgecnn.labels, edgecnn.preprocess"):
        describe_model(tmp_path / "typo.onnx")
