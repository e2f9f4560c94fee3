"""Cropping the input rows and columns no output depends on: the same outputs, fewer MACs, and the
stem rewrites still find the first conv behind the crop."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_nets import OPSET, Block, calibration_file, cnn, inputs, run, save

from edgecnn.graph.count import count_macs, count_params
from edgecnn.graph.crop import crop_unread_input, read_extent
from edgecnn.graph.nodes import INPUT_CROP, first_layer_input, input_conv
from edgecnn.quantize.model import QuantConfig, quantize_model
from edgecnn.runtime.card import read_card
from edgecnn.runtime.session import Session

# convnet's geometry, thinner: 28 → conv 26 → pool 13 → conv 11 → pool 5 → conv 3, which reads 26×26
CONVNET = ((1, 28, 28), (Block(4, pool=2), Block(8, pool=2), Block(8)))


def test_crop_keeps_every_output_and_drops_the_unread_macs():
    """The conv chain reads 26×26 of 28×28: after the crop the outputs are the same, the input shape
    is unchanged, each conv computes only what is read, and the crop's bounds are no parameters."""
    model = cnn(*CONVNET)
    x = inputs(8, CONVNET[0])
    before, = run(model, x)
    params = count_params(model)
    assert count_macs(model) == 26 * 26 * 4 * 9 + 11 * 11 * 8 * 36 + 3 * 3 * 8 * 72 + 72 * 4
    assert read_extent(model) == [26, 26]
    assert crop_unread_input(model) == [26, 26]
    assert model.graph.node[0].name == INPUT_CROP and first_layer_input(model) == f"{INPUT_CROP}_output"
    assert input_conv(model)[0].name == "conv1"
    assert [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim] == ["batch", 1, 28, 28]
    assert count_macs(model) == 24 * 24 * 4 * 9 + 10 * 10 * 8 * 36 + 3 * 3 * 8 * 72 + 72 * 4
    assert count_params(model) == params
    after, = run(model, x)
    assert np.array_equal(after, before)
    assert read_extent(model) is None  # cropped once, the chain now reads all it gets


def _chain(shape, nodes, weights):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def test_read_extent_follows_strides_and_signals():
    """A stride-2 conv and a pool read fewer rows than they span; a 1-D signal is cropped on its one
    axis with its outputs unchanged."""
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
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    before, = run(strided, x)
    assert crop_unread_input(strided) == [25, 25]
    after, = run(strided, x)
    assert np.array_equal(before, after)

    signal = _chain(
        [2, 1, 42],
        [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3]),  # 42 → 40
         helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[3], strides=[3])],  # 40 → 13, reads 39
        {"w": rng.standard_normal((4, 1, 3)).astype(np.float32)},
    )
    assert read_extent(signal) == [41]
    x = rng.standard_normal((2, 1, 42)).astype(np.float32)
    before, = run(signal, x)
    assert crop_unread_input(signal) == [41]
    after, = run(signal, x)
    assert np.array_equal(before, after)


@pytest.mark.parametrize("shape,blocks", [
    ((1, 28, 28), (Block(4, pool=2), Block(8))),  # 28 → 26 → 13 → 11, all of it read
    ((1, 8, 8), (Block(4, pads=1, pool=2), Block(8))),  # 'same' padding: not a chain the crop follows
    ((1, 40), (Block(4), Block(4, pool=3))),  # 40 → 38 → 36 → pool 3 → 12: exact
], ids=["exact-2d", "padded", "exact-1d"])
def test_nets_that_read_every_input_position_are_left_as_they_are(shape, blocks):
    """No crop where every input position reaches an output: the graph stays byte for byte."""
    model = cnn(shape, blocks)
    before = model.SerializeToString()
    assert read_extent(model) is None
    assert crop_unread_input(model) is None
    assert model.SerializeToString() == before


def test_stem_rewrites_see_through_the_crop(tmp_path):
    """The int8 s2d stem crops in uint8 and computes what plain int8 computes; the float stem keeps
    the crop in float with its conv and agrees with plain int8 to a few quantization steps."""
    model = cnn(*CONVNET)
    crop_unread_input(model)
    fp32 = save(model, tmp_path / "fp32.onnx")
    x = inputs(32, CONVNET[0])
    calib = calibration_file(tmp_path / "calib.npz", x)
    common = dict(calib=calib, samples=32)  # nearest rounding: the s2d stem rounds its weights so, and plain int8 must match it
    s2d = quantize_model(fp32, QuantConfig(passes=("s2d-stem",), rounding="nearest"), out=tmp_path / "s2d.onnx", **common)
    stem = quantize_model(fp32, QuantConfig(passes=("float-stem", "float-pool"), rounding="nearest"), out=tmp_path / "stem.onnx", **common)
    plain = quantize_model(fp32, QuantConfig(rounding="nearest"), out=tmp_path / "plain.onnx", **common)
    nodes = {n.name: n for n in onnx.load(str(s2d.model)).graph.node}
    assert "s2d_stem_crop" in nodes and INPUT_CROP not in nodes
    assert nodes["s2d_stem_crop"].input[0] == "s2d_stem_xq"  # the crop reads the quantized input
    excluded = read_card(onnx.load(str(stem.model))).quantization.excluded_nodes
    assert excluded[:4] == (INPUT_CROP, "conv1", "relu1", "pool1")  # left in float with its conv
    reference = Session(fp32).run(x)
    int8 = Session(plain.model).run(x)
    assert np.abs(int8 - reference).max() > 1e-3
    assert np.allclose(Session(s2d.model).run(x), int8, rtol=0, atol=1e-5)
    assert np.abs(Session(stem.model).run(x) - int8).max() <= 3 * np.abs(int8 - reference).max()
