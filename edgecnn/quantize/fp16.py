"""fp16 for GPUs: weights and activations in half precision, the model's inputs and outputs kept float32.

Callers feed and read float32 as before. onnxconverter-common does the conversion (`edgecnn[gpu]`);
the model card is carried over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from edgecnn.errors import EdgecnnError
from edgecnn.files import atomic_path, refuse_overwrite
from edgecnn.run import sibling
from edgecnn.runtime.card import read_card, write_card
from edgecnn.runtime.session import load_onnx


def fp16_model(model: Path, out: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Convert an fp32 model to fp16 with float32 inputs and outputs: model.fp32.onnx → model.fp16.onnx."""
    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError:
        raise EdgecnnError("fp16 conversion needs onnxconverter-common: pip install 'edgecnn[gpu]'") from None
    model = Path(model)
    source = load_onnx(model)
    card = read_card(source)
    if card.quantization is not None:
        raise EdgecnnError(f"{model} is int8; convert its fp32 source to fp16")
    out = Path(out) if out else sibling(model, "fp16")
    if out.resolve() == model.resolve():
        raise EdgecnnError(f"output {out} would overwrite the input model; pass another --out")
    refuse_overwrite(out, force)
    converted = convert_float_to_float16(source, keep_io_types=True)
    write_card(converted, card)
    with atomic_path(out, force=True) as tmp:
        onnx.save(converted, str(tmp))
    return {"model": str(out), "source": str(model), "size_bytes": out.stat().st_size, "source_size_bytes": model.stat().st_size}
