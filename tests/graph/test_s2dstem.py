"""The int8 space-to-depth stem: exact in float, the same predictions as int8 with a float stem,
and a clear refusal for a first block it does not fit."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecnn.data import load_dataset
from edgecnn.errors import EdgecnnError
from edgecnn.graph.s2dstem import find_s2d_stem, phase_weights
from edgecnn.quantize.model import QuantConfig, quantize_model
from edgecnn.runtime import META_QUANTIZATION, Session, count_macs, read_metadata
from edgecnn.train.export import export_onnx
from edgecnn.train.nets import build_net
from recipes import get_recipe


def _run(nodes, inits, x):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("channels,kernel,pad", [(1, 3, 0), (3, 3, 1), (2, 5, 2)])
def test_phase_weights_compute_conv_then_pool_in_float(channels, kernel, pad):
    """Space-to-depth, the phase conv and a max over the four phases equal conv → 2×2 max pool."""
    rng = np.random.default_rng(kernel)
    x = rng.standard_normal((2, channels, 12, 16)).astype(np.float32)
    weight = rng.standard_normal((8, channels, kernel, kernel)).astype(np.float32)
    direct = _run([helper.make_node("Conv", ["x", "w"], ["c"], pads=[pad] * 4),
                   helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], {"w": weight}, x)
    h, w = (12 + 2 * pad) // 2 - kernel // 2, (16 + 2 * pad) // 2 - kernel // 2
    phased = _run([helper.make_node("Pad", ["x", "pads"], ["p"]),
                   helper.make_node("SpaceToDepth", ["p"], ["d"], blocksize=2),
                   helper.make_node("Conv", ["d", "w"], ["c"]),
                   helper.make_node("Reshape", ["c", "shape"], ["r"]),
                   helper.make_node("ReduceMax", ["r"], ["y"], axes=[1], keepdims=0)],
                  {"w": phase_weights(weight), "pads": np.array([0, 0, pad, pad, 0, 0, pad, pad], np.int64),
                   "shape": np.array([2, 4, 8, h, w], np.int64)}, x)
    assert phased.shape == direct.shape
    assert np.allclose(phased, direct, atol=1e-4)


def test_digits_s2d_stem_predicts_as_the_float_stem(digits_run, tmp_path):
    """The digits net's 'same'-padded stem in int8: no float conv left, predictions as with it in float."""
    common = dict(calib=digits_run, samples=128)
    s2d = quantize_model(digits_run / "model.fp32.onnx", QuantConfig(passes=("s2d-stem",)), out=tmp_path / "s2d.onnx", **common)
    stem = quantize_model(digits_run / "model.fp32.onnx", QuantConfig(passes=("float-stem", "float-pool")), out=tmp_path / "stem.onnx", **common)
    model = onnx.load(s2d["model"])
    names = {n.name for n in model.graph.node}
    assert {"s2d_stem_pad", "s2d_stem_conv", "s2d_stem_pool"} <= names and not {"/0/Conv", "/1/Relu", "/2/MaxPool"} & names
    record = json.loads(read_metadata(model)[META_QUANTIZATION])
    assert record["s2d_stem"] and record["excluded_nodes"] == []
    fp32_macs = count_macs(onnx.load(str(digits_run / "model.fp32.onnx")))
    assert count_macs(model) == fp32_macs - 8 * 8 * 8 * 9 + 4 * 4 * 32 * 16  # the 8×8 stem conv became a 4×4 phase conv
    x = load_dataset("digits").test.x
    ours, theirs = Session(s2d["model"]).predict(x), Session(stem["model"]).predict(x)
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.98
    assert np.abs(ours - theirs).max() < 0.1 * np.abs(theirs).max()


def test_rgb_s2d_stem_matches_the_padded_int8_stem(tmp_path):
    """On three channels the stem goes through SpaceToDepth; its output is int8 on the same scales as
    int8 on the padded input, so the two models agree to a few quantization steps."""
    x = np.random.default_rng(0).random((8, 3, 150, 150), dtype=np.float32)
    export_onnx(build_net("catsdogs_cnn"), get_recipe("catsdogs"), tmp_path / "rgb.onnx", x[:2])
    np.savez(tmp_path / "calib.npz", x=x, y=np.zeros(8, np.int64))
    common = dict(calib=tmp_path / "calib.npz", samples=8)
    s2d = quantize_model(tmp_path / "rgb.onnx", QuantConfig(passes=("s2d-stem",)), out=tmp_path / "s2d.onnx", **common)
    pad4 = quantize_model(tmp_path / "rgb.onnx", QuantConfig(passes=("pad-input",)), out=tmp_path / "pad4.onnx", **common)
    assert "s2d_stem_to_depth" in {n.name for n in onnx.load(s2d["model"]).graph.node}
    ours, theirs, fp32 = (Session(p).run(x[:4]) for p in (s2d["model"], pad4["model"], tmp_path / "rgb.onnx"))
    assert np.abs(ours - theirs).max() <= 3 * np.abs(theirs - fp32).max() + 1e-6


def test_layer_ranking_sees_the_int8_stem(digits_run, tmp_path):
    """The stem's output has no float tensor before its quantize; the ranking still rows it on its own."""
    from edgecnn.quantize.search import rank_layers

    s2d = quantize_model(digits_run / "model.fp32.onnx", QuantConfig(passes=("s2d-stem",)), calib=digits_run, samples=64, out=tmp_path / "s2d.int8.onnx")
    rows = rank_layers(s2d["model"], digits_run / "model.fp32.onnx", data=digits_run, samples=32)["layers"]
    stem = next(r for r in rows if r["node"] == "/2/MaxPool")
    assert stem["op"] == "Conv+Relu+MaxPool" and 10 < stem["output_sqnr_db"] < 100


def _stem(shape, conv_attrs, pool=True):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", **conv_attrs), helper.make_node("Relu", ["c"], ["r"], name="relu")]
    nodes.append(helper.make_node("MaxPool", ["r"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]) if pool else helper.make_node("Relu", ["r"], ["y"]))
    return helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ones((4, shape[1], 3, 3), np.float32), "w")]))


def test_first_blocks_the_rewrite_does_not_fit_are_named(tmp_path):
    """A strided stem, a stem without a 2×2 pool, an odd padded size, a 1-D signal: each refused with what it needs."""
    fits = find_s2d_stem(_stem([1, 1, 28, 28], {}))
    assert fits.nodes == ("conv", "relu", "pool") and fits.relu and (fits.height, fits.width) == (28, 28)
    for model, says in (
        (_stem([1, 3, 28, 28], {"strides": [2, 2]}), "strides \\[2, 2\\]"),
        (_stem([1, 1, 28, 28], {}, pool=False), "conv is not followed by one"),
        (_stem([1, 1, 27, 28], {}), "padded input is 27×28"),
        (_stem([1, 1, 27, 28], {"pads": [1, 0, 0, 0]}), None),
    ):
        if says is None:
            assert find_s2d_stem(model).pads == (1, 0, 0, 0)
            continue
        with pytest.raises(EdgecnnError, match=says):
            find_s2d_stem(model)
    seq = np.random.default_rng(0).standard_normal((2, 1, 40)).astype(np.float32)
    export_onnx(build_net("seq1d_cnn"), get_recipe("seq1d"), tmp_path / "seq.onnx", seq)
    with pytest.raises(EdgecnnError, match="--s2d-stem needs"):
        find_s2d_stem(onnx.load(str(tmp_path / "seq.onnx")))


def test_s2d_stem_refuses_other_stem_settings():
    with pytest.raises(EdgecnnError, match="--s2d-stem"):
        QuantConfig(s2d_stem=True, float_stem=True).check()
    with pytest.raises(EdgecnnError, match="--s2d-stem"):
        QuantConfig(s2d_stem=True, types="u8u8").check()


def test_a_float_reader_of_the_stem_output_is_refused(digits_run, tmp_path):
    """With the next conv left in float, the stem's output feeds it directly: no int8 stem, nothing written."""
    out = tmp_path / "s2d.onnx"
    with pytest.raises(EdgecnnError, match="read by one quantize"):
        quantize_model(digits_run / "model.fp32.onnx", QuantConfig(s2d_stem=True, exclude=("/4/Conv",)), calib=digits_run, samples=32, out=out)
    assert not out.exists()
