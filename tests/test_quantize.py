import json
import platform

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.quantize import QuantConfig, int8_path, quantize_model
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


def test_nhwc_handover_changes_layout_only(digits_run, tmp_path):
    """The float stem's hand-over to NHWC int8 is transposes, a no-op reshape and the dense layer's
    weights in NHWC order: the same numbers but for float rounding."""
    from edgecnn.data import load_dataset

    handover = quantize_model(digits_run / "model.fp32.onnx", QuantConfig(float_stem=True, keep_float_pool=True),
                              calib=digits_run, samples=32, out=tmp_path / "handover.onnx")
    plain = quantize_model(digits_run / "model.fp32.onnx", QuantConfig(float_stem=True),
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
    from edgecnn.data import load_dataset
    from edgecnn.quantize import nhwc_flatten

    model = onnx.load(str(digits_run / "model.fp32.onnx"))
    assert nhwc_flatten(model) == 1
    flatten = next(n for n in model.graph.node if n.op_type == "Flatten")
    transpose = next(n for n in model.graph.node if n.output[0] == flatten.input[0])
    assert transpose.op_type == "Transpose" and list(transpose.attribute[0].ints) == [0, 2, 3, 1]
    x = load_dataset("digits").test.x
    rewritten = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.allclose(rewritten, Session(digits_run / "model.fp32.onnx").predict(x), atol=1e-5)


def test_nhwc_layout_leaves_a_conv1d_stem_as_it_is(tmp_path):
    """The hand-over is for images: a 1-D signal net keeps its graph and still quantizes."""
    from edgecnn.export import export_onnx
    from edgecnn.nets import build_net
    from edgecnn.quantize import nhwc_layout, stem_nodes
    from recipes import get_recipe

    x = np.random.default_rng(0).standard_normal((16, 1, 40)).astype(np.float32)
    export_onnx(build_net("seq1d_cnn"), get_recipe("seq1d"), tmp_path / "seq.onnx", x)
    model = onnx.load(str(tmp_path / "seq.onnx"))
    before = [n.op_type for n in model.graph.node]
    assert stem_nodes(model) and nhwc_layout(model, stem_nodes(model)) == []
    assert [n.op_type for n in model.graph.node] == before
    np.savez(tmp_path / "calib.npz", x=x, y=np.zeros(16, np.int64))
    out = quantize_model(tmp_path / "seq.onnx", QuantConfig(float_stem=True, keep_float_pool=True), calib=tmp_path / "calib.npz",
                         samples=16, out=tmp_path / "seq.int8.onnx")
    assert Session(out["model"]).run(x).shape == (16, 10)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="ONNX Runtime's blocked NCHWc kernels are x86's")
def test_nhwc_handover_reaches_onnxruntime_as_intended(tmp_path):
    """On x86, ORT reorders the float stem's output straight to NHWC: no reorder to NCHW, no transpose before int8."""
    from edgecnn.export import export_onnx
    from edgecnn.nets import build_net
    from recipes import get_recipe

    x = np.random.default_rng(0).random((32, 1, 28, 28), dtype=np.float32)
    export_onnx(build_net("convnet"), get_recipe("convnet"), tmp_path / "net.onnx", x)
    np.savez(tmp_path / "calib.npz", x=x, y=np.zeros(32, np.int64))
    out = quantize_model(tmp_path / "net.onnx", QuantConfig(float_stem=True, keep_float_pool=True), calib=tmp_path / "calib.npz",
                         samples=32, out=tmp_path / "net.int8.onnx")
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(out["model"], options, providers=["CPUExecutionProvider"], disabled_optimizers=Session(out["model"]).disabled_optimizers)
    ops = [(n.op_type, {a.name: a.i for a in n.attribute if a.name == "channels_last"}) for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    first_int8 = next(i for i, (op, _) in enumerate(ops) if op == "QLinearConv")
    assert ("ReorderOutput", {"channels_last": 1}) in ops[:first_int8]
    assert [op for op, _ in ops].count("Transpose") == 0  # the hand-over's and the flatten's both cancelled
