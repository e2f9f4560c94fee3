"""The int8 model a user who picks OpenVINO makes: NNCF's post-training quantization of the same
ONNX file, its defaults (symmetric weights and activations, fast bias correction), calibrated on the
same samples edgecnn calibrates on. A reference for the benchmarks, not part of edgecnn."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx

from edgecnn.runtime.card import read_card, write_card

NNCF = importlib.util.find_spec("nncf") is not None  # part of the dev extra on x86-64


def nncf_int8(fp32: Path, x: np.ndarray, out: Path) -> Path:
    """NNCF's int8 QDQ of `fp32`, calibrated on every sample of `x`, with the fp32 model card copied on."""
    import nncf

    model = onnx.load(str(fp32))
    name = model.graph.input[0].name
    quantized = nncf.quantize(model, nncf.Dataset([{name: x[i : i + 1]} for i in range(len(x))]), subset_size=len(x))
    write_card(quantized, read_card(model))
    onnx.save(quantized, str(out))
    return out
