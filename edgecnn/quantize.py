"""int8 through onnxruntime.quantization: static QDQ/QOperator or dynamic, metadata carried over."""

from __future__ import annotations

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
from edgecnn.runtime import META_QUANTIZATION, Session, load_onnx, read_metadata

FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
TYPES = {"u8s8": (QuantType.QUInt8, QuantType.QInt8), "s8s8": (QuantType.QInt8, QuantType.QInt8)}


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

    def check(self) -> None:
        for value, accepted, what in (
            (self.format, FORMATS, "format"),
            (self.method, METHODS, "method"),
            (self.types, TYPES, "types"),
        ):
            if value not in accepted:
                raise EdgecnnError(f"unknown {what} {value!r} (accepted: {', '.join(accepted)})")


def int8_path(model: Path) -> Path:
    """model.fp32.onnx → model.int8.onnx; other.onnx → other.int8.onnx."""
    name = Path(model).name
    stem = name.removesuffix(".onnx").removesuffix(".fp32")
    return Path(model).with_name(f"{stem}.int8.onnx")


class _ArrayReader(CalibrationDataReader):
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
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        with atomic_path(out, force=True) as target:
            _run_quantizer(prepared, target, config, session.input_name, None if config.dynamic else x)
            quantized = onnx.load(str(target))
            record = {**asdict(config), "calibration": calib_source, "samples": 0 if config.dynamic else len(x)}
            _carry_metadata(quantized, props, record)
            onnx.save(quantized, str(target))
    return {
        "model": str(out),
        "source": str(model),
        "config": asdict(config),
        "calibration": calib_source,
        "size_bytes": out.stat().st_size,
        "source_size_bytes": model.stat().st_size,
    }


def _run_quantizer(prepared: Path, target: Path, config: QuantConfig, input_name: str, x: np.ndarray | None) -> None:
    activation, weight = TYPES[config.types]
    if config.dynamic:
        quantize_dynamic(
            str(prepared),
            str(target),
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            weight_type=weight,
            nodes_to_exclude=list(config.exclude),
        )
        return
    quantize_static(
        str(prepared),
        str(target),
        _ArrayReader(input_name, x),
        quant_format=FORMATS[config.format],
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        activation_type=activation,
        weight_type=weight,
        calibrate_method=METHODS[config.method],
        nodes_to_exclude=list(config.exclude),
    )


def _carry_metadata(model: onnx.ModelProto, props: dict[str, str], record: dict[str, Any]) -> None:
    del model.metadata_props[:]
    for key, value in {**props, META_QUANTIZATION: json.dumps(record)}.items():
        model.metadata_props.add(key=key, value=value)
