"""ONNX Runtime's OpenVINO EP against its CPU EP on the same ONNX files: parity on the test split and
latency interleaved in rounds, both providers in one process.

    make openvino-env        # .venv-openvino: onnxruntime-openvino (or the edgecnn[openvino] plugin on Intel)
    .venv-openvino/bin/python benchmarks/openvino_ep.py runs/convnet/model.fp32.onnx runs/convnet/model.int8.onnx

Each model must lie in a run folder that kept its test split (test.npz, written by `edgecnn train`),
so this environment needs no dataset loader. Writes benchmarks/results/openvino.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data import resolve_split
from edgecnn.files import write_json, write_text
from edgecnn.run import variant_name
from edgecnn.runtime.bench import bench_models, machine_info
from edgecnn.runtime.providers import ProviderOptions
from edgecnn.runtime.session import Session

RESULTS = Path(__file__).parent / "results"
BATCHES = [1, 64]
PROVIDERS = ("cpu", "openvino")
ONE_THREAD = {"cpu": ProviderOptions(), "openvino": ProviderOptions(openvino_threads=1)}  # the CPU EP: bench's threads=1


def parity(model: Path) -> dict[str, Any]:
    """Top-1 agreement and max |Δ| of the OpenVINO EP's outputs against the CPU EP's, and both accuracies."""
    split, source = resolve_split(None, model, "test")
    outputs = {p: Session(model, provider=p, threads=None).predict(split.x) for p in PROVIDERS}
    card = Session(model).card
    top1 = {p: card.predictions(o) for p, o in outputs.items()}
    return {
        "data": source,
        "samples": len(split),
        "top1_agreement": float((top1["cpu"] == top1["openvino"]).mean()),
        "max_abs_diff": float(np.max(np.abs(outputs["cpu"].astype(np.float64) - outputs["openvino"]))),
        "accuracy": {p: float((t == split.y).mean()) for p, t in top1.items()},
    }


def timed_rounds(model: Path, runs: int, rounds: int) -> dict[int, dict[str, Any]]:
    """Per batch, each provider's median p50 over rounds and the OpenVINO/CPU speedup per round, alternating who goes first."""
    per_round = []
    for r in range(rounds):
        order = PROVIDERS if r % 2 == 0 else PROVIDERS[::-1]
        per_round.append({p: {x["batch"]: x["p50_ms"] for x in bench_models([model], provider=p, batches=BATCHES, runs=runs, options=ONE_THREAD[p])["results"]}
                          for p in order})
    return {
        b: {
            "cpu_p50_ms": statistics.median(t["cpu"][b] for t in per_round),
            "openvino_p50_ms": statistics.median(t["openvino"][b] for t in per_round),
            "speedup_rounds": [t["cpu"][b] / t["openvino"][b] for t in per_round],
        }
        for b in BATCHES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=100, help="timed runs per provider, batch and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for model in args.models:
        rows.append({"model": str(model), "variant": variant_name(model), "parity": parity(model), "latency": timed_rounds(model, args.runs, args.rounds)})
        print(f"{model}: done", flush=True)
    m = machine_info()
    lines = ["# OpenVINO EP against the CPU EP (ONNX Runtime, one process)", "",
             "| model | top-1 agreement | max \\|Δ\\| | accuracy CPU / OpenVINO | p50 b1 CPU / OpenVINO | speedup b1 | p50 b64 CPU / OpenVINO | speedup b64 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p, cells = r["parity"], []
        for b in BATCHES:
            t = r["latency"][b]
            s = t["speedup_rounds"]
            cells += [f"{t['cpu_p50_ms']:.3f} / {t['openvino_p50_ms']:.3f} ms", f"{statistics.median(s):.2f}× ({min(s):.2f}–{max(s):.2f})"]
        lines.append(f"| {Path(r['model']).parent.name}/{r['variant']} | {100 * p['top1_agreement']:.1f}% | {p['max_abs_diff']:.1e} | "
                     f"{100 * p['accuracy']['cpu']:.2f}% / {100 * p['accuracy']['openvino']:.2f}% | " + " | ".join(cells) + " |")
    lines += ["", f"Machine: {m['cpu']} ({m['cores']} cores), onnxruntime {m['onnxruntime']}, 1 thread, {args.rounds} rounds of "
              f"{args.runs} runs per provider and batch; speedup = CPU EP p50 / OpenVINO EP p50, median over rounds (range)."]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "openvino.json", {"machine": m, "runs": args.runs, "rounds": args.rounds, "rows": rows}, force=True)
    write_text(RESULTS / "openvino.md", text, force=True)
    print(text)


if __name__ == "__main__":
    main()
