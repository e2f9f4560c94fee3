"""torch → ONNX: opset 17, dynamic batch, checker, parity against torch, self-describing metadata."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from edgecnn import __version__
from edgecnn.data import load_dataset
from edgecnn.errors import EdgecnnError
from edgecnn.files import atomic_path, refuse_overwrite
from edgecnn.graph.crop import crop_unread_input
from edgecnn.run import Run, exported_path, holds_run
from edgecnn.runtime.card import ModelCard, write_card
from edgecnn.runtime.session import Session
from edgecnn.train.fit import load_trained
from recipes import Recipe

OPSET = 17
PARITY_LIMIT = 1e-4  # float32 kernels differ in summation order; more than this is a real mismatch
INPUT_NAME = "input"


def resolve_run(source: Path) -> tuple[Path, Path]:
    """(run folder, weights file) from a run folder or a model.pt path."""
    source = Path(source)
    if source.is_dir():
        return source, Run(source).weights()
    if source.suffix == ".pt":
        return source.parent, source
    if not source.exists():
        raise EdgecnnError(f"{source} not found; give a run folder or a model.pt file")
    raise EdgecnnError(f"{source} is neither a run folder nor a .pt file")


def export_onnx(
    net: nn.Module,
    recipe: Recipe,
    out: Path,
    parity_batch: np.ndarray,
    force: bool = False,
) -> dict[str, Any]:
    """Export `net` to `out`, check it, measure parity with torch on `parity_batch`, write metadata."""
    out = Path(out)
    refuse_overwrite(out, force)
    net = net.eval()
    output_name = "probability" if recipe.output == "sigmoid" else "logits"
    export_net = nn.Sequential(net, nn.Sigmoid()) if recipe.output == "sigmoid" else net
    example = torch.from_numpy(parity_batch[:2])
    with atomic_path(out, force=True) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation on every call
        torch.onnx.export(
            export_net,
            (example,),
            str(tmp),
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[output_name],
            dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
            dynamo=False,
        )
        model = onnx.load(str(tmp))
        cropped = crop_unread_input(model)
        onnx.checker.check_model(model, full_check=True)
        with torch.no_grad():
            expected = export_net(torch.from_numpy(parity_batch)).numpy()
        _write_card(model, recipe, parity=0.0)
        onnx.save(model, str(tmp))
        got = Session(tmp, provider="cpu", threads=1).predict(parity_batch)
        parity = float(np.max(np.abs(got - expected)))
        if parity > PARITY_LIMIT:
            raise EdgecnnError(f"export parity failed: max |torch - onnxruntime| = {parity:.2e} > {PARITY_LIMIT:.0e}")
        _write_card(model, recipe, parity=parity)
        onnx.save(model, str(tmp))
    return {
        "model": str(out),
        "opset": OPSET,
        "parity_max_abs_diff": parity,
        "parity_samples": len(parity_batch),
        "input_read": cropped,
        "size_bytes": out.stat().st_size,
        "output": output_name,
    }


def _write_card(model: onnx.ModelProto, recipe: Recipe, parity: float) -> None:
    card = ModelCard(
        labels=tuple(recipe.labels), preprocess=recipe.preprocess, output=recipe.output,
        recipe=recipe.name, version=__version__, export_parity=parity,
    )
    write_card(model, card)


@holds_run(lambda source, **_: Run(resolve_run(source)[0]))
def export_run(source: Path, out: Path | None = None, force: bool = False, parity_samples: int = 64) -> dict[str, Any]:
    """Export a run's model.pt (or model.pruned.pt …) to model.fp32.onnx (model.pruned.fp32.onnx …)."""
    run, weights = resolve_run(source)
    if not weights.is_file():
        raise EdgecnnError(f"{weights} not found; train first with `edgecnn train RECIPE --out {run}`")
    net, recipe = load_trained(run, weights)
    out = Path(out) if out else exported_path(weights)
    test = load_dataset(recipe.dataset, **recipe.dataset_options).test
    return export_onnx(net, recipe, out, test.x[:parity_samples], force=force)
