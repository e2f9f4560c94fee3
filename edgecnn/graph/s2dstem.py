"""The first conv block in int8 as a space-to-depth conv whose four output phases are its pool's window.

ONNX Runtime's int8 conv is slower than fp32 on a 1-3 channel input, and a float stem leaves the
largest activation of the net in fp32, pooled and reordered in float. A 2×2 space-to-depth turns
conv (odd k×k, stride 1) → ReLU → 2×2 max pool of stride 2 into a conv on 4·C channels with a
(k+1)/2 kernel whose 4·M outputs are the conv at the four positions of each pool window: the
pool becomes a max over those phases, in uint8, at a quarter of the conv's output size. Written
with ORT's NHWC int8 ops, so no layout change sits between it and the int8 convs after it. The
phases lie side by side in each pixel's channels, so a view of them as four times as many columns
makes the max a 1×4 pool of stride 4 whose output is the pooled NHWC map itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

from edgecnn.errors import EdgecnnError
from edgecnn.graph.nodes import attribute, input_conv, input_crop, tensor_consumers

REQUIREMENT = "the first conv (stride 1, odd kernel, no dilation or groups) then an optional ReLU and a 2×2 max pool of stride 2, on an even padded height and width"


@dataclass(frozen=True)
class S2dStem:
    """The block the rewrite replaces and its geometry."""

    nodes: tuple[str, ...]  # [input crop,] conv, [relu,] pool
    output: str  # the pool's output
    weight: str  # the conv's initializers
    bias: str | None
    relu: bool
    channels: int
    height: int  # padded
    width: int
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    crop: tuple[str, ...] = ()  # the input crop's starts, ends and axes, where the conv reads a crop


def find_s2d_stem(model: onnx.ModelProto) -> S2dStem:
    """The model's first conv block, when the rewrite fits it; otherwise an error naming what does not."""
    found = input_conv(model)
    if found is None:
        raise EdgecnnError(f"the s2d-stem pass needs {REQUIREMENT}; the model has no ungrouped conv reading its input")
    conv, weight = found
    kh, kw = weight.dims[2], weight.dims[3]
    if attribute(conv, "strides", [1, 1]) != [1, 1] or attribute(conv, "dilations", [1, 1]) != [1, 1] or kh % 2 == 0 or kw % 2 == 0:
        raise EdgecnnError(f"the s2d-stem pass needs {REQUIREMENT}; {conv.name} has a {kh}×{kw} kernel, strides {attribute(conv, 'strides', [1, 1])}, dilations {attribute(conv, 'dilations', [1, 1])}")
    consumers = tensor_consumers(model)
    chain, after = [conv], consumers.get(conv.output[0], [])
    if len(after) == 1 and after[0].op_type == "Relu":
        chain.append(after[0])
        after = consumers.get(after[0].output[0], [])
    if len(after) != 1 or not _is_2x2_pool(after[0]):
        raise EdgecnnError(f"the s2d-stem pass needs {REQUIREMENT}; {conv.name} is not followed by one")
    chain.append(after[0])
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    if 0 in dims[1:]:
        raise EdgecnnError(f"the s2d-stem pass needs a fixed input size; the model's input is {dims[1:]} (0: not fixed)")
    crop = input_crop(model)
    if crop is not None:  # the conv reads the input's leading rows and columns
        ends = next(i for i in model.graph.initializer if i.name == crop.input[2])
        dims[2:] = [int(v) for v in numpy_helper.to_array(ends)]
        chain.insert(0, crop)
    auto_pad = attribute(conv, "auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):  # odd kernel, stride 1: the same on both sides
        top = bottom = (kh - 1) // 2
        left = right = (kw - 1) // 2
    elif auto_pad == "VALID":
        top = left = bottom = right = 0
    else:
        top, left, bottom, right = attribute(conv, "pads", [0, 0, 0, 0])
    height, width = dims[2] + top + bottom, dims[3] + left + right
    if height % 2 or width % 2:
        raise EdgecnnError(f"the s2d-stem pass needs {REQUIREMENT}; the padded input is {height}×{width}")
    return S2dStem(
        nodes=tuple(n.name for n in chain),
        output=chain[-1].output[0],
        weight=weight.name,
        bias=conv.input[2] if len(conv.input) > 2 and conv.input[2] else None,
        relu=len(chain) == 3,
        channels=dims[1],
        height=height,
        width=width,
        pads=(top, left, bottom, right),
        crop=tuple(crop.input[1:]) if crop is not None else (),
    )


def _is_2x2_pool(node: onnx.NodeProto) -> bool:
    return (
        node.op_type == "MaxPool"
        and len(node.output) == 1
        and attribute(node, "kernel_shape", []) == [2, 2]
        and attribute(node, "strides", [1, 1]) == [2, 2]
        and not any(attribute(node, "pads", [0, 0, 0, 0]))
        and attribute(node, "dilations", [1, 1]) == [1, 1]
        and attribute(node, "ceil_mode", 0) == 0
    )


def phase_weights(weight: np.ndarray) -> np.ndarray:
    """[M, C, k, k'] conv weights → [4M, 4C, (k+1)/2, (k'+1)/2]: output p·M + m is filter m at pool
    position p = 2a + b, input (2i + j)·C + c the space-to-depth channel of row offset i, column j."""
    m, c, kh, kw = weight.shape
    phases = np.zeros((4 * m, 4 * c, kh // 2 + 1, kw // 2 + 1), weight.dtype)
    for a in range(2):
        for b in range(2):
            rows = slice((2 * a + b) * m, (2 * a + b + 1) * m)
            for u in range(kh):
                for v in range(kw):
                    r, s = a + u, b + v
                    depth = ((r % 2) * 2 + s % 2) * c
                    phases[rows, depth : depth + c, r // 2, s // 2] = weight[:, :, u, v]
    return phases


def _space_to_depth_nhwc(source: str, target: str, height: int, width: int, channels: int, name: str) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    """[N, C, 2h, 2w] → [N, h, w, 4C] in SpaceToDepth's channel order, with the shapes it needs. One
    channel: a reshape and a 5-D transpose moving pairs; more: SpaceToDepth, then to NHWC (the 5-D
    transpose would move runs of 2C elements, which ORT does one by one: 6× slower for RGB)."""
    if channels > 1:
        return [
            helper.make_node("SpaceToDepth", [source], [f"{name}_xs"], blocksize=2, name=f"{name}_to_depth"),
            helper.make_node("Transpose", [f"{name}_xs"], [target], perm=[0, 2, 3, 1], name=f"{name}_to_nhwc"),
        ], {}
    shapes = {f"{name}_blocks": np.array([-1, height, 2, width, 2], np.int64), f"{name}_nhwc": np.array([-1, height, width, 4], np.int64)}
    return [
        helper.make_node("Reshape", [source, f"{name}_blocks"], [f"{name}_xb"], name=f"{name}_blocks"),
        helper.make_node("Transpose", [f"{name}_xb"], [f"{name}_xt"], perm=[0, 1, 3, 2, 4], name=f"{name}_to_depth"),
        helper.make_node("Reshape", [f"{name}_xt", f"{name}_nhwc"], [target], name=f"{name}_depth"),
    ], shapes


def _input_quantization(x: np.ndarray, qtype: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point of the model input over its calibration range, as MinMax calibration gives them."""
    qmin, qmax = get_qmin_qmax_for_qType(qtype)
    zero, scale = compute_scale_zp(np.minimum(x.min(), 0).astype(np.float32), np.maximum(x.max(), 0).astype(np.float32), qmin, qmax)
    return np.array(scale, np.float32), np.array(zero, np.uint8 if qtype == onnx.TensorProto.UINT8 else np.int8)


def _weight_quantization(
    weight: np.ndarray, bias: np.ndarray, in_scale: np.ndarray, per_channel: bool, reduce_range: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric int8 weights with their scale per output channel (one value repeated when per
    tensor), and the bias in int32 on the input scale × weight scale."""
    wmin, wmax = get_qmin_qmax_for_qType(onnx.TensorProto.INT8, reduce_range=reduce_range, symmetric=True)
    absmax = np.abs(weight).reshape(len(weight), -1).max(axis=1) if per_channel else np.full(len(weight), np.abs(weight).max())
    scale = np.where(absmax > 0, absmax / wmax, 1.0).astype(np.float32)
    quantized = np.clip(np.round(weight / scale[:, None, None, None]), wmin, wmax).astype(np.int8)
    return quantized, scale, np.round(bias / (in_scale * scale)).astype(np.int32)


def int8_s2d_stem(
    quantized: onnx.ModelProto, source: onnx.ModelProto, stem: S2dStem, x: np.ndarray, per_channel: bool, reduce_range: bool
) -> None:
    """Replace the float stem block of `quantized` and the quantize after it with the int8
    space-to-depth stem, its weights taken from the fp32 `source`.

    The input is quantized with its calibration range, weights symmetric int8 (per output channel
    or per tensor) and the bias int32, as onnxruntime.quantization does. The stem's output keeps
    the scale and zero point calibrated for it, so everything after it is unchanged.
    """
    arrays = {i.name: numpy_helper.to_array(i) for i in source.graph.initializer if i.name in (stem.weight, stem.bias)}
    weight = arrays[stem.weight]
    bias = arrays[stem.bias] if stem.bias else np.zeros(len(weight), np.float32)
    nodes = list(quantized.graph.node)
    readers = tensor_consumers(quantized).get(stem.output, [])
    if [n.op_type for n in readers] != ["QuantizeLinear"]:  # a float reader would lose its input
        raise EdgecnnError(f"the s2d-stem pass needs the stem's output read by one quantize; {stem.output} is read by {[n.op_type for n in readers]}")
    handover = readers[0]
    values = {i.name: numpy_helper.to_array(i) for i in quantized.graph.initializer if i.name in handover.input[1:3]}
    out_zero = values[handover.input[2]]
    if stem.relu and out_zero != np.iinfo(out_zero.dtype).min:  # saturation at the zero point is the ReLU
        raise EdgecnnError(f"the s2d-stem pass: the stem's output zero point {out_zero} does not make the ReLU exact")
    qtype = onnx.TensorProto.UINT8 if out_zero.dtype == np.uint8 else onnx.TensorProto.INT8
    in_scale, in_zero = _input_quantization(x, qtype)
    w_int, w_scale, b_int = _weight_quantization(weight, bias, in_scale, per_channel, reduce_range)
    m, c, h, w = len(weight), stem.channels, stem.height // 2, stem.width // 2
    kh, kw = weight.shape[2] // 2 + 1, weight.shape[3] // 2 + 1
    oh, ow = h - kh + 1, w - kw + 1
    name = "s2d_stem"
    top, left, bottom, right = stem.pads
    inits = {
        f"{name}_x_scale": in_scale,
        f"{name}_x_zero_point": in_zero,
        f"{name}_w": phase_weights(w_int),
        f"{name}_w_scale": np.tile(w_scale, 4) if per_channel else w_scale[:1],
        f"{name}_w_zero_point": np.zeros(4 * m if per_channel else 1, np.int8),
        f"{name}_b": np.tile(b_int, 4),
        f"{name}_phases_shape": np.array([-1, oh, 4 * ow, m], np.int64),
    }
    model_input = quantized.graph.input[0].name
    block = [helper.make_node("QuantizeLinear", [model_input, f"{name}_x_scale", f"{name}_x_zero_point"], [f"{name}_xq"], name=f"{name}_quantize")]
    if stem.crop:
        block.append(helper.make_node("Slice", [f"{name}_xq", *stem.crop], [f"{name}_xc"], name=f"{name}_crop"))
    if any(stem.pads):
        inits[f"{name}_pads"] = np.array([0, 0, top, left, 0, 0, bottom, right], np.int64)
        block.append(helper.make_node("Pad", [block[-1].output[0], f"{name}_pads", f"{name}_x_zero_point"], [f"{name}_xp"], name=f"{name}_pad"))
    to_depth, shapes = _space_to_depth_nhwc(block[-1].output[0], f"{name}_xd", h, w, c, name)
    inits.update(shapes)
    quantized.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    block += to_depth
    block += [
        helper.make_node(
            "QLinearConv",
            [f"{name}_xd", f"{name}_x_scale", f"{name}_x_zero_point", f"{name}_w", f"{name}_w_scale", f"{name}_w_zero_point", *handover.input[1:3], f"{name}_b"],
            [f"{name}_phases"],
            name=f"{name}_conv",
            domain="com.microsoft",
            channels_last=1,
            kernel_shape=[kh, kw],
        ),
        helper.make_node("Reshape", [f"{name}_phases", f"{name}_phases_shape"], [f"{name}_phase_columns"], name=f"{name}_phases"),
        helper.make_node("NhwcMaxPool", [f"{name}_phase_columns"], [f"{name}_pooled"], name=f"{name}_pool", domain="com.microsoft", kernel_shape=[1, 4], strides=[1, 4]),
        helper.make_node("Transpose", [f"{name}_pooled"], [handover.output[0]], perm=[0, 3, 1, 2], name=f"{name}_to_nchw"),
    ]
    batch = quantized.graph.input[0].type.tensor_type.shape.dim[0]
    batch = batch.dim_param or batch.dim_value or None
    quantized.graph.value_info.extend(  # the contrib ops' shapes, which onnx's shape inference cannot know
        helper.make_tensor_value_info(tensor, qtype, [batch, *shape])
        for tensor, shape in ((f"{name}_phases", [oh, ow, 4 * m]), (f"{name}_pooled", [oh, ow, m]))
    )
    replaced = set(stem.nodes) | {handover.name}
    kept = [n for n in nodes if n.name not in replaced]
    del quantized.graph.node[:]
    quantized.graph.node.extend(block + kept)
    used = {i for n in quantized.graph.node for i in n.input}
    kept_initializers = [i for i in quantized.graph.initializer if i.name in used]  # the float conv's weight and bias go
    del quantized.graph.initializer[:]
    quantized.graph.initializer.extend(kept_initializers)
    if not any(o.domain == "com.microsoft" for o in quantized.opset_import):
        quantized.opset_import.append(helper.make_opsetid("com.microsoft", 1))
