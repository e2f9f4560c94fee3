import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_nets import OPSET

from edgecnn.data import load_dataset
from edgecnn.errors import EdgecnnError
from edgecnn.quantize.model import QuantConfig, quantize_model
from edgecnn.quantize.rounding import Layer
from edgecnn.runtime.card import Quantization, read_card
from edgecnn.runtime.session import Session


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_gptq_keeps_the_outputs_closer_to_fp32_with_the_same_graph_and_scales(digits_run, tmp_path):
    """On held-out digits the GPTQ model's logits sit closer to fp32's than nearest rounding's; only weight
    integers differ, each within the quantizer's range, and the card says which rounding made it."""
    fp32 = digits_run / "model.fp32.onnx"
    models = {r: quantize_model(fp32, QuantConfig(rounding=r), calib=digits_run, samples=256, out=tmp_path / f"{r}.onnx").model for r in ("nearest", "gptq")}
    x = load_dataset("digits").test.x
    reference = Session(fp32).predict(x)
    error = {r: float(np.mean((Session(m).predict(x) - reference) ** 2)) for r, m in models.items()}
    assert error["gptq"] < 0.9 * error["nearest"], error
    nearest, gptq = (onnx.load(str(models[r])) for r in ("nearest", "gptq"))
    assert [(n.op_type, list(n.input)) for n in nearest.graph.node] == [(n.op_type, list(n.input)) for n in gptq.graph.node]
    a, b = _weights(nearest), _weights(gptq)
    changed = [name for name in a if not np.array_equal(a[name], b[name])]
    assert changed and all(b[name].dtype == np.int8 and np.abs(b[name]).max() <= 127 for name in changed)
    assert read_card(gptq).quantization.rounding == "gptq" and read_card(nearest).quantization.rounding == "nearest"


def test_reduced_range_weights_stay_in_seven_bits(small_net, tmp_path):
    fp32, data = small_net
    model = onnx.load(str(quantize_model(fp32, QuantConfig(reduce_range=True), calib=data, samples=64, out=tmp_path / "rr.onnx").model))
    weights = [w for w in _weights(model).values() if w.dtype == np.int8]
    assert weights and all(-64 <= w.min() and w.max() <= 64 for w in weights)


@pytest.mark.parametrize("spatial, attrs", [
    ((11, 10), dict(group=6, strides=[2, 2], dilations=[2, 2], pads=[1, 2, 0, 1])),  # depthwise, strided, dilated, uneven pads
    ((11, 10), dict(group=2, strides=[1, 2], auto_pad="SAME_UPPER")),
    ((11, 10), dict(group=1, auto_pad="SAME_LOWER", strides=[2, 2])),
    ((11, 10), dict(group=3, auto_pad="VALID")),
    ((13,), dict(group=2, strides=[3], dilations=[2], pads=[2, 1])),
    ((7, 6, 5), dict(group=6, strides=[1, 2, 1], pads=[1, 0, 1, 0, 1, 1])),  # depthwise 3-D
])
def test_a_layers_patches_times_its_weight_is_the_conv(spatial, attrs):
    """The im2col behind H reproduces ONNX Runtime's Conv for 1-, 2- and 3-D, groups, strides, dilations and every padding form."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((6, 6 // attrs["group"], *[3] * len(spatial))).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3] * len(spatial), **attrs)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, *spatial])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    x = rng.standard_normal((2, 6, *spatial)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    layer = Layer(node=node, input_name="x", weight=weight, quantized=onnx.TensorProto(), scale=np.ones(6), zero_point=np.zeros(6),
                  qmin=-127, qmax=127, groups=attrs["group"])
    patches = layer.patches(x)  # (groups, n·oh·ow, inputs per output)
    rows = weight.reshape(attrs["group"], 6 // attrs["group"], -1)
    out = np.matmul(patches, rows.transpose(0, 2, 1))  # (groups, n·oh·ow, outputs per group)
    n, channels, *outputs = expected.shape
    got = out.reshape(attrs["group"], n, int(np.prod(outputs)), -1).transpose(1, 0, 3, 2).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_gptq_needs_static_qdq_and_nearest_is_the_default_elsewhere():
    assert QuantConfig().rounding == "gptq" and QuantConfig(dynamic=True).rounding == "nearest"
    assert QuantConfig(format="qoperator").rounding == "nearest"
    with pytest.raises(EdgecnnError, match="--rounding gptq needs static QDQ"):
        QuantConfig(dynamic=True, rounding="gptq")
    with pytest.raises(EdgecnnError, match=r"unknown rounding 'up' \(accepted: gptq, nearest\)"):
        QuantConfig(rounding="up")


def test_a_card_written_before_gptq_reads_as_nearest_rounding():
    record = {"format": "qdq", "per_channel": True, "method": "minmax", "types": "u8s8", "reduce_range": False, "dynamic": False,
              "symmetric": False, "passes": [], "excluded_nodes": [], "calibration": "run", "samples": 64}
    assert Quantization.from_dict(record).rounding == "nearest"
    assert QuantConfig.from_record(Quantization.from_dict(record)).label() == "qdq/u8s8/pc/minmax"


def test_quantize_starts_from_the_calibration_method_of_the_models_recipe(digits_run, tmp_path):
    """A run whose recipe asks for percentile calibration gets it from `quantize` without --method; --method still wins."""
    import json
    import shutil

    from typer.testing import CliRunner

    from edgecnn.cli import app

    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    recorded = json.loads((run / "recipe.json").read_text())
    assert recorded["int8_method"] == "minmax"  # digits keeps the default
    (run / "recipe.json").write_text(json.dumps({**recorded, "int8_method": "percentile"}))
    runner = CliRunner()
    for args, method in (([], "percentile"), (["--method", "minmax"], "minmax")):
        out = tmp_path / f"{method}.onnx"
        result = runner.invoke(app, ["quantize", str(run / "model.fp32.onnx"), "--out", str(out), "--samples", "64", *args])
        assert result.exit_code == 0, result.output
        assert read_card(onnx.load(str(out))).quantization.method == method
