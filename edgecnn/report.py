"""One table per run (Markdown + JSON) from its recorded eval and bench results, and the Pareto plot.

A result whose model has changed since it was measured is left out and named, never reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.errors import EdgecnnError
from edgecnn.files import read_json, save_png, write_json, write_text
from edgecnn.graph.count import count_macs, count_params
from edgecnn.run import Run, file_digest, holds_run
from edgecnn.runtime.agreement import DECISIVE
from edgecnn.runtime.providers import known_provider
from edgecnn.runtime.session import load_onnx
from edgecnn.runtime.targets import TARGETS

BASELINE = "fp32"


def _variant_order(variant: str) -> tuple[int, str]:
    return (variant.count(".") + ("int8" in variant), variant)


def current(run: Run, result: dict[str, Any], digests: dict[str, str | None]) -> bool:
    """Whether a recorded result measured the variant's model as it is now (by content hash)."""
    model = run.model(result["variant"])
    if model.name not in digests:
        digests[model.name] = file_digest(model) if model.is_file() else None
    return digests[model.name] is not None and digests[model.name] == result.get("model_sha256")


def collect_rows(run: Path, provider: str = "cpu") -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str], dict[str, dict[str, Any]]]:
    """One row per variant with accuracy and, where benched, latency at each batch size; results
    whose model has changed since are left out and named in the notes."""
    run = Run(run)
    if not run.root.is_dir():
        raise EdgecnnError(f"run folder {run.root} not found")
    bench_file = run.bench_json(provider)
    bench = read_json(bench_file) if bench_file.is_file() else None
    evals = [read_json(p) for p in run.evals()]
    if not evals and bench is None:
        raise EdgecnnError(f"{run.root} has no eval-*.json or {bench_file.name}; run `edgecnn eval` and `edgecnn bench` on its models first")
    digests: dict[str, str | None] = {}
    fresh = {e["variant"]: e for e in evals if current(run, e, digests)}
    stale = [f"{run.eval_json(e['variant']).name}" for e in evals if e["variant"] not in fresh]
    timings: dict[str, dict[int, dict[str, Any]]] = {}
    for result in (bench or {}).get("results", []):
        if current(run, result, digests):
            timings.setdefault(result["variant"], {})[result["batch"]] = result
        elif f"{bench_file.name} ({result['variant']})" not in stale:
            stale.append(f"{bench_file.name} ({result['variant']})")
    rows = []
    base_acc = fresh.get(BASELINE, {}).get("accuracy")
    for variant in sorted(set(fresh) | set(timings), key=_variant_order):
        acc = fresh.get(variant, {}).get("accuracy")
        row: dict[str, Any] = {
            "variant": variant,
            "accuracy": acc,
            "delta_points": None if acc is None or base_acc is None else 100 * (acc - base_acc),
            **_model_figures(run.model(variant)),
            "latency": {},
        }
        for batch, t in sorted(timings.get(variant, {}).items()):
            base = timings.get(BASELINE, {}).get(batch)
            row["latency"][batch] = {
                "p50_ms": t["p50_ms"],
                "p99_ms": t["p99_ms"],
                "throughput": t["throughput"],
                "speedup": None if base is None else base["p50_ms"] / t["p50_ms"],
            }
        rows.append(row)
    notes = [
        f"{what} measured an earlier or missing model, so it is left out: run `edgecnn eval` or `edgecnn bench` on the model again"
        for what in stale
    ]
    return rows, bench, notes, fresh


def _model_figures(model: Path) -> dict[str, Any]:
    if not model.is_file():
        return {"params": None, "macs": None, "size_bytes": None}
    onnx_model = load_onnx(model)
    return {"params": count_params(onnx_model), "macs": count_macs(onnx_model), "size_bytes": model.stat().st_size}


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The run's table: accuracy, Δ, params, MACs, size, latency at batch 1, throughput at larger batches."""
    batches = sorted({b for r in rows for b in r["latency"]})
    small, larger = (batches[0], batches[1:]) if batches else (None, [])
    head = ["variant", "accuracy", "Δ vs fp32", "params", "MACs", "size"]
    if small is not None:
        head += [f"p50 b{small}", f"p99 b{small}", f"speedup b{small}"]
    for b in larger:
        head += [f"throughput b{b}", f"speedup b{b}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["variant"],
            _fmt(None if r["accuracy"] is None else 100 * r["accuracy"], ".2f", "%"),
            _fmt(r["delta_points"], "+.2f", " pt"),
            _fmt(r.get("params"), ","),
            _fmt(r.get("macs"), ","),
            _fmt(None if r.get("size_bytes") is None else r["size_bytes"] / 1024, ".1f", " KiB"),
        ]
        if small is not None:
            t = r["latency"].get(small, {})
            cells += [_fmt(t.get("p50_ms"), ".3f", " ms"), _fmt(t.get("p99_ms"), ".3f", " ms"), _fmt(t.get("speedup"), ".2f", "×")]
        for b in larger:
            t = r["latency"].get(b, {})
            cells += [_fmt(t.get("throughput"), ",.0f", "/s"), _fmt(t.get("speedup"), ".2f", "×")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pareto_front(rows: list[dict[str, Any]], batch: int) -> list[str]:
    """Variants no other variant beats on both accuracy and p50 latency at `batch`."""
    points = [
        (r["variant"], r["accuracy"], r["latency"][batch]["p50_ms"])
        for r in rows
        if r["accuracy"] is not None and batch in r["latency"]
    ]
    return [
        v
        for v, acc, lat in points
        if not any((a >= acc and l <= lat) and (a > acc or l < lat) for _, a, l in points)
    ]


def plot_pareto(rows: list[dict[str, Any]], batch: int, path: Path, title: str) -> Path | None:
    """pareto.png (pareto_figure); None without matplotlib or without a variant to plot."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = pareto_figure(rows, batch, title)
    if fig is None:
        return None
    save_png(fig, path)
    plt.close(fig)
    return path


def pareto_figure(rows: list[dict[str, Any]], batch: int, title: str) -> Any:
    """Accuracy against p50 latency, the Pareto front drawn where it joins two or more variants."""
    import matplotlib.pyplot as plt

    front = set(pareto_front(rows, batch))
    pts = [(r["variant"], r["latency"][batch]["p50_ms"], 100 * r["accuracy"]) for r in rows if r["accuracy"] is not None and batch in r["latency"]]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, lat, acc in pts:
        ax.scatter(lat, acc, s=60, color="tab:red" if variant in front else "tab:gray", zorder=3)
        ax.annotate(variant, (lat, acc), textcoords="offset points", xytext=(5, 5))
    front_pts = sorted((lat, acc) for v, lat, acc in pts if v in front)
    if len(front_pts) > 1:
        ax.plot([p[0] for p in front_pts], [p[1] for p in front_pts], color="tab:red", linestyle="--", label="Pareto front")
        ax.legend(loc="best")
    ax.margins(0.15)
    low, high = ax.get_ylim()
    ax.set_ylim(low, min(high, 100.0))  # no accuracy above 100%
    ax.set_xlabel(f"p50 latency at batch {batch} (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


MAX_CONFUSION_INCHES = 16.0  # 1,000 ImageNet classes at 0.45 in each would be a 45,000-pixel square (7.6 GiB to draw)


def plot_confusion(result: dict[str, Any], path: Path) -> Path | None:
    """An eval result's confusion matrix as a picture, true classes down, predicted across; None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    matrix, labels = np.array(result["confusion"]), result["labels"]
    side = min(max(4.0, 0.45 * len(labels) + 2), MAX_CONFUSION_INCHES)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(matrix, cmap="Blues")
    if len(labels) <= 30:  # past this the numbers are unreadable; the colours still show where the errors are
        for (i, j), n in np.ndenumerate(matrix):
            ax.text(j, i, str(n), ha="center", va="center", color="white" if n > matrix.max() / 2 else "black", fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=90)
        ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result['variant']}: {100 * result['accuracy']:.2f}% on {result['samples']} samples")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return path


def _slower_notes(rows: list[dict[str, Any]]) -> list[str]:
    """Say so when a compressed variant is slower than fp32 at some batch."""
    notes = []
    for r in rows:
        slower = [f"b{b} {t['speedup']:.2f}×" for b, t in r["latency"].items() if t["speedup"] is not None and t["speedup"] < 1.0]
        if slower and r["variant"] != BASELINE:
            notes.append(
                f"{r['variant']} is slower than fp32 ({', '.join(slower)}): too small a net for int8 to pay, or a config "
                "that does not suit this CPU; `edgecnn quantize-search` keeps fp32 in that case"
            )
    return notes


def _decision_notes(run: Run) -> list[str]:
    """What the int8 search and pruning decided, in a line each."""
    notes = []
    for path in run.decisions():
        d = read_json(path)
        notes.append(f"int8 search on {Path(d['model']).name} (target {d.get('target', 'host')}, batches {d['batches']}): {d['reason']}")
    for path in run.prune_records():
        p = read_json(path)
        if not p.get("kept", True):
            tried = ", ".join(f"{t['ratio']}: {-t['val_drop_points']:+.2f} pt" for t in p["tried"])
            notes.append(f"{p['method']} pruning: {p['note']} (tried {tried})")
            continue
        notes.append(
            f"{p['method']} pruning, ratio {p['ratio']}: channels {p['channels']['before']} → {p['channels']['after']}, "
            f"{p['macs_reduction']:.2f}× fewer MACs; its Δ comes after {p['finetune_epochs']} fine-tuning epochs on top of "
            f"fp32's {p['trained_epochs']}, and part of a gain is those epochs"
            + (f"; {p['note']}" if "note" in p else "")
        )
    return notes


def _agreement_notes(evals: dict[str, dict[str, Any]]) -> list[str]:
    """How each variant follows its fp32 source where the pipeline compared them (photos no label covers)."""
    notes = []
    for variant, result in evals.items():
        a = result.get("agreement")
        if a:
            decisive = "" if a["decisive_agreement"] is None else f" ({a['decisive_agreement']:.1%} where fp32 leads by ≥ {DECISIVE})"
            notes.append(
                f"{variant} against {Path(a['reference']).name} on {a['samples']} views of photos that did not calibrate it: top-1 agreement "
                f"{a['top1_agreement']:.1%}{decisive}, mean KL(fp32 ‖ {variant}) {a['mean_kl']:.4f}, top-1 probability "
                f"{a['reference_top1_probability']:.3f} → {a['top1_probability']:.3f}"
            )
    return notes


@holds_run(lambda run, **_: Run.existing(run))
def build_report(run: Path, provider: str = "cpu", force: bool = True) -> dict[str, Any]:
    """Write report.md, report.json and pareto.png into the run folder."""
    run = Run(run)
    known_provider(provider)  # an unknown name is one line, not a missing bench-NAME.json
    rows, bench, stale_notes, evals = collect_rows(run.root, provider)
    confusion = [plot_confusion(result, run.confusion_png(variant)) for variant, result in evals.items()]
    table = markdown_table(rows)
    machine = (bench or {}).get("machine", {})
    goal = TARGETS.get((bench or {}).get("target", "host"), TARGETS["host"])  # a bench from before targets: edgecnn's session
    openvino = f"OpenVINO {machine['openvino']}, " if "openvino" in machine else ""
    context = (
        f"\n{machine.get('cpu', '?')} ({machine.get('machine', '?')}), onnxruntime {machine.get('onnxruntime', '?')}, {openvino}"
        f"target {goal.name} ({goal.loaded_as()}), "
        f"provider {provider}, {bench['threads']} thread(s), {bench['runs']} interleaved runs after {bench['warmup']} warm-up\n"
        if bench
        else ""
    )
    notes = _decision_notes(run) + _agreement_notes(evals) + _slower_notes(rows) + stale_notes
    notes_md = "".join(f"- {n}\n" for n in notes)
    write_text(run.report_md, f"# {run.name}\n\n{table}{context}\n{notes_md}", force=force)
    batches = sorted({b for r in rows for b in r["latency"]})
    pareto = plot_pareto(rows, batches[0], run.pareto_png, run.name) if batches else None
    report = {
        "run": str(run.root),
        "provider": provider,
        "rows": rows,
        "machine": machine,
        "pareto_front": pareto_front(rows, batches[0]) if batches else [],
        "table_markdown": table,
        "notes": notes,
        "pareto_png": str(pareto) if pareto else None,
        "confusion_png": [str(c) for c in confusion if c],
    }
    write_json(run.report_json, report, force=force)
    return report
