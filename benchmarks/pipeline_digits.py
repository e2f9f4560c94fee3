"""The digits pipeline's table: fp32 vs int8 accuracy, size, p50 at batch 1, throughput at batch 32.

Runs the real pipeline (train → export → quantize → eval → bench, interleaved) and writes
benchmarks/results/pipeline_digits.{json,md}. `--seeds 0,1,2,3,4` also trains other seeds to
show how far the recipe's accuracy depends on its seed.

    .venv/bin/python benchmarks/pipeline_digits.py [--runs 1000] [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from edgecnn.files import write_json, write_text
from edgecnn.pipeline import run_pipeline
from edgecnn.train.fit import train
from recipes import get_recipe

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="timed runs per model and batch, interleaved")
    parser.add_argument("--seeds", default="", help="extra seeds to train, e.g. 0,1,2,3,4")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as tmp:
        report = run_pipeline("digits", Path(tmp) / "digits", batches=[1, 32], runs=args.runs, show_progress=False)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        seed_acc = {s: train("digits", Path(tmp) / f"seed{s}", seed=s, show_progress=False)["torch_test_accuracy"] for s in seeds}

    rows = {r["variant"]: r for r in report["rows"]}
    table = report["table_markdown"]
    recipe = get_recipe("digits")
    lines = [
        "# digits pipeline: fp32 vs int8",
        "",
        table,
        f"Machine: {report['machine']['cpu']} ({report['machine']['cores']} cores), onnxruntime "
        f"{report['machine']['onnxruntime']}, CPU provider, 1 thread, {args.runs} interleaved runs per model and batch.",
        f"Recipe seed {recipe.seed}; seed document: {recipe.reference}.",
    ]
    if seed_acc:
        accs = list(seed_acc.values())
        lines.append(
            "Other seeds (torch, fp32): "
            + ", ".join(f"{s}: {100 * a:.2f}%" for s, a in seed_acc.items())
            + f"; mean {100 * statistics.mean(accs):.2f}%, min {100 * min(accs):.2f}%."
        )
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "pipeline_digits.json", {"report": report, "runs": args.runs, "seed_accuracy": seed_acc}, force=True)
    write_text(RESULTS / "pipeline_digits.md", text, force=True)
    print(text)
    int8 = rows["int8"]["latency"]
    print(f"int8 vs fp32: b1 {int8[1]['speedup']:.2f}×, b32 {int8[32]['speedup']:.2f}×")


if __name__ == "__main__":
    main()
