import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import pytest
from onnx_nets import Block, cnn, save_with_data

from edgecnn.errors import EdgecnnError
from edgecnn.quantize.model import QuantConfig, quantize_model
from edgecnn.runtime.card import read_card
from edgecnn.runtime.session import Session


def _agreement(fp32, int8, x) -> float:
    return float((Session(fp32).predict(x).argmax(1) == Session(int8).predict(x).argmax(1)).mean())


def test_int8_model_carries_the_card_and_agrees_with_fp32(digits_run):
    int8 = digits_run / "model.int8.onnx"
    model = onnx.load(str(int8))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}  # QDQ format
    card = read_card(model)
    assert card.labels == tuple(str(i) for i in range(10)) and card.recipe == "digits"
    assert card.quantization.format == "qdq" and card.quantization.per_channel and card.quantization.samples == 128
    assert card.quantization.passes == () and card.session_options.disabled_optimizers == ()
    from edgecnn.data import load_dataset

    assert _agreement(digits_run / "model.fp32.onnx", int8, load_dataset("digits").test.x) >= 0.97


def test_each_quantizer_setting_reaches_the_graph(small_net, tmp_path):
    """QOperator fuses Q/DQ into QLinear ops, per-tensor gives one weight scale, dynamic quantizes at run time;
    each stays close to fp32."""
    fp32, data = small_net
    x = np.load(data)["x"]

    def quantized(config, name):
        model = quantize_model(fp32, config, calib=data, samples=64, out=tmp_path / name).model
        return model, onnx.load(str(model))

    path, model = quantized(QuantConfig(format="qoperator"), "qop.onnx")
    ops = {n.op_type for n in model.graph.node}
    assert {"QLinearConv"} <= ops and "DequantizeLinear" not in {n.op_type for n in model.graph.node if n.name.startswith("conv2")}
    assert _agreement(fp32, path, x) >= 0.9
    path, model = quantized(QuantConfig(per_channel=False, method="entropy"), "pt.onnx")
    scales = {i.name: i for i in model.graph.initializer}
    weight_scale = next(scales[n.input[1]] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("conv2_w"))
    assert list(weight_scale.dims) == [] and read_card(model).quantization.method == "entropy"
    assert _agreement(fp32, path, x) >= 0.9
    path, model = quantized(QuantConfig(dynamic=True), "dyn.onnx")
    assert "DynamicQuantizeLinear" in {n.op_type for n in model.graph.node} and read_card(model).quantization.samples == 0
    assert _agreement(fp32, path, x) >= 0.9


def test_quantize_errors_are_one_line_and_write_nothing(digits_run, small_net, tmp_path):
    fp32 = digits_run / "model.fp32.onnx"
    with pytest.raises(EdgecnnError, match="--force"):
        quantize_model(fp32, calib=digits_run)
    with pytest.raises(EdgecnnError, match=r"unknown format 'int4' \(accepted: qdq, qoperator\)"):
        QuantConfig(format="int4")
    with pytest.raises(EdgecnnError, match="pass float-pool needs pass float-stem too"):
        QuantConfig(passes=("float-pool",))
    with pytest.raises(EdgecnnError, match=r"unknown quantization pass\(es\) 'float-tail' \(accepted: float-stem, float-pool"):
        QuantConfig(passes=("float-tail",))
    with pytest.raises(EdgecnnError, match="already int8"):
        quantize_model(digits_run / "model.int8.onnx", calib=digits_run, out=tmp_path / "twice.onnx")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((4, 1, 28, 28), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(EdgecnnError, match=r"shape \[1, 28, 28\].*expects \['batch', 1, 8, 8\]"):
        quantize_model(fp32, calib=wrong, out=tmp_path / "b.onnx")
    (tmp_path / "four").mkdir()
    net, data = save_with_data(cnn((4, 16, 16), (Block(8, pool=2), Block(8)), classes=10), tmp_path / "four", samples=8)
    with pytest.raises(EdgecnnError, match="pass pad-input does not fit this model: the first conv already reads 4 channels"):
        quantize_model(net, QuantConfig(passes=("pad-input",)), calib=data, out=tmp_path / "c.onnx")
    assert not (tmp_path / "b.onnx").exists() and not (tmp_path / "c.onnx").exists() and not (tmp_path / "twice.onnx").exists()


def test_outputs_stay_float_and_the_last_layer_runs_int8(small_net, tmp_path):
    """No Q/DQ pair rounds the model's outputs to 256 steps; ONNX Runtime fuses the last Gemm into an
    int8 QGemm with a float output all the same."""
    fp32, data = small_net
    out = quantize_model(fp32, QuantConfig(), calib=data, samples=32, out=tmp_path / "q.onnx").model
    model = onnx.load(str(out))
    last = next(n for n in model.graph.node if model.graph.output[0].name in n.output)
    assert last.op_type == "Gemm" and not any(i.name.startswith(model.graph.output[0].name) for i in model.graph.initializer)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    assert [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node][-1] == "QGemm"
    x = np.load(data)["x"][:32]
    outputs = Session(out).predict(x)
    assert len(np.unique(outputs)) == outputs.size  # not on a grid of 256 steps
    assert np.abs(outputs - Session(fp32).predict(x)).max() < 0.1 * np.abs(outputs).max()


def test_labels_name_the_settings_and_passes():
    assert QuantConfig().label() == "qdq/u8s8/pc/minmax/gptq"
    assert QuantConfig(passes=("float-head", "s2d-stem"), exclude=("a",)).label() == "qdq/u8s8/pc/minmax/gptq+s2d-stem+float-head+1float"
    assert QuantConfig(dynamic=True, reduce_range=True).label() == "dynamic/u8s8/rr"


def test_symmetric_activations_have_zero_points_of_zero(small_net, tmp_path):
    """What TensorRT's int8 reads: S8S8 QDQ whose every activation zero point is 0, recorded in the card."""
    fp32, data = small_net
    model = onnx.load(str(quantize_model(fp32, QuantConfig(types="s8s8", symmetric=True), calib=data, samples=32, out=tmp_path / "sym.onnx").model))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert read_card(model).quantization.symmetric


@pytest.mark.parametrize("samples", [100, 37])
def test_histogram_calibration_takes_any_sample_count(tmp_path, samples):
    """Percentile and entropy calibration stack equal batches: 100 samples go as 4 × 25, a prime count one by one."""
    fp32, data = save_with_data(cnn((1, 16, 16), (Block(8, pool=2), Block(8)), classes=10), tmp_path, samples=200)
    for method in ("percentile", "entropy"):
        out = quantize_model(fp32, QuantConfig(method=method), calib=data, samples=samples, out=tmp_path / f"{method}{samples}.onnx").model
        assert read_card(onnx.load(str(out))).quantization.samples == samples
