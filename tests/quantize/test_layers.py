import shutil

import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.quantize.layers import rank_layers
from edgecnn.quantize.model import QuantConfig, quantize_model


def test_layers_are_ranked_worst_first(small_net, tmp_path):
    fp32, data = small_net
    int8 = quantize_model(fp32, calib=data, samples=64, out=tmp_path / "net.int8.onnx").model
    layers = rank_layers(int8, data=data)["layers"]  # the fp32 sibling by name: net.fp32.onnx
    assert {"Conv+Relu", "Gemm"} <= {r["op"] for r in layers}
    losses = [r["loss_db"] for r in layers]
    assert losses == sorted(losses, reverse=True)
    assert all(r["output_sqnr_db"] > 10 for r in layers)  # int8 keeps every layer well above noise


@pytest.mark.parametrize("passes,where_int8_begins", [(("float-stem", "float-pool"), "MaxPool+Transpose+Reshape+Transpose"), (("s2d-stem",), "MaxPool")])
def test_a_rewritten_model_is_compared_in_its_own_layout(small_net, tmp_path, passes, where_int8_begins):
    """The fp32 reference gets the same passes (hand-over, NHWC dense weights), so every tensor and weight matches."""
    fp32, data = small_net
    int8 = quantize_model(fp32, QuantConfig(passes=passes), calib=data, samples=64, out=tmp_path / "r.onnx").model
    layers = rank_layers(int8, fp32, data=data)["layers"]
    assert any(r["op"].endswith(where_int8_begins) for r in layers)
    assert all(r["output_sqnr_db"] > 10 for r in layers)
    assert all(r["weight_sqnr_db"] is None or r["weight_sqnr_db"] > 10 for r in layers)


def test_models_it_cannot_rank_are_named(small_net, tmp_path):
    fp32, data = small_net
    with pytest.raises(EdgecnnError, match="fp32 model for"):
        rank_layers(tmp_path / "x.int8.onnx", fp32_model=tmp_path / "none.onnx")
    not_int8 = tmp_path / "model.int8.onnx"
    shutil.copyfile(fp32, not_int8)
    with pytest.raises(EdgecnnError, match="not a static QDQ-format int8 model"):
        rank_layers(not_int8, fp32_model=fp32, data=data)
    qoperator = quantize_model(fp32, QuantConfig(format="qoperator"), calib=data, samples=32, out=tmp_path / "qop.int8.onnx").model
    with pytest.raises(EdgecnnError, match="not a static QDQ-format"):  # its Q/DQ pairs are fused away: nothing to rank
        rank_layers(qoperator, fp32_model=fp32, data=data)
