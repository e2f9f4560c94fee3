"""int8 through onnxruntime.quantization: static QDQ/QOperator or dynamic, metadata carried over."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgecnn.data import calibration_samples, resolve_split
from edgecnn.errors import EdgecnnError
from edgecnn.files import atomic_path, refuse_overwrite
from edgecnn.layout import apply_layouts, attribute, fold_quantized_pad, input_crop, tensor_consumers
from edgecnn.runtime import META_QUANTIZATION, META_SESSION, Session, load_onnx, read_metadata
from edgecnn.s2dstem import find_s2d_stem, int8_s2d_stem

FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
TYPES = {
    "u8s8": (QuantType.QUInt8, QuantType.QInt8),
    "s8s8": (QuantType.QInt8, QuantType.QInt8),
    "u8u8": (QuantType.QUInt8, QuantType.QUInt8),
}
QDQ_PROPAGATION = "QDQPropagationTransformer"
# ops that follow a conv inside one block; a float stem keeps them in float with their conv
_STEM_FOLLOWERS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "MaxPool", "AveragePool", "BatchNormalization"}


@dataclass(frozen=True)
class QuantConfig:
    """One int8 configuration; the defaults are ONNX Runtime's recommended CNN settings."""

    format: str = "qdq"
    per_channel: bool = True
    method: str = "minmax"
    types: str = "u8s8"  # activations uint8, weights int8: the fast pair on x86 VNNI CPUs
    reduce_range: bool = False
    dynamic: bool = False
    exclude: tuple[str, ...] = field(default_factory=tuple)
    float_stem: bool = False  # keep convs on 1-4 input channels (and their block) in float: slower in int8
    keep_float_pool: bool = False  # stop ORT moving the stem's quantize step above its pooling; hand over in NHWC
    pad_input: bool = False  # zero-pad an RGB input to 4 channels: ORT's symmetric int8 kernel then runs the first conv
    s2d_stem: bool = False  # the first conv + 2×2 pool in int8 as a space-to-depth conv over the pool's phases
    float_head: bool = False  # the dense layers after the last conv in float: a small int8 Gemm costs more than it saves

    def label(self) -> str:
        """A short name for tables: qdq/u8s8/pc/minmax+stem…"""
        if self.dynamic:
            return f"dynamic/{self.types}" + ("/rr" if self.reduce_range else "")
        parts = [self.format, self.types, "pc" if self.per_channel else "pt", self.method]
        parts += ["rr"] if self.reduce_range else []
        label = "/".join(parts)
        label += "+stem" if self.float_stem else ""
        label += "+pool" if self.keep_float_pool else ""
        label += "+pad4" if self.pad_input else ""
        label += "+s2d" if self.s2d_stem else ""
        label += "+fhead" if self.float_head else ""
        return label + (f"+{len(self.exclude)}float" if self.exclude else "")

    def check(self) -> None:
        for value, accepted, what in (
            (self.format, FORMATS, "format"),
            (self.method, METHODS, "method"),
            (self.types, TYPES, "types"),
        ):
            if value not in accepted:
                raise EdgecnnError(f"unknown {what} {value!r} (accepted: {', '.join(accepted)})")
        if self.keep_float_pool and not self.float_stem:
            raise EdgecnnError("--keep-float-pool (keep_float_pool) applies to a float stem; add --float-stem (float_stem=True)")
        if self.s2d_stem and (self.float_stem or self.pad_input or self.dynamic or self.types == "u8u8"):
            raise EdgecnnError("--s2d-stem (s2d_stem) quantizes the stem itself: static u8s8 or s8s8 only, without --float-stem, --pad-input or --dynamic")


def int8_path(model: Path) -> Path:
    """model.fp32.onnx → model.int8.onnx; other.onnx → other.int8.onnx."""
    name = Path(model).name
    stem = name.removesuffix(".onnx").removesuffix(".fp32")
    return Path(model).with_name(f"{stem}.int8.onnx")


class ArrayReader(CalibrationDataReader):
    """Feeds an array to onnxruntime's calibrators in fixed-size batches."""

    def __init__(self, input_name: str, samples: np.ndarray, batch_size: int = 32):
        self._batches = iter(
            [{input_name: samples[i : i + batch_size]} for i in range(0, len(samples), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_model(
    model: Path,
    config: QuantConfig = QuantConfig(),
    calib: Path | None = None,
    samples: int = 256,
    out: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Quantize an fp32 ONNX model to int8; calibration samples come from the training split."""
    config.check()
    model = Path(model)
    source = load_onnx(model)
    props = read_metadata(source)
    out = Path(out) if out else int8_path(model)
    if out.resolve() == model.resolve():
        raise EdgecnnError(f"output {out} would overwrite the input model; pass another --out")
    refuse_overwrite(out, force)
    session = Session(model)  # proves the model loads and gives its input name and shape
    calib_source = None
    if not config.dynamic:
        split, calib_source = resolve_split(calib, model, "train")
        x = calibration_samples(split, samples)
        session.check_input(x)

    with tempfile.TemporaryDirectory(prefix="edgecnn-quant-") as tmp:
        prepared = prepare(model, Path(tmp) / "prepared.onnx")
        with atomic_path(out, force=True) as target:
            quantize_prepared(prepared, target, config, props, None if config.dynamic else x, calib_source)
    return {
        "model": str(out),
        "source": str(model),
        "config": asdict(config),
        "calibration": calib_source,
        "size_bytes": out.stat().st_size,
        "source_size_bytes": model.stat().st_size,
    }


def prepare(model: Path, out: Path) -> Path:
    """ONNX Runtime's pre-processing (shape inference, folding) that quantization expects first."""
    quant_pre_process(str(model), str(out), skip_symbolic_shape=True)
    return out


def stem_nodes(model: onnx.ModelProto) -> list[str]:
    """Convs reading 1-4 channels and the activation/pooling nodes that follow each one.

    A grouped conv reads its weight's input channels times its groups: a depthwise conv reads
    many channels and runs well in int8, so it is no stem.
    """
    weights = {i.name: i.dims for i in model.graph.initializer}
    consumers = tensor_consumers(model)
    crop = input_crop(model)
    names = []
    for node in model.graph.node:
        dims = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        group = attribute(node, "group", 1)
        if dims is None or len(dims) < 2 or dims[1] * group > 4:
            continue
        names += [crop.name] if crop is not None and node.input[0] == crop.output[0] else []  # the crop stays float with it
        names.append(node.name)
        current = node
        while len(nxt := consumers.get(current.output[0], [])) == 1 and nxt[0].op_type in _STEM_FOLLOWERS:
            current = nxt[0]
            names.append(current.name)
    return names


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """The Gemm and MatMul nodes after the last conv: a CNN's dense head (none without a conv)."""
    nodes = list(model.graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    return [n.name for n in nodes[convs[-1] + 1 :] if n.op_type in ("Gemm", "MatMul")] if convs else []


def config_float_nodes(model: onnx.ModelProto, config: QuantConfig) -> list[str]:
    """The nodes a config's own switches keep in float (its stem, its head), before any named exclusions."""
    head = head_nodes(model) if config.float_head else []
    if config.float_head and not head:
        raise EdgecnnError("--float-head keeps the dense layers after the last conv in float; the model has no Gemm or MatMul after a conv")
    return [*(stem_nodes(model) if config.float_stem else []), *head]


def quantize_prepared(
    prepared: Path,
    target: Path,
    config: QuantConfig,
    props: dict[str, str],
    x: np.ndarray | None,
    calib_source: str | None,
) -> None:
    """Quantize a pre-processed model into `target` and write edgecnn's metadata into it."""
    model = onnx.load(str(prepared))
    exclude = list(dict.fromkeys([*config.exclude, *config_float_nodes(model, config)]))
    exclude += apply_layouts(model, exclude, nhwc=config.keep_float_pool or config.s2d_stem, pad_input=config.pad_input)
    if config.keep_float_pool or config.pad_input or config.s2d_stem:
        prepared = prepared.with_name(f"{prepared.stem}.rewritten.onnx")
        onnx.save(model, str(prepared))
    stem = find_s2d_stem(model) if config.s2d_stem else None
    if stem and set(stem.nodes) & set(exclude):
        raise EdgecnnError(f"--s2d-stem quantizes {', '.join(stem.nodes)}; they cannot also be excluded")
    input_name = model.graph.input[0].name
    with contextlib.redirect_stdout(io.StringIO()):  # entropy/percentile calibrators print progress
        _run_quantizer(prepared, target, config, input_name, x, exclude + list(stem.nodes if stem else ()))
    quantized = onnx.load(str(target))
    if config.pad_input:
        fold_quantized_pad(quantized)
    if stem:
        int8_s2d_stem(quantized, model, stem, x, config.per_channel, config.reduce_range)
    record = {
        **asdict(config),
        "excluded_nodes": exclude,
        "calibration": calib_source,
        "samples": 0 if x is None else len(x),
    }
    session = {"disabled_optimizers": [QDQ_PROPAGATION]} if config.keep_float_pool else None
    _carry_metadata(quantized, props, record, session)
    onnx.save(quantized, str(target))


def _run_quantizer(
    prepared: Path, target: Path, config: QuantConfig, input_name: str, x: np.ndarray | None, exclude: list[str]
) -> None:
    activation, weight = TYPES[config.types]
    if config.dynamic:
        quantize_dynamic(
            str(prepared),
            str(target),
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            weight_type=weight,
            nodes_to_exclude=exclude,
        )
        return
    quantize_static(
        str(prepared),
        str(target),
        ArrayReader(input_name, x),
        quant_format=FORMATS[config.format],
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        activation_type=activation,
        weight_type=weight,
        calibrate_method=METHODS[config.method],
        nodes_to_exclude=exclude,
    )


def _carry_metadata(
    model: onnx.ModelProto, props: dict[str, str], record: dict[str, Any], session: dict[str, Any] | None
) -> None:
    """The fp32 model's metadata, the quantization record, and any session option speed depends on."""
    props = {k: v for k, v in props.items() if k not in (META_QUANTIZATION, META_SESSION)}
    props[META_QUANTIZATION] = json.dumps(record)
    if session:
        props[META_SESSION] = json.dumps(session)
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
