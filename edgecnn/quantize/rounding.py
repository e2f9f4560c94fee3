"""Weight rounding that keeps each layer's outputs, not each weight, closest to fp32.

Rounding every int8 weight to its nearest level is optimal weight by weight, but a layer's output
error is the sum of its weights' errors times its inputs, and those add up. GPTQ (Frantar et al.,
2022) rounds one input column at a time and moves the error it made onto the columns not yet
rounded, weighted by the inputs' second moments H = Σ x xᵀ on the calibration data. The
quantizer's scales and zero points stay as they are, so the graph, its size and its speed do not
change: only which integer each weight becomes. On EfficientNet-Lite0 it cuts the softmax KL
divergence to fp32 about fourfold (benchmarks/lite0_photos.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from numpy.lib.stride_tricks import sliding_window_view
from onnx import helper, numpy_helper
from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

from edgecnn.errors import EdgecnnError

ROUNDINGS = ("gptq", "nearest")
DAMPING = 0.01  # of H's mean diagonal, added to its diagonal: GPTQ's default, keeps H invertible
BLOCK = 128  # columns rounded before their error reaches the rest in one matrix product
BATCH = 16  # calibration samples per pass through the model
ENOUGH_SAMPLES = 32  # a layer's second moments stop summing past this many samples…
POSITIONS_PER_INPUT = 64  # …once they also hold this many positions per input column


@dataclass
class Layer:
    """One Conv or Gemm whose int8 weight is re-rounded: where its input comes from and how it is quantized."""

    node: onnx.NodeProto
    input_name: str  # the layer's input in the fp32 model
    weight: np.ndarray  # fp32, rows = output channels (Gemm without transB transposed)
    quantized: onnx.TensorProto  # the int8 initializer the DequantizeLinear reads
    scale: np.ndarray  # per row
    zero_point: np.ndarray  # per row
    qmin: int
    qmax: int
    groups: int = 1  # Conv groups: each group has its own inputs and H

    @property
    def columns(self) -> int:
        """Inputs per output: the size of the layer's H."""
        return int(np.prod(self.weight.shape[1:]))

    def patches(self, x: np.ndarray) -> np.ndarray:
        """The layer's input as (groups, positions, inputs per output): im2col for a Conv of any rank."""
        if self.node.op_type == "Gemm":
            return x.reshape(1, len(x), -1)
        attrs = {a.name: helper.get_attribute_value(a) for a in self.node.attribute}
        kernel = self.weight.shape[2:]
        rank = len(kernel)
        dilations, strides = attrs.get("dilations", [1] * rank), attrs.get("strides", [1] * rank)
        begin, end = _pads(attrs, x.shape[2:], kernel, strides, dilations)
        x = np.pad(x, ((0, 0), (0, 0), *zip(begin, end)))
        spans = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
        axes = tuple(range(2, 2 + rank))
        windows = sliding_window_view(x, spans, axis=axes)
        windows = windows[(slice(None), slice(None), *(slice(None, None, s) for s in strides), *(slice(None, None, d) for d in dilations))]
        n, c, outputs = windows.shape[0], windows.shape[1], windows.shape[2 : 2 + rank]
        per_group, taps, positions = c // self.groups, int(np.prod(kernel)), int(np.prod(outputs))
        windows = windows.reshape(n, self.groups, per_group, positions, taps)
        return windows.transpose(1, 0, 3, 2, 4).reshape(self.groups, n * positions, per_group * taps)


def _pads(attrs: dict, size: tuple[int, ...], kernel: tuple[int, ...], strides: list[int], dilations: list[int]) -> tuple[list[int], list[int]]:
    """A Conv's padding before and after each spatial axis, from `pads` or `auto_pad`."""
    rank = len(kernel)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", "VALID"):
        pads = list(attrs.get("pads", [0] * 2 * rank)) if auto == "NOTSET" else [0] * 2 * rank
        return pads[:rank], pads[rank:]
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else large)
        end.append(large if auto == "SAME_UPPER" else small)
    return begin, end


def round_weights(quantized: onnx.ModelProto, source: onnx.ModelProto, x: np.ndarray, reduce_range: bool = False) -> int:
    """Re-round the int8 weights of every quantized Conv and Gemm in `quantized` (in place) to keep
    its outputs on `x` closest to `source`'s, the fp32 model it was quantized from; the number of layers.

    A layer with fewer calibration positions than inputs per output (a wide dense layer on a few
    samples) keeps nearest rounding, as does a layer a graph pass quantizes itself (the s2d stem)."""
    layers = _layers(quantized, source, reduce_range)
    second_moments = _second_moments(source, layers, x) if layers else []
    rounded = 0
    for layer, h in zip(layers, second_moments):
        if h is None:
            continue  # fewer calibration positions than inputs: the rounding would fit noise
        rounded += 1
        rows = layer.weight.reshape(len(layer.weight), -1).astype(np.float64)
        order = np.argsort(-np.einsum("gii->i", h), kind="stable")  # the inputs with most energy first (GPTQ's act-order)
        w = rows.reshape(layer.groups, -1, rows.shape[1])[:, :, order]
        q = np.empty_like(rows)
        q[:, order] = _gptq(w, h[:, order][:, :, order], layer)
        dtype = helper.tensor_dtype_to_np_dtype(layer.quantized.data_type)
        layer.quantized.CopyFrom(numpy_helper.from_array(q.reshape(layer.weight.shape).astype(dtype), layer.quantized.name))
    return rounded


def _layers(quantized: onnx.ModelProto, source: onnx.ModelProto, reduce_range: bool) -> list[Layer]:
    """The Conv and Gemm nodes whose weight reaches them through one DequantizeLinear of an 8-bit initializer."""
    initializers = {t.name: t for t in quantized.graph.initializer}
    source_nodes = {n.name: n for n in source.graph.node if n.name}
    source_weights = {t.name: t for t in source.graph.initializer}
    dequantized = {n.output[0]: n for n in quantized.graph.node if n.op_type == "DequantizeLinear"}
    readers: dict[str, int] = {}
    for n in quantized.graph.node:
        for name in n.input:
            readers[name] = readers.get(name, 0) + 1
    layers = []
    for node in quantized.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 or readers.get(node.input[1]) != 1:
            continue
        dq, original = dequantized.get(node.input[1]), source_nodes.get(node.name)
        if dq is None or original is None or original.op_type != node.op_type or original.input[1] not in source_weights:
            continue
        if dq.input[0] not in initializers or any(name not in initializers for name in dq.input[1:]):
            continue
        q = initializers[dq.input[0]]
        if q.data_type not in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = numpy_helper.to_array(source_weights[original.input[1]]).astype(np.float32)
        if node.op_type == "Gemm" and not attrs.get("transB", 0):
            continue  # per-channel scales run along the weight's columns there; nearest rounding stays
        scale = numpy_helper.to_array(initializers[dq.input[1]]).astype(np.float64)
        zero_point = numpy_helper.to_array(initializers[dq.input[2]]).astype(np.float64) if len(dq.input) > 2 else np.zeros_like(scale)
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        if scale.size > 1 and (axis != 0 or scale.size != weight.shape[0]):
            continue
        symmetric = q.data_type == onnx.TensorProto.INT8 and not zero_point.any()
        qmin, qmax = (int(v) for v in get_qmin_qmax_for_qType(q.data_type, reduce_range=reduce_range, symmetric=symmetric))
        layers.append(Layer(
            node=node, input_name=original.input[0], weight=weight, quantized=q,
            scale=np.broadcast_to(scale.reshape(-1), weight.shape[:1]).copy(),
            zero_point=np.broadcast_to(zero_point.reshape(-1), weight.shape[:1]).copy(),
            qmin=qmin, qmax=qmax, groups=int(attrs.get("group", 1)) if node.op_type == "Conv" else 1,
        ))
    return layers


def _second_moments(source: onnx.ModelProto, layers: list[Layer], x: np.ndarray) -> list[np.ndarray | None]:
    """Σ patches patchesᵀ per layer and group over `x`, the inputs as the fp32 model computes them; None for a
    layer whose inputs outnumber all the positions `x` holds (H would be rank-deficient).

    Batches interleave the samples, so each spans the whole set; a layer stops summing once it has
    ENOUGH_SAMPLES samples and POSITIONS_PER_INPUT positions per input (early layers, many positions each)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(source)
    input_name = source.graph.input[0].name
    names = [n for n in dict.fromkeys(layer.input_name for layer in layers) if n != input_name]
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names if n not in known)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    sums, positions, samples = [0.0] * len(layers), [0] * len(layers), [0] * len(layers)
    stride = -(-len(x) // BATCH)
    for offset in range(stride):
        open_layers = [i for i, layer in enumerate(layers) if samples[i] < ENOUGH_SAMPLES or positions[i] < POSITIONS_PER_INPUT * layer.columns]
        if not open_layers:
            break
        batch = x[offset::stride]
        values = dict(zip(names, session.run(names, {input_name: batch}))) if names else {}
        values[input_name] = batch
        for i in open_layers:
            p = layers[i].patches(values[layers[i].input_name].astype(np.float32, copy=False))
            if p.shape[1] * len(x) < layers[i].columns * len(batch):
                samples[i], positions[i] = len(x), POSITIONS_PER_INPUT * layers[i].columns  # never enough positions: left out
                sums[i] = None
                continue
            sums[i] = sums[i] + np.matmul(p.transpose(0, 2, 1), p).astype(np.float64)
            positions[i] += p.shape[1]
            samples[i] += len(batch)
    return sums


def _gptq(w: np.ndarray, h: np.ndarray, layer: Layer) -> np.ndarray:
    """GPTQ with fixed scales: w (groups, rows, columns), h (groups, columns, columns); the integers, (rows·groups, columns)."""
    groups, rows, columns = w.shape
    w = w.copy()
    scale = layer.scale.reshape(groups, rows)
    zero = layer.zero_point.reshape(groups, rows)
    h = h.copy()
    diagonal = np.einsum("gii->gi", h)
    dead = diagonal == 0  # inputs always zero on the calibration data: nothing to trade, keep nearest rounding
    idx = np.arange(columns)
    h[:, idx, idx] += DAMPING * diagonal.mean(axis=1, keepdims=True) + dead
    try:
        upper = np.linalg.cholesky(np.linalg.inv(h)).transpose(0, 2, 1)  # H⁻¹ = UᵀU
    except np.linalg.LinAlgError as e:
        raise EdgecnnError(f"GPTQ rounding failed on {layer.node.name or layer.node.op_type}: its inputs' second moments are singular ({e}); quantize with --rounding nearest") from e
    q = np.empty_like(w)
    for start in range(0, columns, BLOCK):
        stop = min(start + BLOCK, columns)
        block = w[:, :, start:stop].copy()
        errors = np.empty_like(block)
        for j in range(stop - start):
            level = np.clip(np.round(block[:, :, j] / scale) + zero, layer.qmin, layer.qmax)
            q[:, :, start + j] = level
            error = (block[:, :, j] - (level - zero) * scale) / upper[:, start + j, start + j][:, None]
            block[:, :, j:] -= error[:, :, None] * upper[:, None, start + j, start + j : stop]
            errors[:, :, j] = error
        w[:, :, stop:] -= errors @ upper[:, start:stop, stop:]
    return q.reshape(groups * rows, columns)
