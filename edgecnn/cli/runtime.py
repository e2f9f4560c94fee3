"""The runtime half's commands: eval, bench, report, info. No torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from edgecnn.cli.app import MAX_TABLE_CLASSES, DeviceIdOpt, EpOpt, ForceFlag, JsonFlag, ProviderOpt, StrictFlag, WideFlag, command, console, fitted_table, kib, print_report, show_json


@command
def eval_(
    model: Annotated[Path, typer.Argument(help=".onnx file.")],
    data: Annotated[Optional[Path], typer.Option(help="Run folder or .npz with x and y (default: the model's run).")] = None,
    split: Annotated[str, typer.Option(help="Split of a run's dataset: train, val or test.")] = "test",
    provider: ProviderOpt = "cpu",
    out: Annotated[Optional[Path], typer.Option(help="Also write the result as JSON here (a model's run records it anyway).")] = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Accuracy, confusion matrix and per-class precision/recall/F1 through ONNX Runtime.

    On a model in a run folder, measured on the run's test split, the result is recorded in the run
    (eval-VARIANT.json) for `edgecnn report`."""
    from edgecnn.files import refuse_overwrite, write_json
    from edgecnn.measure import evaluate_model

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
    console.print(f"accuracy {100 * result['accuracy']:.2f}% on {result['samples']} samples"
                  + (f"; recorded in {result['recorded']}" if "recorded" in result else ""))


@command
def agree(
    model: Annotated[Path, typer.Argument(help=".onnx file, e.g. an int8 model.")],
    reference: Annotated[Path, typer.Argument(help=".onnx file it should follow, e.g. its fp32 source.")],
    data: Annotated[Optional[Path], typer.Option(help="Run folder or .npz with x (default: the model's run).")] = None,
    split: Annotated[str, typer.Option(help="Split of a run's dataset: train, val or test.")] = "test",
    photos: Annotated[bool, typer.Option("--photos", help="The photo set's check views instead (edgecnn.data.photos), prepared as the model card says.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """How closely MODEL's outputs follow REFERENCE's on the same samples: top-1 agreement, the mean KL
    divergence of the class probabilities, and the confidence each keeps. No labels needed."""
    from edgecnn.data import resolve_split
    from edgecnn.errors import EdgecnnError
    from edgecnn.runtime.agreement import DECISIVE, compare_models
    from edgecnn.runtime.card import read_card
    from edgecnn.runtime.session import load_onnx

    if photos:
        from edgecnn.data.photos import photo_set

        if data is not None:
            raise EdgecnnError("--photos brings its own samples; it takes no --data")
        card = read_card(load_onnx(model))  # the card alone: compare_models builds the sessions
        if card.preprocess is None:
            raise EdgecnnError(f"--photos prepares photos as the model card says, and {model}'s card has no preprocess (a photo recipe's model has one)")
        views = photo_set(card.preprocess.to_dict())
        x, source = views.check.x, f"{views.source} (check views)"
    else:
        samples, source = resolve_split(data, model, split)
        x = samples.x
    result = compare_models(model, reference, x, source)
    if json_out:
        return show_json(result)
    decisive = "–" if result["decisive_agreement"] is None else f"{result['decisive_agreement']:.1%}"
    widest = "" if result["flipped_widest_lead"] is None else f" (the reference's widest lead among them {result['flipped_widest_lead']:.3f})"
    console.print(
        f"{model.name} against {reference.name} on {result['samples']} samples of {source}:\n"
        f"  top-1 agreement {result['top1_agreement']:.1%}; {decisive} where the reference leads by ≥ {DECISIVE} ({result['decisive_share']:.0%} of samples)\n"
        f"  mean KL(reference ‖ model) {result['mean_kl']:.4f}; top-1 probability {result['reference_top1_probability']:.3f} → {result['top1_probability']:.3f}\n"
        f"  {result['flipped']} samples flipped{widest}"
    )


@command
def bench(
    models: Annotated[list[Path], typer.Argument(help="One or more .onnx files; ratios are against the first.")],
    target: Annotated[Optional[str], typer.Option(help="Load the models as this target does: ort (default: a plain InferenceSession), host (with the session options their cards ask for), onnx, pi4, pi5, openvino, cuda, tensorrt.")] = None,
    provider: Annotated[Optional[str], typer.Option(help="Execution provider (default: the target's): cpu, cuda, tensorrt, openvino, xnnpack, acl.")] = None,
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,32",
    threads: Annotated[int, typer.Option(min=0, help="Intra-op threads (0: onnxruntime default).")] = 1,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs per model and batch.")] = 10,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per model and batch, interleaved.")] = 100,
    profile: Annotated[bool, typer.Option("--profile", help="Also show each model's time per operator type and per provider (onnxruntime profiler, largest batch).")] = False,
    device_id: DeviceIdOpt = 0,
    strict: StrictFlag = False,
    ep: EpOpt = None,
    remote: Annotated[Optional[list[str]], typer.Option("--remote", help="Time on this device over SSH instead: [user@]host[:port] or a Host of the ssh config; repeatable (one table, a JSON list). Installs edgecnn there once, cached by content hash in its ~/.cache/edgecnn.")] = None,
    ssh_config: Annotated[Optional[Path], typer.Option(help="ssh client config for --remote (ssh -F; default: ~/.ssh/config).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also write the result as JSON here.")] = None,
    force: ForceFlag = False,
    wide: WideFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """p50/p90/p99 latency, throughput and size, several models interleaved; where each model's nodes run.

    Models of one run folder are recorded in it (bench-PROVIDER.json) for `edgecnn report`."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.files import refuse_overwrite, write_json
    from edgecnn.measure import bench as bench_recorded
    from edgecnn.runtime.bench import parse_batches, profile_model
    from edgecnn.runtime.providers import parse_provider_options

    if out:
        refuse_overwrite(out, force)
    batches = parse_batches(batch)
    if remote:
        from edgecnn.device.remote import bench_remote

        if profile or ep or strict or device_id:
            raise EdgecnnError("--remote takes --target, --provider, --batch, --threads, --warmup and --runs; --profile, --ep, --strict and --device-id are for a bench here")
        hosts = bench_remote(remote, models, target=target, provider=provider, batches=batches, threads=threads, warmup=warmup, runs=runs,
                             ssh_config=ssh_config, show_progress=not json_out)
        if out:
            write_json(out, hosts, force=force)
        if json_out:
            show_json(hosts)
        else:
            print_hosts([h for h in hosts if "error" not in h], threads, wide)
        for h in hosts:
            if "error" in h:
                typer.echo(f"error: {h['host']}: {h['error']}", err=True)
        if any("error" in h for h in hosts):
            raise typer.Exit(2)
        return
    options = parse_provider_options(ep or [], device_id=device_id, strict=strict)
    goal, provider = bench_target(target, provider)
    if profile and goal.runtime != "onnxruntime":
        raise EdgecnnError(f"--profile reads ONNX Runtime's profiler; target {goal.name} runs in the {goal.runtime} runtime")
    result = bench_recorded(models, target=goal.name, provider=provider, batches=batches, threads=threads, warmup=warmup, runs=runs, options=options)
    if profile:
        result["profile"] = {
            str(m): profile_model(m, batch=batches[-1], threads=threads, runs=max(10, runs // 4), provider=provider, options=options) for m in models
        }
    if out:
        write_json(out, result, force=force)
    if json_out:
        return show_json(result)
    m = result["machine"]
    on_device = any("device_p50_ms" in r for r in result["results"])
    header = ["model", "batch", "p50 ms", "p90 ms", "p99 ms", *(["on device ms"] if on_device else []), "per s", "KiB", "speedup"]
    rows = [
        [r["variant"], str(r["batch"]), f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}",
         *([f"{r['device_p50_ms']:.3f}"] if on_device else []), f"{r['throughput']:,.0f}", f"{r['size_bytes'] / 1024:.1f}", f"{r['speedup']:.2f}×"]
        for r in result["results"]
    ]
    console.print(fitted_table(header, rows, secondary=("p90 ms", "KiB"), wide=wide,
                               title=f"{m['cpu']} ({m['machine']}), onnxruntime {m['onnxruntime']}{', OpenVINO ' + m['openvino'] if 'openvino' in m else ''}, target {goal.name} ({provider}), {threads or 'default'} thread(s)"))
    for info in result["models"]:
        console.print(f"{info['variant']}: built in {info['build_ms']:.0f} ms; {placement_line(info['placement'], info['fallen_back'])}", highlight=False)
        if info["session_needs"] and not goal.card_options:
            console.print(f"{info['variant']}: timed as any ONNX Runtime program loads it; its card asks for session options "
                          f"({', '.join(info['session_needs'])} off) that only `--target host` applies", highlight=False)
    if "recorded" in result:
        console.print(f"recorded in {result['recorded']}")
    for model, found in result.get("profile", {}).items():
        console.print(f"{Path(model).name} at batch {batches[-1]}: " + ", ".join(
            f"{o['op']} {100 * o['share']:.0f}% ({o['us_per_run']:.0f} µs)" for o in found["ops"][:6])
            + "; by provider: " + ", ".join(f"{p['provider']} {100 * p['share']:.0f}%" for p in found["providers"]), highlight=False)


def print_hosts(done: list[dict[str, Any]], threads: int, wide: bool) -> None:
    """The hosts that answered, in one table with a host column, then each device's fingerprint."""
    from edgecnn.device.remote import device_summary

    if not done:
        return
    rows = [[h["host"], r["variant"], str(r["batch"]), f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}",
             f"{r['throughput']:,.0f}", f"{r['size_bytes'] / 1024:.1f}", f"{r['speedup']:.2f}×"] for h in done for r in h["results"]]
    console.print(fitted_table(["host", "model", "batch", "p50 ms", "p90 ms", "p99 ms", "per s", "KiB", "speedup"], rows, secondary=("p90 ms", "KiB"),
                               wide=wide, title=f"target {done[0]['target']} ({done[0]['provider']}), {threads or 'default'} thread(s)"))
    for h in done:
        console.print(f"{h['host']}: {device_summary(h['device'])}", highlight=False)


def bench_target(target: str | None, provider: str | None) -> tuple[Any, str]:
    """The target a bench measures for and its provider; --provider alone keeps the plain session of `ort`."""
    import platform

    from edgecnn.errors import EdgecnnError
    from edgecnn.runtime.targets import DEFAULT_TARGET, resolve_target

    goal = resolve_target(target or DEFAULT_TARGET)
    if target is not None and provider is not None and provider != goal.provider:
        raise EdgecnnError(f"--provider {provider} contradicts --target {target}, which runs on {goal.provider}")
    if not goal.timed_here and platform.machine() != "aarch64":
        raise EdgecnnError(f"target {goal.name} is timed on the device: run this bench on it ({goal.summary}), not on {platform.machine()}")
    return goal, provider or goal.provider


def placement_line(placement: dict[str, int], fallen_back: list[str]) -> str:
    """'8 nodes on CPUExecutionProvider', and the nodes that fell back to the CPU where any did."""
    line = ", ".join(f"{n} node{'s' * (n != 1)} on {ep}" for ep, n in placement.items())
    if fallen_back:
        line += f"; on the CPU instead: {', '.join(fallen_back[:8])}" + (f" and {len(fallen_back) - 8} more" if len(fallen_back) > 8 else "")
    return line


@command
def report(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    provider: ProviderOpt = "cpu",
    wide: WideFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """The run's table (Markdown + JSON), pareto.png and confusion pictures from its eval and bench results."""
    from edgecnn.report import build_report

    result = build_report(run, provider=provider)
    if json_out:
        return show_json(result)
    print_report(result, wide)


@command
def info(
    model: Annotated[Path, typer.Argument(help=".onnx file.")],
    provider: Annotated[Optional[str], typer.Option(help="Also say where this provider runs each node: cpu, cuda, tensorrt, openvino, xnnpack, acl.")] = None,
    device_id: DeviceIdOpt = 0,
    ep: EpOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Inputs, outputs, opset, operator counts, parameters, MACs, size and model card of a model."""
    from edgecnn.runtime.info import describe_model, placement
    from edgecnn.runtime.providers import parse_provider_options

    result = describe_model(model)
    if provider is not None:
        result["placement"] = placement(model, provider, parse_provider_options(ep or [], device_id=device_id))
    if json_out:
        return show_json(result)
    opsets = ", ".join(f"{domain} {version}" for domain, version in result["opset"].items())
    console.print(f"[bold]{result['model']}[/bold]  {kib(result['size_bytes'])}, {result['params']:,} params, "
                  f"{result['macs']:,} MACs per sample, opset {opsets}, {result['producer']}")
    for kind in ("inputs", "outputs"):
        for t in result[kind]:
            console.print(f"  {kind[:-1]} {t['name']}: {t['type']} {t['shape']}")
    console.print("  ops: " + ", ".join(f"{k}×{v}" for k, v in result["ops"].items()))
    for key, value in result["metadata"].items():
        console.print(f"  {key} = {value}", markup=False, highlight=False)
    if result["targets"]:
        console.print(f"  int8 valid for targets: {', '.join(result['targets'])}" + (f"; kept for {result['kept_for']}" if result["kept_for"] else ""), highlight=False)
    if result["session_needs"]:
        console.print(f"  runs at its measured speed only with edgecnn's session options ({', '.join(result['session_needs'])} off): "
                      "target host; a plain InferenceSession runs it slower", highlight=False)
    if result["non_finite_weights"]:
        console.print(f"  warning: NaN or Inf in {len(result['non_finite_weights'])} weight(s): {', '.join(result['non_finite_weights'][:5])}", highlight=False)
    if "placement" in result:
        found = result["placement"]
        console.print(f"  on {found['provider']}: {placement_line(found['nodes'], found['fallen_back'])}", highlight=False)
