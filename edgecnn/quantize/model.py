"""int8 through onnxruntime.quantization: static QDQ/QOperator or dynamic, with named graph passes,
the model card carried over and the quantization recorded in it."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import tempfile
from dataclasses import dataclass
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
from onnxruntime.quantization.onnx_model import ONNXModel
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgecnn.data import calibration_samples, resolve_split
from edgecnn.errors import EdgecnnError
from edgecnn.files import atomic_path, read_json, refuse_overwrite
from edgecnn.quantize.passes import PASSES, check_passes, float_nodes, refuse_misfits, rewrite_float, session_needs, valid_for
from edgecnn.quantize.rounding import ROUNDINGS, round_weights
from edgecnn.run import Run, holds_run, int8_sibling
from edgecnn.runtime.card import ModelCard, Quantization, read_card, write_card
from edgecnn.runtime.session import Session, load_onnx
from edgecnn.runtime.targets import TARGETS

FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
TYPES = {
    "u8s8": (QuantType.QUInt8, QuantType.QInt8),
    "s8s8": (QuantType.QInt8, QuantType.QInt8),
    "u8u8": (QuantType.QUInt8, QuantType.QUInt8),
}


@dataclass(frozen=True)
class QuantConfig:
    """One int8 configuration: quantizer settings, graph passes and nodes left in float.

    The defaults are ONNX Runtime's recommended CNN settings."""

    format: str = "qdq"
    per_channel: bool = True
    method: str = "minmax"
    types: str = "u8s8"  # activations uint8, weights int8: the fast pair on x86 VNNI CPUs
    reduce_range: bool = False
    dynamic: bool = False
    symmetric: bool = False  # activations with zero point 0: what TensorRT's int8 reads from a QDQ model
    passes: tuple[str, ...] = ()  # names from edgecnn.quantize.passes.PASSES
    exclude: tuple[str, ...] = ()  # nodes left in float by name
    rounding: str | None = None  # gptq or nearest; None: gptq where there is calibration data to round on (static QDQ)

    def __post_init__(self) -> None:
        for value, accepted, what in ((self.format, FORMATS, "format"), (self.method, METHODS, "method"), (self.types, TYPES, "types")):
            if value not in accepted:
                raise EdgecnnError(f"unknown {what} {value!r} (accepted: {', '.join(accepted)})")
        object.__setattr__(self, "passes", check_passes(tuple(self.passes), self.types, self.dynamic))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        roundable = self.format == "qdq" and not self.dynamic
        if self.rounding is None:
            object.__setattr__(self, "rounding", "gptq" if roundable else "nearest")
        elif self.rounding not in ROUNDINGS:
            raise EdgecnnError(f"unknown rounding {self.rounding!r} (accepted: {', '.join(ROUNDINGS)})")
        elif self.rounding == "gptq" and not roundable:
            raise EdgecnnError("--rounding gptq needs static QDQ quantization (calibration data and --format qdq); use --rounding nearest")

    def label(self) -> str:
        """A short name for tables: qdq/u8s8/pc/minmax+s2d-stem…"""
        if self.dynamic:
            label = f"dynamic/{self.types}" + ("/rr" if self.reduce_range else "")
        else:
            label = "/".join([self.format, self.types, "pc" if self.per_channel else "pt", self.method,
                              *(["rr"] if self.reduce_range else []), *(["sym"] if self.symmetric else []),
                              *(["gptq"] if self.rounding == "gptq" else [])])
        label += "".join(f"+{name}" for name in self.passes)
        return label + (f"+{len(self.exclude)}float" if self.exclude else "")

    @classmethod
    def from_record(cls, record: Quantization, exclude: tuple[str, ...] = ()) -> QuantConfig:
        """The configuration a model card's quantization record was made with (its named exclusions given)."""
        return cls(record.format, record.per_channel, record.method, record.types, record.reduce_range, record.dynamic, record.symmetric, record.passes, exclude, record.rounding)


class ArrayReader(CalibrationDataReader):
    """Feeds an array to onnxruntime's calibrators in batches of one size: its histogram calibrators
    (percentile, entropy) stack the batches and fail on a shorter last one.

    It also takes a range of batches (`set_range`), so the quantizer can collect one batch at a time
    (CalibStridedMinMax): the calibrators keep every activation of what they collect at once, 13 GB
    for Lite0's 192 photo views in one go."""

    def __init__(self, input_name: str, samples: np.ndarray, batch_size: int = 32):
        size = max(d for d in range(1, min(batch_size, len(samples)) + 1) if len(samples) % d == 0)  # divides the count
        self._all = [{input_name: samples[i : i + size]} for i in range(0, len(samples), size)]
        self._batches = iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._batches = iter(self._all[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


@dataclass(frozen=True)
class Quantized:
    """What `quantize_model` wrote."""

    model: Path
    source: Path
    config: QuantConfig
    calibration: str | None
    size_bytes: int
    source_size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "model": str(self.model), "source": str(self.source), "label": self.config.label()}


def recipe_method(model: Path) -> str:
    """The calibration method the recipe of a model's run starts int8 from; MinMax outside a run."""
    run = Run.of(Path(model))
    recorded = read_json(run.recipe_json).get("int8_method") if run is not None and run.recipe_json.is_file() else None
    return recorded or "minmax"


@holds_run(lambda model, out, **_: Run.of(Path(out) if out else int8_sibling(model)))
def quantize_model(
    model: Path,
    config: QuantConfig | None = None,
    calib: Path | None = None,
    samples: int = 256,
    out: Path | None = None,
    force: bool = False,
) -> Quantized:
    """Quantize an fp32 ONNX model to int8; calibration samples come from the training split. Without a
    config: edgecnn's defaults with the calibration method of the model's recipe."""
    model = Path(model)
    config = config or QuantConfig(method=recipe_method(model))
    source = load_onnx(model)
    card = read_card(source)
    if card.quantization is not None:
        raise EdgecnnError(f"{model} is already int8 (its model card records a quantization); quantize its fp32 source")
    out = Path(out) if out else int8_sibling(model)
    if out.resolve() == model.resolve():
        raise EdgecnnError(f"output {out} would overwrite the input model; pass another --out")
    refuse_overwrite(out, force)
    session = Session(model)  # proves the model loads and gives its input name and shape
    calib_source, x = None, None
    if not config.dynamic:
        split, calib_source = resolve_split(calib, model, "train")
        x = calibration_samples(split, samples)
        session.check_input(x)
    with tempfile.TemporaryDirectory(prefix="edgecnn-quant-") as tmp:
        prepared = prepare(model, Path(tmp) / "prepared.onnx")
        prepared_model = onnx.load(str(prepared))
        refuse_misfits(prepared_model, config.passes)
        refuse_unknown_nodes(prepared_model, config.exclude)
        with atomic_path(out, force=True) as target:
            quantize_prepared(prepared, target, config, card, x, calib_source)
    return Quantized(out, model, config, calib_source, out.stat().st_size, model.stat().st_size)


def refuse_unknown_nodes(model: onnx.ModelProto, names: tuple[str, ...]) -> None:
    """One line when --exclude names a node the model does not have."""
    nodes = [n.name for n in model.graph.node]
    unknown = [name for name in names if name not in nodes]
    if unknown:
        shown = ", ".join(nodes[:12]) + (f", … ({len(nodes)} in all)" if len(nodes) > 12 else "")
        raise EdgecnnError(f"--exclude names no node of the model: {', '.join(unknown)} (its nodes: {shown})")


def prepare(model: Path, out: Path) -> Path:
    """ONNX Runtime's pre-processing (shape inference, folding) that quantization expects first.

    Its optimizer logs a failure with a traceback and goes on unoptimized; here that is one line."""
    failures = _Records()
    logger = logging.getLogger("onnxruntime.quantization.shape_inference")
    logger.addHandler(failures)
    logger.propagate = False
    try:
        quant_pre_process(str(model), str(out), skip_symbolic_shape=True)
    finally:
        logger.removeHandler(failures)
        logger.propagate = True
    if failures.messages:
        cause = next((line for line in reversed(failures.messages[-1].splitlines()) if line.strip()), "")
        raise EdgecnnError(f"onnxruntime's graph optimization failed on {model} before quantization: {cause}")
    return out


class _Records(logging.Handler):
    """Keeps the messages logged to it."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def quantize_prepared(
    prepared: Path,
    target: Path,
    config: QuantConfig,
    card: ModelCard,
    x: np.ndarray | None,
    calib_source: str | None,
    kept_for: str | None = None,
) -> None:
    """Quantize a pre-processed model into `target` with the config's passes; the card records how,
    the targets it is valid for, and the one a search timed it on (`kept_for`)."""
    model = onnx.load(str(prepared))
    in_float = list(dict.fromkeys([*config.exclude, *float_nodes(model, config.passes)]))
    in_float += rewrite_float(model, config.passes, in_float)
    if config.passes:
        prepared = prepared.with_name(f"{prepared.stem}.rewritten.onnx")
        onnx.save(model, str(prepared))
    replaced = [n for name in config.passes for n in PASSES[name].replaced_nodes(model)]
    if set(replaced) & set(in_float):
        raise EdgecnnError(f"the passes rewrite {', '.join(replaced)} in int8; they cannot also be left in float")
    with contextlib.redirect_stdout(io.StringIO()):  # entropy/percentile calibrators print progress
        _run_quantizer(prepared, target, config, model.graph.input[0].name, x, in_float + replaced)
    quantized = onnx.load(str(target))
    if config.rounding == "gptq":
        round_weights(quantized, model, x, config.reduce_range)
    for name in config.passes:
        PASSES[name].after(quantized, model, x, config.per_channel, config.reduce_range)
    float_outputs(quantized)
    record = Quantization(
        format=config.format, per_channel=config.per_channel, method=config.method, types=config.types,
        reduce_range=config.reduce_range, dynamic=config.dynamic, symmetric=config.symmetric, passes=config.passes, excluded_nodes=tuple(in_float), rounding=config.rounding,
        calibration=calib_source, samples=0 if x is None else len(x),
        targets=tuple(t for t in TARGETS if all(valid_for(name, TARGETS[t]) for name in config.passes)), kept_for=kept_for,
    )
    write_card(quantized, dataclasses.replace(card, quantization=record, session_options=session_needs(config.passes)))
    onnx.save(quantized, str(target))


def float_outputs(model: onnx.ModelProto) -> None:
    """Drop the QuantizeLinear/DequantizeLinear pair in front of each graph output.

    A model hands its caller floats either way: rounding its outputs to 256 steps only costs
    accuracy, and decides near-ties at random (Lite0's logits fell on steps of 0.08). ONNX Runtime then
    runs the last layer as an int8 kernel with a float output."""
    graph = ONNXModel(model)
    producers = graph.output_name_to_node()
    consumers = graph.input_name_to_nodes()
    for output in model.graph.output:
        dequantize = producers.get(output.name)
        if dequantize is None or dequantize.op_type != "DequantizeLinear" or output.name in consumers:
            continue
        quantize = producers.get(dequantize.input[0])
        if quantize is None or quantize.op_type != "QuantizeLinear" or len(consumers[quantize.output[0]]) != 1:
            continue
        source = producers.get(quantize.input[0])
        if source is None or len(consumers[quantize.input[0]]) != 1:
            continue
        graph.replace_node_output(source, quantize.input[0], output.name)
        graph.remove_nodes([quantize, dequantize])
    graph.remove_unused_constant()


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
        extra_options={"ActivationSymmetric": config.symmetric, "CalibStridedMinMax": 1},  # one batch collected at a time
    )
