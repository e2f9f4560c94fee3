import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx_nets import Block, cnn

from edgecnn.errors import EdgecnnError
from edgecnn.quantize.passes import PASSES, check_passes, float_nodes, pass_sets, pass_targets, rewrite_float, session_needs, stem_nodes
from edgecnn.runtime.targets import TARGETS

HOST = TARGETS["host"]


def test_pass_sets_are_what_fits_pays_and_goes_together():
    gray = pass_sets(cnn((1, 16, 16), (Block(8, pool=2), Block(8)), classes=10), HOST)
    assert () in gray and ("float-stem", "float-pool") in gray and ("s2d-stem",) in gray and ("s2d-stem", "float-head") in gray
    assert not any("pad-input" in s for s in gray)  # one channel padded to 4 runs slower: fits, but does not pay
    assert not any({"float-pool"} <= set(s) and "float-stem" not in s for s in gray)  # requires
    assert not any({"s2d-stem", "float-stem"} <= set(s) for s in gray)  # excludes
    rgb = pass_sets(cnn((3, 16, 16), (Block(8, pool=2), Block(8)), classes=10), HOST)
    assert ("pad-input",) in rgb and ("pad-input", "float-head") in rgb and not any({"pad-input", "float-stem"} <= set(s) for s in rgb)
    assert not any("float-head" in s for s in pass_sets(cnn((1, 16, 16), (Block(8, pool=2), Block(8)), classes=2048), HOST))  # 1.6 MB of fp32 weights: no cache win
    assert len(gray) == len(set(gray)) and all(s == check_passes(s, "u8s8", False) for s in gray)  # canonical order


def test_check_passes_orders_and_refuses():
    assert check_passes(("float-head", "float-pool", "float-stem"), "u8s8", False) == ("float-stem", "float-pool", "float-head")
    with pytest.raises(EdgecnnError, match="pass s2d-stem cannot be combined with float-stem"):
        check_passes(("s2d-stem", "float-stem"), "u8s8", False)
    with pytest.raises(EdgecnnError, match="pass s2d-stem quantizes with static u8s8 or s8s8 types only, not dynamic u8s8"):
        check_passes(("s2d-stem",), "u8s8", True)
    with pytest.raises(EdgecnnError, match="not u8u8"):
        check_passes(("s2d-stem",), "u8u8", False)


def test_passes_declare_what_their_result_needs():
    assert PASSES["s2d-stem"].domains == ("com.microsoft",)
    assert session_needs(("float-stem", "float-pool")).disabled_optimizers == ("QDQPropagationTransformer",)
    assert session_needs(("s2d-stem", "float-head")).disabled_optimizers == ()


def test_float_nodes_and_rewrites_follow_the_passes():
    model = cnn((1, 16, 16), (Block(8, pool=2), Block(8)), classes=10)
    assert float_nodes(model, ("float-stem", "float-head")) == ["conv1", "relu1", "pool1", "gemm"]
    in_float = float_nodes(model, ("float-stem", "float-pool"))
    added = rewrite_float(model, ("float-stem", "float-pool"), in_float)
    assert added == ["pool1_to_nhwc", "pool1_nhwc_hold"]  # the hand-over's float transpose and reshape
    assert any(n.op_type == "Transpose" and n.name == "flatten_nhwc" for n in model.graph.node)  # dense reads NHWC


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


def test_no_pass_set_leaves_every_conv_and_dense_layer_in_float():
    """A net of one conv and one dense layer: float-stem with float-head would quantize nothing that computes."""
    sets = pass_sets(cnn((1, 16, 16), (Block(8, pool=2),), classes=10), HOST)
    assert ("float-stem",) in sets and ("float-head",) in sets
    assert not any({"float-stem", "float-head"} <= set(s) for s in sets)


def test_each_pass_is_valid_only_where_its_result_runs_at_its_speed():
    """Session options only edgecnn applies: host only. Contrib operators: not where only standard ONNX
    loads. CPU-only kernels: not on a GPU."""
    assert pass_targets("float-pool") == ["host"]
    assert pass_targets("s2d-stem") == ["ort", "host", "pi4", "pi5"]
    assert pass_targets("pad-input") == ["ort", "host", "pi4", "pi5"]  # ORT's CPU kernel is what it pays on: not `onnx`, read by other runtimes
    assert pass_targets("float-stem") == list(TARGETS) and pass_targets("float-head") == list(TARGETS)
    model = cnn((1, 16, 16), (Block(8, pool=2), Block(8)), classes=10)
    assert not any("float-pool" in s for s in pass_sets(model, TARGETS["ort"]))
    assert not any("s2d-stem" in s for s in pass_sets(model, TARGETS["onnx"]) + pass_sets(model, TARGETS["openvino"]))
