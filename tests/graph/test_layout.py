"""Layout rewrites: each changes how ONNX Runtime runs a model, never what it computes."""

import platform

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_nets import OPSET, Block, calibration_file, cnn, inputs, run, save

from edgecnn.graph.layout import INPUT_PAD, fold_quantized_pad, nhwc_flatten, nhwc_handover, pad_input_channels
from edgecnn.quantize.layers import rank_layers
from edgecnn.quantize.model import QuantConfig, quantize_model
from edgecnn.quantize.passes import QDQ_PROPAGATION, rewrite_float, stem_nodes
from edgecnn.runtime.card import read_card
from edgecnn.runtime.session import Session

GRAY = (1, 12, 12)
STEM_16 = (Block(16, pool=2), Block(16))  # 16 filters: ORT's blocked NCHWc layout takes the float stem


def _initializer(model, name):
    return next(i for i in model.graph.initializer if i.name == name)


def _producer(model, tensor):
    return next(n for n in model.graph.node if tensor in n.output)


@pytest.mark.parametrize("trans_b", [1, 0])
def test_nhwc_flatten_permutes_the_dense_weights_to_match(trans_b):
    """A transpose to NHWC before Flatten, the Gemm's weight rows or columns permuted: the same outputs."""
    model = cnn(GRAY)
    if not trans_b:
        weight = _initializer(model, "gemm_w")
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight).T.copy(), "gemm_w"))
        gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
        next(a for a in gemm.attribute if a.name == "transB").i = 0
    x = inputs(8, GRAY)
    before, = run(model, x)
    assert nhwc_flatten(model) == 1
    flatten = next(n for n in model.graph.node if n.op_type == "Flatten")
    transpose = _producer(model, flatten.input[0])
    assert transpose.op_type == "Transpose" and list(transpose.attribute[0].ints) == [0, 2, 3, 1]
    after, = run(model, x)
    assert np.allclose(after, before, rtol=0, atol=1e-5)


def test_nhwc_handover_changes_layout_only(tmp_path):
    """The float stem's hand-over to NHWC int8 is transposes and a no-op reshape: the fp32 model
    computes the same, and its int8 model the same as int8 with a float stem but no hand-over."""
    model = cnn(GRAY, STEM_16)
    x = inputs(32, GRAY)
    before, = run(model, x)
    stem = stem_nodes(model)
    assert stem == ["conv1", "relu1", "pool1"]
    assert nhwc_handover(model, stem) == ["pool1_to_nhwc", "pool1_nhwc_hold"]
    chain, tensor = [], "pool1_out"
    while len(chain) < 3:
        node = next(n for n in model.graph.node if tensor in n.input)
        chain.append((node.op_type, [a.ints for a in node.attribute if a.name == "perm"]))
        tensor = node.output[0]
    assert chain == [("Transpose", [[0, 2, 3, 1]]), ("Reshape", []), ("Transpose", [[0, 3, 1, 2]])]
    assert next(n for n in model.graph.node if n.name == "conv2").input[0] == tensor
    after, = run(model, x)
    assert np.allclose(after, before, rtol=0, atol=1e-6)

    fp32 = save(cnn(GRAY, STEM_16), tmp_path / "fp32.onnx")
    calib = calibration_file(tmp_path / "calib.npz", x)
    handover = quantize_model(fp32, QuantConfig(passes=("float-stem", "float-pool")), calib=calib, samples=32, out=tmp_path / "handover.onnx")
    plain = quantize_model(fp32, QuantConfig(passes=("float-stem",)), calib=calib, samples=32, out=tmp_path / "stem.onnx")
    card = read_card(onnx.load(str(handover.model)))
    assert card.quantization.excluded_nodes == ("conv1", "relu1", "pool1", "pool1_to_nhwc", "pool1_nhwc_hold")  # kept in float
    assert card.session_options.disabled_optimizers == (QDQ_PROPAGATION,)
    ours, theirs = Session(handover.model).run(x), Session(plain.model).run(x)
    assert np.allclose(ours, theirs, rtol=0, atol=1e-5)


def test_nhwc_layouts_leave_a_conv1d_stem_as_it_is(tmp_path):
    """The hand-over and the NHWC dense layer are for images: a 1-D signal net keeps its graph, and
    quantizes with its stem in float."""
    shape = (1, 40)
    model = cnn(shape, (Block(8, pool=2), Block(8)))
    before = model.SerializeToString()
    stem = stem_nodes(model)
    assert stem == ["conv1", "relu1", "pool1"]
    assert rewrite_float(model, ("float-stem", "float-pool"), stem) == []
    assert model.SerializeToString() == before
    x = inputs(32, shape, seed=1, low=-1.0)
    calib = calibration_file(tmp_path / "calib.npz", x)
    out = quantize_model(save(model, tmp_path / "seq.onnx"), QuantConfig(passes=("float-stem", "float-pool")), calib=calib,
                         samples=32, out=tmp_path / "seq.int8.onnx")
    assert read_card(onnx.load(str(out.model))).quantization.excluded_nodes == ("conv1", "relu1", "pool1")
    reference = Session(tmp_path / "seq.onnx").run(x)
    assert np.abs(Session(out.model).run(x) - reference).max() < 0.05 * np.abs(reference).max()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="ONNX Runtime's blocked NCHWc kernels are x86's")
def test_nhwc_handover_reaches_onnxruntime_as_intended(tmp_path):
    """On x86, ORT reorders the float stem's output straight to NHWC: no reorder to NCHW, no transpose before int8."""
    shape = (1, 28, 28)
    fp32 = save(cnn(shape, STEM_16), tmp_path / "fp32.onnx")
    calib = calibration_file(tmp_path / "calib.npz", inputs(32, shape))
    out = quantize_model(fp32, QuantConfig(passes=("float-stem", "float-pool")), calib=calib, samples=32, out=tmp_path / "int8.onnx")
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3  # ORT warns that an NCHWc-optimized model is for this machine only
    ort.InferenceSession(str(out.model), options, providers=["CPUExecutionProvider"], disabled_optimizers=Session(out.model).disabled_optimizers)
    ops = [(n.op_type, {a.name: a.i for a in n.attribute if a.name == "channels_last"}) for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    first_int8 = next(i for i, (op, _) in enumerate(ops) if op == "QLinearConv")
    assert ("ReorderOutput", {"channels_last": 1}) in ops[:first_int8]
    assert [op for op, _ in ops].count("Transpose") == 0  # the hand-over's and the flatten's both cancelled


def test_rgb_input_padded_to_four_channels_computes_the_same(tmp_path):
    """Zero channels and zero weights in fp32; after quantization the pad runs on the uint8 input,
    and the int8 model computes what plain int8 computes."""
    shape = (3, 16, 16)
    model = cnn(shape)
    x = inputs(16, shape)
    before, = run(model, x)
    assert pad_input_channels(model) and not pad_input_channels(model)  # the second time it already fits
    weight = numpy_helper.to_array(_initializer(model, "conv1_w"))
    assert weight.shape[1] == 4 and not weight[:, 3].any()
    after, = run(model, x)
    assert np.allclose(after, before, rtol=0, atol=1e-5)

    fp32 = save(cnn(shape), tmp_path / "rgb.onnx")
    common = dict(calib=calibration_file(tmp_path / "calib.npz", x), samples=16)
    plain = quantize_model(fp32, QuantConfig(), out=tmp_path / "plain.onnx", **common)
    pad4 = quantize_model(fp32, QuantConfig(passes=("pad-input",)), out=tmp_path / "pad4.onnx", **common)
    graph = onnx.load(str(pad4.model))
    pad = next(n for n in graph.graph.node if n.name == INPUT_PAD)
    assert _producer(graph, pad.input[0]).op_type == "QuantizeLinear" and len(pad.input) == 3  # uint8 in, its zero point as the value
    int8 = Session(plain.model).run(x)
    assert np.abs(int8 - Session(fp32).run(x)).max() > 1e-3
    assert np.array_equal(Session(pad4.model).run(x), int8)
    layers = rank_layers(pad4.model, fp32, data=tmp_path / "calib.npz", samples=4)["layers"]
    assert any(r["op"].startswith("Pad+Conv") for r in layers)  # the fp32 reference is padded the same way
    assert all(r["output_sqnr_db"] > 10 for r in layers)  # every padded-model tensor found its fp32 twin


def _dequantize_pad_quantize(out_scale):
    """uint8 input → DequantizeLinear → the input Pad (one zero channel) → QuantizeLinear at `out_scale`."""
    nodes = [
        helper.make_node("DequantizeLinear", ["xq", "scale", "zero"], ["x"], name="dequantize"),
        helper.make_node("Pad", ["x", "pads"], ["padded"], name=INPUT_PAD),
        helper.make_node("QuantizeLinear", ["padded", "out_scale", "zero"], ["y"], name="quantize"),
    ]
    initializers = {"scale": np.array(0.02, np.float32), "out_scale": np.array(out_scale, np.float32),
                    "zero": np.array(117, np.uint8), "pads": np.array([0, 0, 0, 0, 0, 1, 0, 0], np.int64)}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("xq", TensorProto.UINT8, [2, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [2, 4, 4, 4])],
                              [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def test_fold_quantized_pad_pads_the_uint8_tensor_with_its_zero_point():
    """Dequantize → pad → quantize on one scale becomes a pad on the uint8 tensor with the zero
    point as its value: bit for bit the same. On another scale the float pad stays."""
    xq = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 4), dtype=np.uint8)
    model = _dequantize_pad_quantize(0.02)
    before, = run(model, xq)
    assert fold_quantized_pad(model)
    assert [n.op_type for n in model.graph.node] == ["Pad"] and list(model.graph.node[0].input) == ["xq", "pads", "zero"]
    after, = run(model, xq)
    assert np.array_equal(after, before) and (after[:, 3] == 117).all()

    rescaled = _dequantize_pad_quantize(0.03)
    unchanged = rescaled.SerializeToString()
    assert not fold_quantized_pad(rescaled)
    assert rescaled.SerializeToString() == unchanged
