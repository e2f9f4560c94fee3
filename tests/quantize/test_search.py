import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgecnn.data import load_dataset
from edgecnn.errors import EdgecnnError
from edgecnn.quantize.model import QuantConfig, quantize_model, stem_nodes
from edgecnn.quantize.search import SPEED_TIE, _reason, auto_quantize, candidate_configs, choose, rank_layers, decision_path_for
from edgecnn.runtime import META_SESSION, Session, read_metadata


def test_auto_keeps_only_a_faster_model_within_budget(digits_run, tmp_path):
    run = tmp_path / "digits"
    shutil.copytree(digits_run, run)
    assert (run / "model.int8.onnx").is_file()  # an older int8 must not survive a decision to keep fp32
    decision = auto_quantize(run / "model.fp32.onnx", max_drop=0.5, batches=[1, 16], runs=30, force=True)
    saved = json.loads((run / "quantize-decision.json").read_text())
    assert saved["kept"] == decision["kept"]
    assert "test" not in saved["validation"] and "val split" in saved["validation"]
    assert len(saved["trials"]) >= 4 and {t["config"] for t in saved["trials"]} >= {"qdq/u8s8/pc/minmax", "qdq/s8s8/pc/minmax"}
    timed = [t for t in saved["trials"] if t["within_budget"]]
    for trial in timed:
        assert set(trial["speedup"]) == {"1", "16"} and all(ms > 0 for ms in trial["p50_ms"].values())
    beats_fp32 = [t for t in timed if min(t["speedup"].values()) > 1.0]
    chosen = [t for t in saved["trials"] if t["chosen"]]
    if beats_fp32:
        assert chosen and chosen[0]["config"] == choose(beats_fp32)["config"]
        assert (run / "model.int8.onnx").is_file()
    else:  # edgecnn never ships a slower model
        assert not chosen and saved["kept"].endswith("model.fp32.onnx") and not (run / "model.int8.onnx").exists()


def test_float_stem_keeps_the_thin_first_conv_in_float(digits_run, tmp_path):
    out = quantize_model(digits_run / "model.fp32.onnx", QuantConfig(passes=("float-stem", "float-pool")),
                         calib=digits_run, samples=32, out=tmp_path / "stem.onnx")
    model = onnx.load(out["model"])
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert not any(i.endswith("_DequantizeLinear_Output") for i in first_conv.input)  # its weights stay float
    record = json.loads(read_metadata(model)["edgecnn.quantization"])
    assert record["excluded_nodes"][:3] == ["/0/Conv", "/1/Relu", "/2/MaxPool"]
    assert json.loads(read_metadata(model)[META_SESSION]) == {"disabled_optimizers": ["QDQPropagationTransformer"]}
    assert Session(out["model"]).disabled_optimizers == ["QDQPropagationTransformer"]


def test_candidates_include_stem_variants_only_for_thin_inputs(digits_run):
    model = onnx.load(str(digits_run / "model.fp32.onnx"))
    assert stem_nodes(model)[0] == "/0/Conv"
    labels = [c.label() for c in candidate_configs(model)]
    assert "qdq/u8s8/pc/minmax+stem+pool" in labels
    assert not any(label.endswith("+pad4") for label in labels)  # one input channel: padding it to 4 is slower
    assert "qdq/u8s8/pc/minmax+s2d" in labels  # conv → ReLU → 2×2 pool: the int8 space-to-depth stem fits


def test_debug_ranks_layers_worst_first(digits_run):
    result = rank_layers(digits_run / "model.int8.onnx")
    layers = result["layers"]
    assert {"Conv+Relu", "Gemm"} <= {r["op"] for r in layers}
    losses = [r["loss_db"] for r in layers]
    assert losses == sorted(losses, reverse=True)
    assert all(r["output_sqnr_db"] > 10 for r in layers)  # int8 keeps every layer well above noise


def test_debug_compares_an_nhwc_handover_model_in_its_own_layout(digits_run, tmp_path):
    """The fp32 reference gets the same hand-over and NHWC dense weights, so every tensor and weight matches."""
    out = quantize_model(digits_run / "model.fp32.onnx", QuantConfig(passes=("float-stem", "float-pool")),
                         calib=digits_run, samples=32, out=tmp_path / "handover.onnx")
    layers = rank_layers(out["model"], digits_run / "model.fp32.onnx", data=digits_run)["layers"]
    assert any(r["op"].endswith("MaxPool+Transpose+Reshape+Transpose") for r in layers)  # where int8 begins
    assert all(r["output_sqnr_db"] > 10 for r in layers)
    assert all(r["weight_sqnr_db"] is None or r["weight_sqnr_db"] > 10 for r in layers)


def test_debug_and_auto_errors(digits_run, tmp_path):
    with pytest.raises(EdgecnnError, match="fp32 model for"):
        rank_layers(digits_run / "model.int8.onnx", fp32_model=tmp_path / "none.onnx")
    not_int8 = tmp_path / "model.int8.onnx"
    shutil.copyfile(digits_run / "model.fp32.onnx", not_int8)
    with pytest.raises(EdgecnnError, match="not a QDQ-format int8 model"):
        rank_layers(not_int8, fp32_model=digits_run / "model.fp32.onnx", data=digits_run)
    qoperator = quantize_model(digits_run / "model.fp32.onnx", QuantConfig(format="qoperator"), calib=digits_run, samples=32,
                               out=tmp_path / "qop.int8.onnx")
    with pytest.raises(EdgecnnError, match="quantize --format qdq"):  # its Q/DQ pairs are fused away: nothing to rank
        rank_layers(qoperator["model"], fp32_model=digits_run / "model.fp32.onnx", data=digits_run)
    with pytest.raises(EdgecnnError, match="--max-drop"):
        auto_quantize(digits_run / "model.fp32.onnx", max_drop=-1)


def test_decision_file_names(tmp_path):
    assert decision_path_for(tmp_path / "model.int8.onnx").name == "quantize-decision.json"
    assert decision_path_for(tmp_path / "model.pruned.int8.onnx").name == "quantize-decision.pruned.json"
    assert decision_path_for(tmp_path / "mine.int8.onnx").name == "mine.quantize-decision.json"


def test_stem_nodes_skip_depthwise_convs():
    rng = np.random.default_rng(0)
    weights = {"w0": rng.standard_normal((8, 3, 3, 3)), "w1": rng.standard_normal((8, 1, 3, 3))}
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w0"], ["c0"], name="stem", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c0"], ["r0"], name="stem_relu"),
            helper.make_node("Conv", ["r0", "w1"], ["c1"], name="depthwise", group=8, pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["y"], name="depthwise_relu"),
        ],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, 8, 8])],
        [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()],
    )
    assert stem_nodes(helper.make_model(graph)) == ["stem", "stem_relu"]  # 8 groups of 1 channel read 8 channels


def test_float_head_keeps_the_dense_layers_in_float(digits_run, tmp_path):
    common = dict(calib=digits_run, samples=64)
    head = quantize_model(digits_run / "model.fp32.onnx", QuantConfig(passes=("float-head",)), out=tmp_path / "head.onnx", **common)
    plain = quantize_model(digits_run / "model.fp32.onnx", QuantConfig(), out=tmp_path / "plain.onnx", **common)
    model = onnx.load(head["model"])
    dense = next(n for n in model.graph.node if n.name == "/9/Gemm")
    assert dense.op_type == "Gemm" and not any(i.endswith("_DequantizeLinear_Output") for i in dense.input[1:])  # fp32 weights
    assert json.loads(read_metadata(model)["edgecnn.quantization"])["excluded_nodes"] == ["/9/Gemm"]
    x = load_dataset("digits").test.x
    ours, theirs = Session(head["model"]).predict(x), Session(plain["model"]).predict(x)
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.98


def _conv_then_dense(classes: int):
    """1×8×8 → conv 3×3 (4 channels) → flatten (144) → a dense layer of `classes` outputs."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Flatten", ["c"], ["f"], name="flatten"),
         helper.make_node("Gemm", ["f", "d"], ["y"], name="dense")],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, classes])],
        [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal((144, classes)).astype(np.float32), "d")],
    )
    return helper.make_model(graph)


def test_float_head_candidates_only_for_a_head_that_fits_in_cache(digits_run):
    labels = [c.label() for c in candidate_configs(onnx.load(str(digits_run / "model.fp32.onnx")))]
    assert {"qdq/u8s8/pc/minmax+fhead", "qdq/u8s8/pc/minmax+stem+pool+fhead", "qdq/u8s8/pc/minmax+s2d+fhead"} <= set(labels)
    assert "qdq/u8s8/pc/minmax+stem+fhead" not in labels and "qdq/s8s8/pc/minmax+fhead" not in labels
    assert any(label.endswith("+fhead") for label in (c.label() for c in candidate_configs(_conv_then_dense(10))))
    assert not any(c.float_head for c in candidate_configs(_conv_then_dense(2048)))  # 1.2 MB of fp32 weights


def test_float_head_needs_a_dense_layer_after_a_conv(digits_run, tmp_path):
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"], name="flatten"), helper.make_node("Gemm", ["f", "d"], ["y"], name="dense")],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(np.ones((64, 10), np.float32), "d")],
    ), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "dense.onnx")
    np.savez(tmp_path / "calib.npz", x=np.ones((4, 1, 8, 8), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(EdgecnnError, match="no Gemm or MatMul after a conv"):
        quantize_model(tmp_path / "dense.onnx", QuantConfig(passes=("float-head",)), calib=tmp_path / "calib.npz", out=tmp_path / "dense.int8.onnx")
    assert not (tmp_path / "dense.int8.onnx").exists()


def test_choose_keeps_the_smaller_file_when_speeds_tie():
    def trial(name, speedups, size):
        return {"config": name, "speedup": dict(zip((1, 64), speedups)), "score": float(np.sqrt(np.prod(speedups))), "size_bytes": size}

    small, big, slow = trial("s2d", (1.30, 2.05), 100), trial("s2d+fhead", (1.31, 2.06), 200), trial("plain", (1.02, 1.10), 50)
    assert choose([small, big, slow]) is small  # 0.6% apart: noise, so the file half the size
    faster_big = trial("s2d+fhead", (1.40, 2.30), 200)
    assert faster_big["score"] > (1 + SPEED_TIE) * small["score"] and choose([small, faster_big]) is faster_big
    assert choose([trial("int8", (0.97, 1.8), 10)]) is None  # slower than fp32 at batch 1: never kept
    ahead_but_slower_at_b1 = trial("int8", (0.97, 3.0), 10)
    reason = _reason(choose([small, ahead_but_slower_at_b1]), [small, ahead_but_slower_at_b1], 0.5)
    assert reason.startswith("s2d is the fastest int8")  # the b1 loser is no rival
