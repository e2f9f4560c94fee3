"""Quantization's commands: quantize (one configuration), quantize-search (the accuracy-budgeted
search), quantize-layers (the layer ranking). onnxruntime only, no torch."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from edgecnn.cli.app import ForceFlag, JsonFlag, TargetOpt, WideFlag, command, console, fitted_table, kib, show_json
from edgecnn.errors import EdgecnnError
from edgecnn.files import refuse_overwrite
from edgecnn.run import int8_sibling

CalibOpt = Annotated[Optional[Path], typer.Option(help="Calibration data: run folder (its train split) or .npz (default: the model's run).")]
SamplesOpt = Annotated[int, typer.Option(min=1, help="Calibration samples.")]
OutOpt = Annotated[Optional[Path], typer.Option(help="Output .onnx (default: MODEL with .int8).")]


@command
def quantize(
    model: Annotated[Path, typer.Argument(help="fp32 .onnx file.")],
    passes: Annotated[Optional[list[str]], typer.Option("--pass", help="A graph pass, repeatable: float-stem, float-pool, s2d-stem, pad-input, float-head (see `edgecnn quantize-passes`).")] = None,
    format_: Annotated[str, typer.Option("--format", help="qdq or qoperator.")] = "qdq",
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="Weight scales per output channel.")] = True,
    method: Annotated[Optional[str], typer.Option(help="Calibration: minmax, entropy or percentile (default: the model's recipe's, else minmax).")] = None,
    types: Annotated[str, typer.Option(help="Activation/weight types: u8s8, s8s8 or u8u8.")] = "u8s8",
    reduce_range: Annotated[bool, typer.Option("--reduce-range", help="7-bit weights, for CPUs without VNNI.")] = False,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Dynamic quantization (no calibration).")] = False,
    symmetric: Annotated[bool, typer.Option("--symmetric", help="Activation zero points 0: with --types s8s8, the int8 TensorRT reads.")] = False,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Node names left in float (repeatable).")] = None,
    rounding: Annotated[Optional[str], typer.Option(help="Weight rounding: gptq (each layer's outputs kept closest to fp32 on the calibration data) or nearest (default: gptq where static QDQ).")] = None,
    calib: CalibOpt = None,
    samples: SamplesOpt = 256,
    out: OutOpt = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Quantize to int8 with onnxruntime.quantization in one configuration; the model card is carried over."""
    from edgecnn.quantize.model import QuantConfig, quantize_model, recipe_method

    config = QuantConfig(
        format=format_, per_channel=per_channel, method=method or recipe_method(model), types=types, reduce_range=reduce_range,
        dynamic=dynamic, symmetric=symmetric, passes=tuple(passes or ()), exclude=tuple(exclude or ()), rounding=rounding,
    )
    result = quantize_model(model, config, calib=calib, samples=samples, out=out, force=force)
    if json_out:
        return show_json(result.to_dict())
    console.print(
        f"{result.model}: {config.label()}, {kib(result.size_bytes)} (fp32 {kib(result.source_size_bytes)}), "
        f"calibrated on {result.calibration or 'nothing (dynamic)'}"
    )


@command
def fp16(
    model: Annotated[Path, typer.Argument(help="fp32 .onnx file.")],
    out: Annotated[Optional[Path], typer.Option(help="Output .onnx (default: MODEL with .fp16).")] = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """fp16 for GPUs (CUDA, TensorRT): weights and activations in half precision, float32 inputs and outputs."""
    from edgecnn.quantize.fp16 import fp16_model

    result = fp16_model(model, out, force=force)
    if json_out:
        return show_json(result)
    console.print(f"{result['model']}: {kib(result['size_bytes'])} (fp32 {kib(result['source_size_bytes'])}); inputs and outputs stay float32")


@command
def quantize_passes(json_out: JsonFlag = False) -> None:
    """The graph passes quantize and quantize-search know: what each does, needs and excludes."""
    from edgecnn.quantize.passes import PASSES

    rows = [
        {"pass": p.name, "does": p.summary, "requires": list(p.requires), "excludes": list(p.excludes),
         "domains": list(p.domains), "session_options": list(p.session.disabled_optimizers)}
        for p in PASSES.values()
    ]
    if json_out:
        return show_json(rows)
    table = Table("pass", "what it does", "needs", "excludes")
    for r in rows:
        needs = r["requires"] + [f"{d} ops" for d in r["domains"]] + [f"session: {o} off" for o in r["session_options"]]
        table.add_row(r["pass"], r["does"], ", ".join(needs) or "–", ", ".join(r["excludes"]) or "–")
    console.print(table)


@command
def quantize_search(
    model: Annotated[Path, typer.Argument(help="fp32 .onnx file.")],
    max_drop: Annotated[float, typer.Option(min=0, help="Accuracy budget in points on the validation split.")] = 0.5,
    batch: Annotated[str, typer.Option(help="Batch sizes latency is measured at; the kept model must beat fp32 at each.")] = "1",
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per candidate, interleaved.")] = 200,
    target: TargetOpt = "ort",
    timings: Annotated[Optional[Path], typer.Option(help="Timings measured on the device: the JSON `edgecnn bench --json` wrote there for the --candidates files.")] = None,
    candidates: Annotated[Optional[Path], typer.Option(help="Write fp32 and every candidate within budget to this folder for timing on the device, and stop.")] = None,
    remote: Annotated[Optional[str], typer.Option(help="Time the candidates on this device over SSH ([user@]host[:port]; as bench --remote) and decide on its timings.")] = None,
    ssh_config: Annotated[Optional[Path], typer.Option(help="ssh client config for --remote (ssh -F).")] = None,
    calib: CalibOpt = None,
    samples: SamplesOpt = 256,
    out: OutOpt = None,
    force: ForceFlag = False,
    wide: WideFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Search int8 configurations within --max-drop; keep the fastest that beats fp32 at every batch, or none."""
    from edgecnn.quantize.search import auto_quantize
    from edgecnn.runtime.bench import parse_batches

    settings = dict(max_drop=max_drop, target=target, batches=parse_batches(batch), samples=samples, runs=runs, out=out, force=force, show_progress=not json_out)
    if remote is not None:
        if timings is not None or candidates is not None:
            raise EdgecnnError("--remote times the candidates itself; it takes neither --timings nor --candidates")
        refuse_overwrite(out or int8_sibling(model), force)  # before the device's minutes, not after
        with tempfile.TemporaryDirectory(prefix="edgecnn-remote-") as tmp:
            timings = device_timings(model, calib, settings, remote, ssh_config, Path(tmp))
            result = auto_quantize(model, calib, **settings, timings=timings, parity=arm_parity(target, model, calib))
    else:
        result = auto_quantize(model, calib, **settings, timings=timings, candidates=candidates, parity=arm_parity(target, model, calib))
    if json_out:
        return show_json(result)
    if candidates is not None:
        typer.echo(f"{len(result['candidates'])} models in {candidates}; on the device: edgecnn bench {candidates}/*.onnx "
                   f"--batch {batch} --json > timings.json, then this command with --timings timings.json")
        return
    _print_decision(result, wide)


def device_timings(model: Path, calib: Optional[Path], settings: dict[str, Any], remote: str, ssh_config: Optional[Path], tmp: Path) -> Path:
    """The search's candidates timed on `remote` (bench --remote), as the timings file --timings reads."""
    from edgecnn.device.remote import bench_remote
    from edgecnn.files import write_json
    from edgecnn.quantize.search import auto_quantize

    written = auto_quantize(model, calib, **{**settings, "out": None, "force": True}, candidates=tmp / "candidates")["candidates"]
    host = bench_remote([remote], [Path(p) for p in written], target=settings["target"], batches=settings["batches"],
                        runs=settings["runs"], ssh_config=ssh_config, show_progress=settings["show_progress"])[0]
    if "error" in host:
        raise EdgecnnError(f"{remote}: {host['error']}")
    return write_json(tmp / "timings.json", host)


def arm_parity(target: str, model: Path, calib: Optional[Path]) -> Any:
    """For a Pi target: a check that a candidate's outputs under the emulated CPU match this machine's
    (verify-arm on the fp32 model's test split, or --calib's data), returning why not; None elsewhere."""
    from edgecnn.run import Run
    from edgecnn.runtime.targets import resolve_target

    cpu = resolve_target(target).arm_cpu
    if cpu is None:
        return None
    run = Run.of(model)
    data = calib if calib is not None else (run.root if run is not None else None)

    def parity(candidate: Path) -> str | None:
        from edgecnn.device.arm import verify_arm

        result = verify_arm(candidate, cpu=cpu, data=data, samples=64, log=lambda _: None)
        return None if result["passed"] else (
            f"verify-arm --cpu {cpu}: top-1 agreement {result['top1_agreement']:.1%}, max |Δ| {result['max_abs_diff']:.3g} (wants {result['criterion']})")

    return parity


@command
def quantize_layers(
    model: Annotated[Path, typer.Argument(help="int8 QDQ .onnx file made by edgecnn.")],
    fp32: Annotated[Optional[Path], typer.Option(help="The fp32 model it came from (default: the .fp32 sibling).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Run folder (its validation split) or .npz (default: the model's run).")] = None,
    samples: Annotated[int, typer.Option(min=1, help="Samples compared.")] = 64,
    json_out: JsonFlag = False,
) -> None:
    """Rank the layers of an int8 QDQ model by the SQNR they lose against fp32, worst first."""
    from edgecnn.quantize.layers import rank_layers

    result = rank_layers(model, fp32, data=data, samples=samples)
    if json_out:
        return show_json(result)
    table = Table("layer", "ops", "SQNR lost", "output SQNR", "weight SQNR", title=f"{result['model']} vs {result['fp32']}, {result['samples']} samples, worst first")
    for r in result["layers"]:
        weight = "–" if r["weight_sqnr_db"] is None else f"{r['weight_sqnr_db']:.1f} dB"
        table.add_row(r["node"], r["op"], f"{r['loss_db']:.1f} dB", f"{r['output_sqnr_db']:.1f} dB", weight)
    console.print(table)


def _print_decision(result: dict[str, Any], wide: bool) -> None:
    batches = result["batches"]
    fp32 = result["fp32_p50_ms"] or {}
    header = ["config", "val acc", "drop pt", "in budget", *(f"speedup b{b}" for b in batches), "kept"]
    rows = [
        [t["config"], f"{100 * t['val_accuracy']:.2f}%", f"{t['drop_points']:+.2f}", "yes" if t["within_budget"] else "no",
         *(f"{t['speedup'][b]:.2f}×" if b in t["speedup"] else "–" for b in batches), "yes" if t["chosen"] else ""]
        for t in result["trials"]
    ]
    console.print(fitted_table(header, rows, secondary=("in budget",), wide=wide,
                               title=f"int8 search on {result['provider']}: fp32 {100 * result['fp32_val_accuracy']:.2f}% on {result['validation']}, "
                               + ", ".join(f"p50 b{b} {ms:.3f} ms" for b, ms in fp32.items())))
    console.print(f"{result['reason']} → {result['kept']}")
    if result["left_alone"]:
        console.print(f"{result['left_alone']} is from an earlier call and was left as it was; it is not this search's choice")
