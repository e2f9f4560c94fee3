"""The edgecnn command line: each command parses, calls one library function and prints the result.

Runtime commands (eval, bench, report, info, camera, pack, verify-arm) import no torch; the training
half's commands live in edgecnn/cli_train.py and import it only when they run.
"""

from __future__ import annotations

import functools
import json
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
    rich_markup_mode=None,  # plain usage errors: "Error: ..." on one line, not a box
    context_settings={"max_content_width": 110},
)
console = Console()

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ForceFlag = Annotated[bool, typer.Option("--force", help="Overwrite existing artifacts.")]
ProviderOpt = Annotated[str, typer.Option(help="Execution provider: cpu, cuda, tensorrt, openvino, xnnpack, acl.")]
def one_line_errors(fn):
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
    return app.command(name=fn.__name__.rstrip("_").replace("_", "-"))(one_line_errors(fn))


MAX_TABLE_CLASSES = 20  # past this a confusion matrix no longer fits a terminal


def show_json(result: Any) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


def kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def print_report(report: dict[str, Any]) -> None:
    """A run's table and the notes on what the int8 search and pruning decided."""
    typer.echo(report["table_markdown"])
    for note in report["notes"]:
        typer.echo(f"- {note}")


# the training half's commands register here, so that `--help` lists them first; they import torch
# only when they run
from edgecnn import cli_train  # noqa: E402,F401


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
            f"{r['throughput']:,.0f}/s", kib(r["size_bytes"]), f"{r['speedup']:.2f}×",
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
    print_report(result)


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
    console.print(f"[bold]{result['model']}[/bold]  {kib(result['size_bytes'])}, {result['params']:,} params, "
                  f"opset {result['opset']}, {result['producer']}")
    for kind in ("inputs", "outputs"):
        for t in result[kind]:
            console.print(f"  {kind[:-1]} {t['name']}: {t['type']} {t['shape']}")
    console.print("  ops: " + ", ".join(f"{k}×{v}" for k, v in result["ops"].items()))
    for key, value in result["metadata"].items():
        console.print(f"  {key} = {value}", markup=False, highlight=False)


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
    threads: Annotated[Optional[int], typer.Option(help="Intra-op threads (default: all cores but one, left for capture; 0: onnxruntime default).")] = None,
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
