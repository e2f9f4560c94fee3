"""The int8 space-to-depth stem: exact in float, exact in int8 against a numpy reference built from
the model's own scales, the same outputs as plain int8, and a clear refusal for a first block it
does not fit."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_nets import OPSET, Block, calibration_file, cnn, inputs, run, save

from edgecnn.errors import EdgecnnError
from edgecnn.graph.count import count_macs
from edgecnn.graph.crop import crop_unread_input
from edgecnn.graph.s2dstem import find_s2d_stem, phase_weights
from edgecnn.quantize.layers import rank_layers
from edgecnn.quantize.model import QuantConfig, quantize_model
from edgecnn.runtime.card import read_card
from edgecnn.runtime.session import Session


def _graph(nodes, initializers, shape):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


@pytest.mark.parametrize("channels,kernel,pad", [(1, 3, 0), (3, 3, 1), (2, 5, 2)])
def test_phase_weights_compute_conv_then_pool_in_float(channels, kernel, pad):
    """Space-to-depth, the phase conv and a max over the four phases equal conv → 2×2 max pool."""
    rng = np.random.default_rng(kernel)
    x = rng.standard_normal((2, channels, 12, 16)).astype(np.float32)
    weight = rng.standard_normal((8, channels, kernel, kernel)).astype(np.float32)
    direct = _graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[pad] * 4),
                     helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], {"w": weight}, x.shape)
    h, w = (12 + 2 * pad) // 2 - kernel // 2, (16 + 2 * pad) // 2 - kernel // 2
    phased = _graph([helper.make_node("Pad", ["x", "pads"], ["p"]),
                     helper.make_node("SpaceToDepth", ["p"], ["d"], blocksize=2),
                     helper.make_node("Conv", ["d", "w"], ["c"]),
                     helper.make_node("Reshape", ["c", "shape"], ["r"]),
                     helper.make_node("ReduceMax", ["r"], ["y"], axes=[1], keepdims=0)],
                    {"w": phase_weights(weight), "pads": np.array([0, 0, pad, pad, 0, 0, pad, pad], np.int64),
                     "shape": np.array([2, 4, 8, h, w], np.int64)}, x.shape)
    expected, = run(direct, x)
    got, = run(phased, x)
    assert got.shape == expected.shape
    assert np.allclose(got, expected, atol=1e-4)


# The int8 reference. ORT (checked on 1.32, x86 AVX512-VNNI) quantizes the input as rint(x / scale)
# + zero point, saturated: a division and round half to even (the ties planted below would show
# round-half-away). It requantizes an int32 sum as rint(float32(sum) · float32(x_scale · w_scale /
# y_scale)) + zero point, saturated, rounding half to even as well (MLAS converts in the default
# rounding mode; no product in this data lands on an exact half). The reference below matches ORT
# to the bit at every position: no 1-LSB allowance.
#
# Test inputs stay at or below 0.25, quantized ≤ 128: a pair of u8 × s8 products then stays within
# int16, where AVX2 without VNNI adds pairs with vpmaddubsw, which saturates there. The reference
# then holds whichever int8 kernel ORT picks.
CALIBRATION_RANGE = (-0.5, 1.0)  # the input's zero point is 85, so padding with 0 instead would show
TEST_RANGE = (-0.6, 0.25)  # below the calibrated minimum: QuantizeLinear saturates at 0 too


def _saturate(values, dtype):
    info = np.iinfo(dtype)
    return np.clip(values, info.min, info.max)


def _quantize_input(x, scale, zero):
    """ONNX QuantizeLinear: round half to even of x / scale, plus the zero point, saturated."""
    return _saturate(np.rint(x / scale) + zero.astype(np.float32), zero.dtype).astype(np.int64)


def _requantize(total, multiplier, zero):
    """An int32 sum to the output type with the real multiplier x_scale · w_scale / y_scale."""
    return _saturate(np.rint(total.astype(np.float32) * multiplier) + zero.astype(np.float32), zero.dtype).astype(zero.dtype)


def _initializers(model):
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _int8_s2d_reference(model, x):
    """The stem in numpy from the initializers the int8 model holds: quantize, crop and pad with the
    zero point, space-to-depth, integer phase conv plus int32 bias, requantize (the output zero point
    is the type's minimum: that saturation is the ReLU), then the max over the four phases. NHWC."""
    values = _initializers(model)
    nodes = {n.name: n for n in model.graph.node}
    x_scale, x_zero = values["s2d_stem_x_scale"], values["s2d_stem_x_zero_point"]
    conv = nodes["s2d_stem_conv"]
    y_scale, y_zero = values[conv.input[6]], values[conv.input[7]]
    assert y_zero == np.iinfo(y_zero.dtype).min
    xq = _quantize_input(x, x_scale, x_zero)
    if "s2d_stem_crop" in nodes:
        starts, ends, axes = (values[name] for name in nodes["s2d_stem_crop"].input[1:])
        assert not starts.any() and list(axes) == [2, 3]
        xq = xq[:, :, : ends[0], : ends[1]]
    if "s2d_stem_pads" in values:
        pads = values["s2d_stem_pads"]
        xq = np.pad(xq, [(pads[d], pads[d + 4]) for d in range(4)], constant_values=int(x_zero))
    n, c, height, width = xq.shape
    depth = xq.reshape(n, c, height // 2, 2, width // 2, 2).transpose(0, 2, 4, 3, 5, 1).reshape(n, height // 2, width // 2, 4 * c)
    weight = values["s2d_stem_w"].astype(np.int64)  # [4M, 4C, kh, kw]; input channel (2i + j)·C + c
    windows = np.lib.stride_tricks.sliding_window_view(depth - int(x_zero), weight.shape[2:], axis=(1, 2))
    total = np.einsum("nyxdrs,odrs->nyxo", windows, weight) + values["s2d_stem_b"]
    phases = _requantize(total, x_scale * values["s2d_stem_w_scale"] / y_scale, y_zero)
    return phases.reshape(*phases.shape[:3], 4, -1).max(axis=3)  # output channel p·M + m: phase p of filter m


def _int8_conv_pool_reference(x, x_scale, x_zero, crop, pads, weight, bias, multiplier, y_zero):
    """The same block without space-to-depth: integer k×k conv on the quantized input, requantize,
    2×2 max pool. NHWC."""
    xq = _quantize_input(x, x_scale, x_zero)[:, :, :crop, :crop]
    xq = np.pad(xq, [(0, 0), (0, 0), (pads, pads), (pads, pads)], constant_values=int(x_zero))
    windows = np.lib.stride_tricks.sliding_window_view(xq - int(x_zero), weight.shape[2:], axis=(2, 3))
    total = np.einsum("ncyxuv,mcuv->nyxm", windows, weight.astype(np.int64)) + bias
    conv = _requantize(total, multiplier, y_zero)
    n, height, width, m = conv.shape
    return conv[:, : height // 2 * 2, : width // 2 * 2].reshape(n, height // 2, 2, width // 2, 2, m).max(axis=(2, 4))


@pytest.mark.parametrize("channels,size,pads,per_channel", [
    (1, 12, 0, True),
    (1, 12, 1, True),
    (3, 12, 0, True),
    (3, 12, 1, True),
    (3, 12, 1, False),
    (1, 13, 0, True),  # 13 → conv 11 → pool 5 → conv 3 reads 12 rows: the stem crops in uint8
], ids=["gray", "gray-padded", "rgb", "rgb-padded", "rgb-padded-per-tensor", "gray-cropped"])
def test_int8_s2d_stem_equals_an_exact_int8_reference(tmp_path, channels, size, pads, per_channel):
    """ORT's int8 stem output equals, to the bit, the int8 conv → ReLU → 2×2 max pool computed in
    numpy on the model's own scales, zero points, phase weights and int32 bias, both through
    space-to-depth and directly; and those phase weights and bias are the fp32 conv's, quantized
    symmetric as onnxruntime.quantization does."""
    shape = (channels, size, size)
    fp32 = cnn(shape, (Block(8, pads=pads, pool=2), Block(8)), seed=channels)
    extent = crop_unread_input(fp32)
    assert extent == ([12, 12] if size == 13 else None)
    calibration = inputs(64, shape, seed=1, low=CALIBRATION_RANGE[0], high=CALIBRATION_RANGE[1])
    calibration.reshape(-1)[:2] = CALIBRATION_RANGE
    quantized = quantize_model(save(fp32, tmp_path / "fp32.onnx"), QuantConfig(per_channel=per_channel, passes=("s2d-stem",)),
                               calib=calibration_file(tmp_path / "calib.npz", calibration), samples=64, out=tmp_path / "int8.onnx")
    model = onnx.load(str(quantized.model))
    assert ("s2d_stem_crop" in {n.name for n in model.graph.node}) == (extent is not None)

    values = _initializers(model)
    x_scale, x_zero = values["s2d_stem_x_scale"], values["s2d_stem_x_zero_point"]
    assert x_zero == 85
    weight, bias = (numpy_helper.to_array(next(i for i in fp32.graph.initializer if i.name == name)) for name in ("conv1_w", "conv1_b"))
    absmax = np.abs(weight).reshape(8, -1).max(axis=1) if per_channel else np.full(8, np.abs(weight).max())
    w_scale = (absmax / 127).astype(np.float32)
    w_int8 = np.clip(np.rint(weight / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    b_int32 = np.rint(bias / (x_scale * w_scale)).astype(np.int32)
    assert np.array_equal(values["s2d_stem_w"], phase_weights(w_int8))
    assert np.array_equal(values["s2d_stem_w_scale"], np.tile(w_scale, 4) if per_channel else w_scale[:1])
    assert np.array_equal(values["s2d_stem_b"], np.tile(b_int32, 4))

    x = inputs(16, shape, seed=2, low=TEST_RANGE[0], high=TEST_RANGE[1])
    steps = np.arange(-10, 40)  # half-way values: x / scale lands exactly on q + 0.5
    ties = ((steps + 0.5) * x_scale).astype(np.float32)
    ties = ties[ties / x_scale == steps + 0.5]
    assert len(ties) > 20
    x[0].reshape(-1)[: len(ties)] = ties
    pooled, = run(model, x, ["s2d_stem_pooled"])

    expected = _int8_s2d_reference(model, x)
    conv = next(n for n in model.graph.node if n.name == "s2d_stem_conv")
    y_scale, y_zero = values[conv.input[6]], values[conv.input[7]]
    direct = _int8_conv_pool_reference(x, x_scale, x_zero, extent[0] if extent else size, pads, w_int8, b_int32, x_scale * w_scale / y_scale, y_zero)
    assert np.array_equal(expected, direct)
    assert pooled.dtype == np.uint8 and pooled.shape == expected.shape
    assert np.array_equal(pooled, expected)
    assert 0.02 < (expected == 0).mean() < 0.5  # the ReLU's saturation is exercised, and most of the values are not zero


@pytest.mark.parametrize("channels,stem_macs", [
    (1, -8 * 8 * 8 * 9 + 4 * 4 * 32 * 16),  # an 8×8 3×3 conv on 1 channel becomes a 4×4 2×2 conv, 4 → 32 channels
    (3, -8 * 8 * 8 * 27 + 4 * 4 * 32 * 48),  # on 3 channels through SpaceToDepth, 12 → 32 channels
], ids=["gray", "rgb"])
def test_s2d_stem_model_computes_what_plain_int8_computes(tmp_path, channels, stem_macs):
    """On the same calibration the int8 stem quantizes, convolves and requantizes as ORT's plain int8
    does: the whole model's outputs agree to float rounding. No float conv is left, nothing stays in
    float, and the MACs change by the stem's alone."""
    shape = (channels, 8, 8)
    fp32 = save(cnn(shape, (Block(8, pads=1, pool=2), Block(16, pads=1, pool=2)), classes=10), tmp_path / "fp32.onnx")
    x = inputs(64, shape, seed=1)
    calib = calibration_file(tmp_path / "calib.npz", x)
    nearest = dict(rounding="nearest")  # the s2d stem rounds its weights to nearest: plain int8 matches it so
    s2d = quantize_model(fp32, QuantConfig(passes=("s2d-stem",), **nearest), calib=calib, samples=64, out=tmp_path / "s2d.onnx")
    plain = quantize_model(fp32, QuantConfig(**nearest), calib=calib, samples=64, out=tmp_path / "plain.onnx")
    model = onnx.load(str(s2d.model))
    names = {n.name for n in model.graph.node}
    assert {"s2d_stem_conv", "s2d_stem_pool"} <= names and not {"conv1", "relu1", "pool1"} & names
    assert "s2d_stem_pad" in names and ("SpaceToDepth" in {n.op_type for n in model.graph.node}) == (channels > 1)
    record = read_card(model).quantization
    assert record.passes == ("s2d-stem",) and record.excluded_nodes == ()
    assert count_macs(model) == count_macs(onnx.load(str(fp32))) + stem_macs
    ours, theirs, reference = Session(s2d.model).run(x), Session(plain.model).run(x), Session(fp32).run(x)
    assert np.abs(theirs - reference).max() > 1e-3  # int8 differs from fp32: agreeing with it is no accident
    assert np.allclose(ours, theirs, rtol=0, atol=1e-5)


def test_layer_ranking_sees_the_int8_stem(tmp_path):
    """The stem's output has no float tensor before its quantize; the ranking still rows it on its own."""
    shape = (1, 12, 12)
    fp32 = save(cnn(shape), tmp_path / "fp32.onnx")
    calib = calibration_file(tmp_path / "calib.npz", inputs(64, shape, seed=1))
    s2d = quantize_model(fp32, QuantConfig(passes=("s2d-stem",)), calib=calib, samples=64, out=tmp_path / "s2d.onnx")
    rows = rank_layers(s2d.model, fp32, data=calib, samples=32)["layers"]
    stem = next(r for r in rows if r["node"] == "pool1")
    assert stem["op"] == "Conv+Relu+MaxPool" and 10 < stem["output_sqnr_db"] < 100


def _stem(shape, conv_attrs, pool=True):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", **conv_attrs), helper.make_node("Relu", ["c"], ["r"], name="relu")]
    nodes.append(helper.make_node("MaxPool", ["r"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]) if pool else helper.make_node("Relu", ["r"], ["y"]))
    return _graph(nodes, {"w": np.ones((4, shape[1], 3, 3), np.float32)}, shape)


def test_first_blocks_the_rewrite_does_not_fit_are_named():
    """A strided stem, a stem without a 2×2 pool, an odd padded size, a 1-D signal: each refused with what it needs."""
    fits = find_s2d_stem(_stem([1, 1, 28, 28], {}))
    assert fits.nodes == ("conv", "relu", "pool") and fits.relu and (fits.height, fits.width) == (28, 28)
    assert find_s2d_stem(_stem([1, 1, 27, 28], {"pads": [1, 0, 0, 0]})).pads == (1, 0, 0, 0)
    for model, says in (
        (_stem([1, 3, 28, 28], {"strides": [2, 2]}), "strides \\[2, 2\\]"),
        (_stem([1, 1, 28, 28], {}, pool=False), "conv is not followed by one"),
        (_stem([1, 1, 27, 28], {}), "padded input is 27×28"),
        (cnn((1, 40), (Block(4, pool=2), Block(4))), "no ungrouped conv reading its input"),
    ):
        with pytest.raises(EdgecnnError, match=f"the s2d-stem pass needs .*{says}"):
            find_s2d_stem(model)


@pytest.mark.parametrize("settings,says", [
    (dict(passes=("s2d-stem", "float-stem")), "s2d-stem cannot be combined with float-stem"),
    (dict(passes=("s2d-stem", "pad-input")), "s2d-stem cannot be combined with pad-input"),
    (dict(passes=("s2d-stem",), types="u8u8"), "static u8s8 or s8s8 types only, not u8u8"),
    (dict(passes=("s2d-stem",), dynamic=True), "not dynamic u8s8"),
])
def test_s2d_stem_refuses_other_stem_settings(settings, says):
    with pytest.raises(EdgecnnError, match=says):
        QuantConfig(**settings)


def test_a_float_reader_of_the_stem_output_is_refused(tmp_path):
    """With the next conv left in float, the stem's output feeds it directly: no int8 stem, nothing written."""
    shape = (1, 12, 12)
    fp32 = save(cnn(shape), tmp_path / "fp32.onnx")
    calib = calibration_file(tmp_path / "calib.npz", inputs(16, shape))
    out = tmp_path / "s2d.onnx"
    with pytest.raises(EdgecnnError, match="read by one quantize"):
        quantize_model(fp32, QuantConfig(passes=("s2d-stem",), exclude=("conv2",)), calib=calib, samples=16, out=out)
    assert not out.exists()
