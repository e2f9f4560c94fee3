"""EfficientNet-Lite0 int8 against fp32 on real photos: top-1 agreement and the softmax KL divergence.

Lite0 (the published ImageNet weights) is exported to fp32 ONNX and quantized to int8 several
ways, each calibrated on the photo set's calibration views (edgecnn/data/photos.py, `make photos`).
Every int8 model is then checked on the views of the *other* photos:
top-1 agreement with fp32, mean KL(fp32 ‖ int8) of the softmax, and the mean top-1 probability
of each (the confidence an int8 model can lose). Target: agreement ≥ 95%.
Where OpenVINO is installed, lite0_imagenet's own int8 (percentile) is also checked as the OpenVINO
runtime runs it, and beside it NNCF's int8 of the same file (OpenVINO's own quantizer, calibrated on
the same views; `reference_int8.py`, needs NNCF): what a user who picks OpenVINO instead gets. The
reference is always ONNX Runtime's fp32.
Writes benchmarks/results/lite0_photos.json.

    .venv/bin/python benchmarks/lite0_photos.py [--configs default,nearest,percentile,percentile-nearest,per-tensor] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from reference_int8 import NNCF, nncf_int8

from edgecnn.data.photos import VIEWS, PhotoSet, photo_set
from edgecnn.files import write_json
from edgecnn.quantize.model import QuantConfig, quantize_model
from edgecnn.runtime.agreement import DECISIVE, output_agreement
from edgecnn.runtime.bench import machine_info
from edgecnn.runtime.openvino import open_session
from edgecnn.runtime.session import Session
from edgecnn.train.export import export_run
from edgecnn.train.fit import train
from recipes.lite0 import LITE0_PREPROCESS

RESULTS = Path(__file__).parent / "results"
TARGET = 0.95
OPENVINO = importlib.util.find_spec("openvino") is not None
CONFIGS = {  # name → the quantizer settings tried (edgecnn's defaults: QDQ, u8s8, per-channel weights, min-max, GPTQ rounding)
    "default": QuantConfig(),
    "nearest": QuantConfig(rounding="nearest"),
    "percentile": QuantConfig(method="percentile"),
    "percentile-nearest": QuantConfig(method="percentile", rounding="nearest"),
    "per-tensor": QuantConfig(per_channel=False),
}


def agreement_row(name: str, label: str, runtime: str, model: Path, seconds: float, photos: PhotoSet, logits: dict[str, np.ndarray],
                  threads: int | None) -> dict[str, Any]:
    """One int8 model against fp32's logits on the check and calibration views, run in `runtime`."""
    session = open_session(model, runtime, threads=threads)
    row = {
        "config": name, "label": label, "runtime": runtime, "calibration_samples": len(photos.calibration), "quantize_seconds": round(seconds, 1),
        "size_bytes": model.stat().st_size,
        **{f"{split}_{k}": v for split, x in (("check", photos.check.x), ("calibration", photos.calibration.x))
           for k, v in output_agreement(logits[split], session.predict(x), session.card).items()},
    }
    print(f"{name:>18} in {runtime:<11} | agreement {row['check_top1_agreement']:.1%} | KL {row['check_mean_kl']:.4f}"
          f" | top-1 p {row['check_reference_top1_probability']:.2f}→{row['check_top1_probability']:.2f} ({seconds:.0f} s)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"photo-calibrated configurations (accepted: {', '.join(CONFIGS)})")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads for inference (default: every core)")
    args = parser.parse_args()
    names = [c for c in args.configs.split(",") if c]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)} (accepted: {', '.join(CONFIGS)})")

    photos = photo_set(LITE0_PREPROCESS.to_dict())
    calib_photos = sorted({photos.photos[i] for i in photos.calibration.y.tolist()})
    check_photos = sorted({photos.photos[i] for i in photos.check.y.tolist()})
    print(photos.source)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lite0-photos-") as tmp:
        run = Path(tmp) / "lite0"
        train("lite0_imagenet", run, show_progress=False)  # 0 epochs: the published weights
        fp32 = Path(export_run(run)["model"])
        calib = Path(tmp) / "photo-calibration.npz"
        np.savez(calib, x=photos.calibration.x, y=photos.calibration.y)
        reference = Session(fp32, threads=args.threads)
        logits = {"check": reference.predict(photos.check.x), "calibration": reference.predict(photos.calibration.x)}
        for name in names:
            config = CONFIGS[name]
            t0 = time.perf_counter()
            quantized = quantize_model(fp32, config, calib=calib, samples=len(photos.calibration), out=Path(tmp) / f"int8-{len(rows)}.onnx")
            seconds = time.perf_counter() - t0
            runtimes = ("onnxruntime", "openvino") if name == "percentile" and OPENVINO else ("onnxruntime",)  # lite0_imagenet's own also as the openvino target runs it
            for runtime in runtimes:
                rows.append(agreement_row(name, config.label(), runtime, quantized.model, seconds, photos, logits, args.threads))
        if NNCF and OPENVINO:
            t0 = time.perf_counter()
            model = nncf_int8(fp32, photos.calibration.x, Path(tmp) / "nncf.int8.onnx")
            rows.append(agreement_row("nncf", "NNCF defaults (OpenVINO's quantizer)", "openvino", model, time.perf_counter() - t0, photos, logits, args.threads))

    print()
    print(f"| int8 config | runs in | check: top-1 agreement | check: agreement where fp32 leads by ≥ {DECISIVE} "
          "| check: mean KL(fp32‖int8) | check: top-1 prob fp32→int8 | check: views flipped (fp32's widest lead among them) | calibration views: agreement |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['runtime']} | {r['check_top1_agreement']:.1%} | {r['check_decisive_agreement']:.1%} "
              f"({r['check_decisive_share']:.0%} of views) | {r['check_mean_kl']:.4f} | "
              f"{r['check_reference_top1_probability']:.3f} → {r['check_top1_probability']:.3f} | {r['check_flipped']} ({r['check_flipped_widest_lead'] or 0:.3f}) | {r['calibration_top1_agreement']:.1%} |")
    best = max((r for r in rows if r["config"] in CONFIGS), key=lambda r: r["check_top1_agreement"], default=None)
    result = {
        "target_agreement": TARGET,
        "reached": best is not None and best["check_top1_agreement"] >= TARGET,
        "best": best and best["label"],
        "photos": {"source": photos.source, "views_per_photo": len(VIEWS), "calibration": calib_photos, "check": check_photos,
                   "calibration_views": len(photos.calibration), "check_views": len(photos.check)},
        "rows": rows,
        "machine": {**machine_info(), "threads": args.threads},
        "command": "benchmarks/lite0_photos.py --configs " + ",".join(names),
    }
    path = write_json(RESULTS / "lite0_photos.json", result, force=True)
    print(f"\n{'reached' if result['reached'] else 'missed'} {TARGET:.0%} agreement (best: {result['best']}); wrote {path}")


if __name__ == "__main__":
    main()
