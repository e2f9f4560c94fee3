"""Layout rewrites: each changes how ONNX Runtime runs the int8 model, never what it computes."""

import json
import platform

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgecnn.data import load_dataset
from edgecnn.graph.layout import apply_layouts, nhwc_flatten
from edgecnn.quantize.model import QuantConfig, quantize_model, stem_nodes
from edgecnn.runtime import META_QUANTIZATION, Session, read_metadata
from edgecnn.train.export import export_onnx
from edgecnn.train.nets import build_net
from recipes import get_recipe


def test_nhwc_handover_changes_layout_only(digits_run, tmp_path):
    """The float stem's hand-over to NHWC int8 is transposes, a no-op reshape and the dense layer's
    weights in NHWC order: the same numbers but for float rounding."""
    handover = quantize_model(digits_run / "model.fp32.onnx", QuantConfig(passes=("float-stem", "float-pool")),
                              calib=digits_run, samples=32, out=tmp_path / "handover.onnx")
    plain = quantize_model(digits_run / "model.fp32.onnx", QuantConfig(passes=("float-stem",)),
                           calib=digits_run, samples=32, out=tmp_path / "plain.onnx")
    graph = onnx.load(handover["model"]).graph
    chain, tensor = [], "/2/MaxPool_output_0"
    while len(chain) < 3:
        node = next(n for n in graph.node if tensor in n.input)
        chain.append(node.op_type)
        tensor = node.output[0]
    assert chain == ["Transpose", "Reshape", "Transpose"]
    record = json.loads(read_metadata(onnx.load(handover["model"]))[META_QUANTIZATION])
    assert record["excluded_nodes"][-2:] == ["/2/MaxPool_to_nhwc", "/2/MaxPool_nhwc_hold"]  # kept in float
    x = load_dataset("digits").test.x
    ours, theirs = Session(handover["model"]).predict(x), Session(plain["model"]).predict(x)
    assert np.allclose(ours, theirs, atol=1e-5) and np.array_equal(ours.argmax(1), theirs.argmax(1))


def test_nhwc_flatten_permutes_the_dense_weights_to_match(digits_run):
    """A transpose to NHWC before Flatten, the Gemm's weight columns permuted: the same outputs."""
    model = onnx.load(str(digits_run / "model.fp32.onnx"))
    assert nhwc_flatten(model) == 1
    flatten = next(n for n in model.graph.node if n.op_type == "Flatten")
    transpose = next(n for n in model.graph.node if n.output[0] == flatten.input[0])
    assert transpose.op_type == "Transpose" and list(transpose.attribute[0].ints) == [0, 2, 3, 1]
    x = load_dataset("digits").test.x
    rewritten = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.allclose(rewritten, Session(digits_run / "model.fp32.onnx").predict(x), atol=1e-5)


def test_nhwc_layouts_leave_a_conv1d_stem_as_it_is(tmp_path):
    """The hand-over is for images: a 1-D signal net keeps its graph and still quantizes."""
    x = np.random.default_rng(0).standard_normal((16, 1, 40)).astype(np.float32)
    export_onnx(build_net("seq1d_cnn"), get_recipe("seq1d"), tmp_path / "seq.onnx", x)
    model = onnx.load(str(tmp_path / "seq.onnx"))
    before = [n.op_type for n in model.graph.node]
    assert stem_nodes(model) and apply_layouts(model, stem_nodes(model), nhwc=True, pad_input=False) == []
    assert [n.op_type for n in model.graph.node] == before
    np.savez(tmp_path / "calib.npz", x=x, y=np.zeros(16, np.int64))
    out = quantize_model(tmp_path / "seq.onnx", QuantConfig(passes=("float-stem", "float-pool")), calib=tmp_path / "calib.npz",
                         samples=16, out=tmp_path / "seq.int8.onnx")
    assert Session(out["model"]).run(x).shape == (16, 10)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="ONNX Runtime's blocked NCHWc kernels are x86's")
def test_nhwc_handover_reaches_onnxruntime_as_intended(tmp_path):
    """On x86, ORT reorders the float stem's output straight to NHWC: no reorder to NCHW, no transpose before int8."""
    x = np.random.default_rng(0).random((32, 1, 28, 28), dtype=np.float32)
    export_onnx(build_net("convnet"), get_recipe("convnet"), tmp_path / "net.onnx", x)
    np.savez(tmp_path / "calib.npz", x=x, y=np.zeros(32, np.int64))
    out = quantize_model(tmp_path / "net.onnx", QuantConfig(passes=("float-stem", "float-pool")), calib=tmp_path / "calib.npz",
                         samples=32, out=tmp_path / "net.int8.onnx")
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(out["model"], options, providers=["CPUExecutionProvider"], disabled_optimizers=Session(out["model"]).disabled_optimizers)
    ops = [(n.op_type, {a.name: a.i for a in n.attribute if a.name == "channels_last"}) for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    first_int8 = next(i for i, (op, _) in enumerate(ops) if op == "QLinearConv")
    assert ("ReorderOutput", {"channels_last": 1}) in ops[:first_int8]
    assert [op for op, _ in ops].count("Transpose") == 0  # the hand-over's and the flatten's both cancelled


def test_rgb_input_padded_to_four_channels_computes_the_same(tmp_path):
    """Zero channels and zero weights in fp32; after quantization the pad runs on the uint8 input."""
    from edgecnn.graph.layout import INPUT_PAD, pad_input_channels

    x = np.random.default_rng(0).random((16, 3, 150, 150), dtype=np.float32)
    export_onnx(build_net("catsdogs_cnn"), get_recipe("catsdogs"), tmp_path / "rgb.onnx", x[:4])
    model = onnx.load(str(tmp_path / "rgb.onnx"))
    assert pad_input_channels(model) and not pad_input_channels(model)  # the second time it already fits
    padded = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x[:4]})[0]
    assert np.allclose(padded, Session(tmp_path / "rgb.onnx").run(x[:4]), atol=1e-5)

    np.savez(tmp_path / "calib.npz", x=x, y=np.zeros(16, np.int64))
    common = dict(calib=tmp_path / "calib.npz", samples=16)
    plain = quantize_model(tmp_path / "rgb.onnx", QuantConfig(), out=tmp_path / "plain.onnx", **common)
    pad4 = quantize_model(tmp_path / "rgb.onnx", QuantConfig(passes=("pad-input",)), out=tmp_path / "pad4.onnx", **common)
    graph = onnx.load(pad4["model"]).graph
    pad = next(n for n in graph.node if n.name == INPUT_PAD)
    producer = {o: n for n in graph.node for o in n.output}
    assert producer[pad.input[0]].op_type == "QuantizeLinear" and len(pad.input) == 3  # uint8 in, its zero point as the value
    assert np.array_equal(Session(pad4["model"]).run(x[:4]), Session(plain["model"]).run(x[:4]))
    from edgecnn.quantize.search import rank_layers

    layers = rank_layers(pad4["model"], tmp_path / "rgb.onnx", data=tmp_path / "calib.npz", samples=4)["layers"]
    assert any(r["op"].startswith("Pad+Conv") for r in layers)  # the fp32 reference is padded the same way
    assert all(r["output_sqnr_db"] > 10 for r in layers)  # every padded-model tensor found its fp32 twin
