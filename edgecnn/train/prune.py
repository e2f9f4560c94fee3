"""Pruning with proof in ONNX: structured channel pruning (torch-pruning, DepGraph) and
unstructured magnitude pruning, each fine-tuned, exported and measured against fp32.
"""

from __future__ import annotations

import copy
import gzip
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune

from edgecnn.data import load_run_dataset
from edgecnn.errors import EdgecnnError
from edgecnn.files import atomic_path, refuse_overwrite, write_json
from edgecnn.graph.count import count_macs, count_params
from edgecnn.run import PRUNED_FAMILIES, Run, holds_run
from edgecnn.runtime.bench import bench_models
from edgecnn.runtime.evaluate import accuracy
from edgecnn.runtime.session import load_onnx
from edgecnn.train.export import export_onnx, export_run
from edgecnn.train.fit import evaluate_torch, fine_tune, load_trained

ROUND_TO = 16  # ORT's blocked NCHWc kernels want channel counts in multiples of 16 on x86


def _prunable(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def fitting_round_to(net: nn.Module, ratio: float, preferred: int = ROUND_TO) -> int:
    """The largest power of two ≤ `preferred` that every pruned layer still keeps (torch-pruning
    silently skips a layer with fewer channels than round_to)."""
    kept = min(int(m.weight.shape[0] * (1 - ratio)) for m in _prunable(net)[:-1])
    round_to = preferred
    while round_to > 1 and round_to > kept:
        round_to //= 2
    return round_to


def prune_channels(net: nn.Module, input_shape: tuple[int, ...], ratio: float, round_to: int = ROUND_TO) -> nn.Module:
    """Remove the lowest-L1 channels of every layer but the classifier; coupled layers shrink together."""
    classifier = _prunable(net)[-1]
    before = [m.weight.shape[0] for m in _prunable(net)]
    pruner = tp.pruner.BasePruner(
        net,
        torch.zeros(1, *input_shape),
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        global_pruning=False,
        round_to=round_to,
        ignored_layers=[classifier],
    )
    pruner.step()
    if [m.weight.shape[0] for m in _prunable(net)] == before:
        raise EdgecnnError(f"ratio {ratio} with round_to {round_to} removes no channel from layers of {before[:-1]} channels")
    return net


def prune_magnitude(net: nn.Module, ratio: float) -> nn.Module:
    """Zero the smallest `ratio` of all conv and linear weights (masks stay during fine-tuning)."""
    torch_prune.global_unstructured(
        [(m, "weight") for m in _prunable(net)], pruning_method=torch_prune.L1Unstructured, amount=ratio
    )
    return net


def sparsity(net: nn.Module) -> float:
    weights = [m.weight for m in _prunable(net)]
    return float(sum((w == 0).sum() for w in weights) / sum(w.numel() for w in weights))


def gzip_size(path: Path) -> int:
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9))


def _onnx_figures(path: Path) -> dict[str, Any]:
    model = load_onnx(path)
    return {"params": count_params(model), "macs": count_macs(model), "size_bytes": path.stat().st_size, "gzip_bytes": gzip_size(path)}


SEARCH_RATIOS = (0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125)  # tried largest first; ratios the rounding makes alike are tried once


@holds_run(lambda run, **_: Run(run))
def prune_run(
    run: Path,
    method: str = "structured",
    ratio: float = 0.5,
    finetune_epochs: int | None = None,
    round_to: int | None = None,
    batches: list[int] = (1, 64),
    runs: int = 100,
    force: bool = False,
    show_progress: bool = True,
    max_drop: float | None = None,
    search: bool = False,
    timing_slot: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> dict[str, Any]:
    """Prune a run's model, fine-tune, export, and measure params, MACs, size, latency, accuracy vs fp32.

    With `max_drop` (points of validation accuracy) a pruned model beyond the budget is reported and
    not kept; `search` tries ratios from the largest down and keeps the first within it. The timing
    runs inside `timing_slot()`.
    """
    run = Path(run)
    if method not in PRUNED_FAMILIES:
        raise EdgecnnError(f"unknown pruning method {method!r} (accepted: {', '.join(PRUNED_FAMILIES)})")
    if not 0.0 < ratio < 1.0:
        raise EdgecnnError(f"--ratio must be between 0 and 1 (exclusive), got {ratio}")
    if finetune_epochs is not None and finetune_epochs < 0:
        raise EdgecnnError(f"--finetune-epochs must be ≥ 0, got {finetune_epochs}")
    if max_drop is not None and max_drop < 0:
        raise EdgecnnError(f"--max-drop must be ≥ 0 accuracy points, got {max_drop}")
    if search and (max_drop is None or method != "structured"):
        raise EdgecnnError("--search looks for the largest structured ratio within --max-drop: give --max-drop, with --method structured")
    family = PRUNED_FAMILIES[method]
    folder = Run(run)
    weights, onnx_out, proof = folder.weights(family), folder.onnx("fp32", family), folder.prune_json(method)
    for path in (weights, onnx_out, proof):
        refuse_overwrite(path, force)
    trained, recipe = load_trained(run)
    baseline = folder.onnx("fp32")
    if not baseline.is_file():
        export_run(run)
    data = load_run_dataset(run)
    epochs = recipe.epochs if finetune_epochs is None else finetune_epochs
    base_val = evaluate_torch(recipe, trained, data.val)[1]
    channels_before = [m.weight.shape[0] for m in _prunable(trained)]

    tried, kept = [], None
    for candidate in _ratios(trained, recipe, method, ratio, round_to, search):
        net = copy.deepcopy(trained)
        rounding = (round_to or fitting_round_to(net, candidate)) if method == "structured" else None
        if method == "structured":
            prune_channels(net, recipe.input_shape, candidate, rounding)
        else:
            prune_magnitude(net, candidate)
        history = fine_tune(recipe, net, data, epochs, show_progress) if epochs else []
        if method == "magnitude":
            for module in _prunable(net):
                torch_prune.remove(module, "weight")
        net.eval()
        drop = 100 * (base_val - evaluate_torch(recipe, net, data.val)[1])
        tried.append({"ratio": candidate, "round_to": rounding, "channels": [m.weight.shape[0] for m in _prunable(net)],
                      "val_drop_points": drop, "within_budget": max_drop is None or drop <= max_drop})
        if tried[-1]["within_budget"]:
            kept = (net, candidate, rounding, history)
            break

    result: dict[str, Any] = {
        "run": str(run), "method": method, "finetune_epochs": epochs, "trained_epochs": recipe.epochs,
        "max_drop_points": max_drop, "tried": tried, "kept": kept is not None,
    }
    if kept is None:
        result.update(ratio=ratio, model=None, channels={"before": channels_before, "after": tried[-1]["channels"]},
                      note=f"no ratio tried stays within {max_drop} points of validation accuracy: nothing kept")
        write_json(proof, result, force=True)
        return result
    net, ratio, round_to, history = kept
    with atomic_path(weights, force=True) as tmp:
        torch.save(net.state_dict(), tmp)
    export_onnx(net, recipe, onnx_out, data.test.x[:64], force=True)

    before, after = _onnx_figures(baseline), _onnx_figures(onnx_out)
    with timing_slot():  # a sweep's: alone on its machine
        timing = bench_models([baseline, onnx_out], batches=list(batches), runs=runs)
    acc_before, acc_after = accuracy(baseline, data.test.x, data.test.y), accuracy(onnx_out, data.test.x, data.test.y)
    result.update({
        "ratio": ratio,
        "round_to": round_to,
        "model": str(onnx_out),
        "before": {**before, "test_accuracy": acc_before},
        "after": {**after, "test_accuracy": acc_after},
        "channels": {"before": channels_before, "after": [m.weight.shape[0] for m in _prunable(net)]},
        "macs_reduction": before["macs"] / max(after["macs"], 1),
        "params_reduction": before["params"] / max(after["params"], 1),
        "accuracy_drop_points": 100 * (acc_before - acc_after),
        "latency": [
            {"batch": r["batch"], "variant": r["variant"], "p50_ms": r["p50_ms"], "speedup": r["speedup"]}
            for r in timing["results"]
        ],
        "machine": timing["machine"],
        "history": history,
    })
    if method == "magnitude":
        result["sparsity"] = sparsity(net)
        result["note"] = (
            "ONNX Runtime runs sparse weights as dense tensors: the file compresses better "
            "(gzip size), but it is no smaller uncompressed and no faster"
        )
    write_json(proof, result, force=True)
    return result


def _ratios(net: nn.Module, recipe: Any, method: str, ratio: float, round_to: int | None, search: bool) -> list[float]:
    """The ratio asked for, or with `search` every SEARCH_RATIOS entry that gives channel counts of its own."""
    if not search:
        return [ratio]
    found, seen = [], set()
    for candidate in SEARCH_RATIOS:
        trial = copy.deepcopy(net)
        try:
            prune_channels(trial, recipe.input_shape, candidate, round_to or fitting_round_to(trial, candidate))
        except EdgecnnError:  # removes no channel at this ratio
            continue
        channels = tuple(m.weight.shape[0] for m in _prunable(trial))
        if channels not in seen:
            seen.add(channels)
            found.append(candidate)
    return found
