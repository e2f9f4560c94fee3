"""The device end's commands: camera, pack, verify-arm. No torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgecnn.cli.app import ForceFlag, JsonFlag, ProviderOpt, command, console, show_json
from edgecnn.errors import EdgecnnError


@command
def camera(
    model: Annotated[Path, typer.Argument(help=".onnx file (its metadata gives labels and preprocessing).")],
    source: Annotated[str, typer.Option(help="Webcam index, video file, image folder, stream URL or picamera.")] = "0",
    headless: Annotated[bool, typer.Option("--headless", help="No window: one JSON line per frame on stdout.")] = False,
    max_frames: Annotated[Optional[int], typer.Option(min=1, help="Stop after this many frames.")] = None,
    record: Annotated[Optional[Path], typer.Option(help="Write the annotated video here (.mp4 or .avi).")] = None,
    top_k: Annotated[Optional[int], typer.Option(min=1, help="Labels shown per frame (default: 3, or every class if fewer).")] = None,
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
    threads: Annotated[Optional[int], typer.Option(min=0, help="Intra-op threads (default: all cores but one, left for capture; 0: onnxruntime default).")] = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Classify a live camera, video, stream or image folder; a summary at the end (Ctrl-C stops)."""
    from edgecnn.device.camera import SourceLost, parse_floats, parse_pair, read_labels, run_camera

    overrides = {
        "color": color, "resize": resize, "scale": scale, "invert": invert,
        "size": parse_pair("size", size, "224x224") if size else None,
        "mean": parse_floats("mean", mean) if mean else None,
        "std": parse_floats("std", std) if std else None,
    }
    try:
        result = run_camera(
            model, source, headless=headless, max_frames=max_frames, record=record, force=force, top_k=top_k,
            provider=provider, threads=threads, resolution=parse_pair("resolution", resolution, "640x480") if resolution else None,
            preprocess=overrides, labels=read_labels(labels) if labels else None, emit=lambda line: typer.echo(line),
        )
    except SourceLost as lost:  # the frames so far, then the one line and exit 2 (systemd's Restart=on-failure)
        _show_summary(lost.summary, json_out)
        raise
    _show_summary(result, json_out)


def _show_summary(result: dict[str, Any], json_out: bool) -> None:
    if json_out:
        return typer.echo(json.dumps({"summary": result}))
    latency = (f", latency p50 {result['latency_p50_ms']:.2f} ms p99 {result['latency_p99_ms']:.2f} ms" if result["frames"] else "")
    typer.echo(
        f"{result['frames']} frames ({result['stopped']}), {result['mean_fps']:.1f} FPS{latency}, {result['dropped']} dropped"
        + (f"; recorded {result['record']}" if result["record"] else ""),
        err=True,
    )


@command
def pack(
    model: Annotated[Path, typer.Argument(help=".onnx file to ship.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to create.")] = Path("bundle"),
    platform: Annotated[Optional[str], typer.Option(help="Also carry every requirement's wheel for this device, so that install.sh "
                                                         "needs no internet: bookworm-arm64 (Raspberry Pi OS 64-bit bookworm, "
                                                         "aarch64, Python 3.11). Default: pip resolves the pins on the device.")] = None,
    force: ForceFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """A folder for a Raspberry Pi: the model, the pinned runtime half (no torch), README, install and run scripts."""
    from edgecnn.device.pack import pack_model

    result = pack_model(model, out, force=force, platform=platform)
    if json_out:
        return show_json(result)
    console.print(f"{result['bundle']}: {', '.join(f for f in result['files'] if not f.startswith('wheels/') or f == result['wheel'])}")
    if platform:
        wheels = sum(f.startswith("wheels/") for f in result["files"]) - 1
        console.print(f"wheels/: edgecnn's and {wheels} more for {platform}; install.sh installs from them offline", highlight=False)
        for name, change in result["repinned"].items():
            console.print(f"pinned for {platform}, not as installed here: {name} {change}", highlight=False)
    console.print(f"on the Pi: cd {Path(result['bundle']).name} && ./install.sh && ./run.sh --source picamera")


@command
def verify_arm(
    model: Annotated[Optional[Path], typer.Argument(help=".onnx file (or --bundle).")] = None,
    bundle: Annotated[Optional[Path], typer.Option(help="A bundle from pack --platform bookworm-arm64 instead of a model: its install.sh (offline) "
                                                       "and run.sh in the emulated Pi, top-1 per frame vs this host.")] = None,
    video: Annotated[Optional[Path], typer.Option(help="With --bundle: the video both sides classify (keep it short: ~1 s a frame emulated for Lite0).")] = None,
    cpu: Annotated[str, typer.Option(help="pi4 (Cortex-A72) or pi5 (Cortex-A76).")] = "pi4",
    data: Annotated[Optional[Path], typer.Option(help="Run folder or .npz (default: the model's run, else random inputs).")] = None,
    samples: Annotated[int, typer.Option(min=1, help="Samples compared, for --bundle the video's first frames (emulation is ~300× slower than a Pi).")] = 200,
    setup: Annotated[bool, typer.Option("--setup", help="Build the cached arm64 rootfs and aarch64 wheels if missing (downloads, logged).")] = False,
    cache: Annotated[Optional[Path], typer.Option(help="Cache folder (default: ~/.cache/edgecnn/arm).")] = None,
    mirror: Annotated[Optional[str], typer.Option(help="Debian mirror for --setup (default: the one apt uses).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Outputs on aarch64 onnxruntime under QEMU vs this host: fp32 max |Δ| ≤ 1e-4, int8 bit-exact, same top-1.
    With --bundle: the bundle installed and run as on a Pi, the same top-1 label on every video frame."""
    from edgecnn.device.arm import verify_arm as verify
    from edgecnn.device.emulated_pi import verify_bundle

    if (model is None) == (bundle is None):
        raise EdgecnnError("verify-arm takes a MODEL or --bundle BUNDLE --video FILE, " + ("not both" if model else "got neither"))
    if bundle is None and video is not None:
        raise EdgecnnError("--video goes with --bundle (a MODEL is compared on --data)")
    if bundle is not None and data is not None:
        raise EdgecnnError("--data goes with a MODEL (a --bundle is compared on --video)")
    if bundle is not None and video is None:
        raise EdgecnnError("--bundle needs --video FILE: the video run.sh classifies in the emulated Pi and here")
    if bundle is not None:
        result = verify_bundle(bundle, video, cpu=cpu, samples=samples, setup=setup, cache=cache, mirror=mirror,
                               log=lambda line: typer.echo(line, err=True))
    else:
        result = verify(model, cpu=cpu, data=data, samples=samples, setup=setup, cache=cache, mirror=mirror,
                        log=lambda line: typer.echo(line, err=True))
    if json_out:
        show_json(result)
    elif bundle is not None:
        frames = result["frames"]
        console.print(
            f"{result['bundle']} ({result['model']}) installed offline on {result['cpu']} emulated ({result['qemu_cpu']}) in "
            f"{result['install_seconds']:.0f} s; {frames['arm']} frames of {result['video']} vs {frames['host']} here: top-1 agreement "
            f"{100 * result['label_agreement']:.1f}% → {'PASS' if result['passed'] else 'FAIL'} ({result['criterion']})",
            highlight=False,
        )
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
