"""Export crops the input rows and columns no output depends on: the same outputs, fewer MACs, and
the stem rewrites still find the first conv behind the crop."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgecnn.graph.crop import crop_unread_input, read_extent
from edgecnn.graph.nodes import INPUT_CROP
from edgecnn.quantize.model import QuantConfig, quantize_model
from edgecnn.runtime import Session, count_macs, count_params
from edgecnn.train.export import export_onnx
from edgecnn.train.nets import build_net
from recipes import get_recipe


@pytest.fixture(scope="module")
def convnet_onnx(tmp_path_factory):
    """The untrained convnet exported, with 16 random images for calibration."""
    root = tmp_path_factory.mktemp("convnet")
    x = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    net = build_net("convnet")
    torch.manual_seed(0)
    with torch.no_grad():  # distinct biases: torch's exporter shares equal constants (zero biases) between layers
        for module in net.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.normal_(0.0, 0.1)
    result = export_onnx(net, get_recipe("convnet"), root / "convnet.onnx", x)
    np.savez(root / "calib.npz", x=x, y=np.zeros(len(x), np.int64))
    return result, root


def test_convnet_export_crops_its_unread_rows(convnet_onnx):
    """28 → conv 26 → pool 13 → conv 11 → pool 5 reads 26×26: each conv computes only what is read,
    and the export's parity check against torch holds."""
    result, root = convnet_onnx
    model = onnx.load(result["model"])
    assert result["input_read"] == [26, 26] and result["parity_max_abs_diff"] < 1e-4
    assert model.graph.node[0].name == INPUT_CROP
    assert [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim] == ["batch", 1, 28, 28]
    conv1, conv2, conv3, dense = 24 * 24 * 32 * 9, 10 * 10 * 64 * 288, 3 * 3 * 64 * 576, 576 * 64 + 64 * 10
    assert count_macs(model) == conv1 + conv2 + conv3 + dense  # 2,794,240 before the crop
    assert count_params(model) == 93_322  # the crop's bounds are no parameters


def _chain(shape, nodes, weights):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_read_extent_follows_strides_and_signals():
    rng = np.random.default_rng(0)
    strided = _chain(
        [2, 1, 28, 28],
        [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], strides=[2, 2]),  # 28 → 13, reads 27
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),  # 13 → 6, reads 12
         helper.make_node("Flatten", ["p"], ["y"])],
        {"w": rng.standard_normal((4, 1, 3, 3)).astype(np.float32)},
    )
    assert read_extent(strided) == [25, 25]  # 12 conv outputs read (12 − 1) · 2 + 3 rows
    signal = _chain(
        [2, 1, 42],
        [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3]),  # 42 → 40
         helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[3], strides=[3])],  # 40 → 13, reads 39
        {"w": rng.standard_normal((4, 1, 3)).astype(np.float32)},
    )
    assert read_extent(signal) == [41]
    x = rng.standard_normal((2, 1, 42)).astype(np.float32)
    before = ort.InferenceSession(signal.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert crop_unread_input(signal) == [41]
    after = ort.InferenceSession(signal.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.array_equal(before, after)


@pytest.mark.parametrize("net,recipe,shape", [
    ("mnist_cnn", "mnist_cnn", (4, 1, 28, 28)),  # 28 → 26 → 13 → 11, all of it read
    ("digits_cnn", "digits", (4, 1, 8, 8)),  # 'same' padding: not a chain the crop follows
    ("seq1d_cnn", "seq1d", (4, 1, 40)),  # 40 → 38 → 36 → pool 3 → 12: exact
])
def test_nets_that_read_every_input_position_are_left_as_they_are(tmp_path, net, recipe, shape):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    result = export_onnx(build_net(net), get_recipe(recipe), tmp_path / "m.onnx", x)
    assert result["input_read"] is None
    assert INPUT_CROP not in {n.name for n in onnx.load(result["model"]).graph.node}


def test_stem_rewrites_see_through_the_crop(convnet_onnx, tmp_path):
    """The int8 s2d stem crops in uint8 and the float stem keeps the crop in float; both agree with
    plain int8 to a few quantization steps."""
    result, root = convnet_onnx
    common = dict(calib=root / "calib.npz", samples=16)
    s2d = quantize_model(result["model"], QuantConfig(passes=("s2d-stem",)), out=tmp_path / "s2d.onnx", **common)
    stem = quantize_model(result["model"], QuantConfig(passes=("float-stem", "float-pool")), out=tmp_path / "stem.onnx", **common)
    plain = quantize_model(result["model"], QuantConfig(), out=tmp_path / "plain.onnx", **common)
    names = {n.name for n in onnx.load(s2d["model"]).graph.node}
    assert "s2d_stem_crop" in names and INPUT_CROP not in names
    record = onnx.load(stem["model"]).metadata_props
    assert any(p.key == "edgecnn.quantization" and INPUT_CROP in p.value for p in record)  # left in float with its conv
    x = np.load(root / "calib.npz")["x"]
    fp32 = Session(result["model"]).run(x)
    reference = Session(plain["model"]).run(x)
    for model in (s2d["model"], stem["model"]):
        assert np.abs(Session(model).run(x) - reference).max() <= 3 * np.abs(reference - fp32).max() + 1e-6
