"""The one typer app and what every command shares: one-line errors, JSON output, common flags."""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from edgecnn.errors import EdgecnnError
from edgecnn.files import FULL


def _shown_on_one_line(exc: BaseException) -> None:
    """A usage error (bad flag value, unknown option or command) prints `error: MESSAGE` alone,
    as edgecnn's own errors do, not the usage text and a hint above it."""
    if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message") and type(exc).__name__ != "NoArgsIsHelpError":
        exc.show = lambda file=None: typer.echo(f"error: {exc.format_message()}", err=True)


class OneLineUsageErrors(TyperGroup):
    """The app's group: usage errors from it and from every command below it are one line."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except Exception as exc:
            _shown_on_one_line(exc)
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            _shown_on_one_line(exc)
            raise


app = typer.Typer(
    cls=OneLineUsageErrors,
    help="Small CNNs from training to a measured, int8, pruned ONNX model on an edge device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain output, no boxes
    context_settings={"max_content_width": 110},
)
console = Console()


def _version(value: bool) -> None:
    if value:
        from edgecnn import __version__

        typer.echo(f"edgecnn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Small CNNs from training to a measured, int8, pruned ONNX model on an edge device."""

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ForceFlag = Annotated[bool, typer.Option("--force", help="Overwrite existing artifacts.")]
ProviderOpt = Annotated[str, typer.Option(help="Execution provider: cpu, cuda, tensorrt, openvino, xnnpack, acl.")]
TargetOpt = Annotated[str, typer.Option(help="Where the model is deployed: ort (any ONNX Runtime program, default options), onnx (standard ONNX only), host (edgecnn's own session here), pi4, pi5, openvino, cuda, tensorrt.")]
DeviceIdOpt = Annotated[int, typer.Option(min=0, help="GPU for cuda and tensorrt.")]
StrictFlag = Annotated[bool, typer.Option("--strict", help="An error, not a silent CPU fallback, for a node the provider cannot run.")]
EpOpt = Annotated[Optional[list[str]], typer.Option("--ep", help="Provider option KEY=VALUE, repeatable: cudnn_search, trt_fp16, trt_int8, cache_dir, cuda_graph, openvino_device, openvino_threads.")]


def one_line_errors(fn):
    """User mistakes print one line and exit with code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgecnnError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # a full disk met outside edgecnn's own writers: a library's temporary file
            if exc.errno not in FULL:
                raise
            typer.echo(f"error: could not write {exc.filename or 'a temporary file'}: {exc.strerror}; nothing was kept", err=True)
            raise typer.Exit(2) from None

    return wrapper


def command(fn):
    """Register a command whose user mistakes print one line and exit with code 2."""
    return app.command(name=fn.__name__.rstrip("_").replace("_", "-"))(one_line_errors(fn))


MAX_TABLE_CLASSES = 20  # past this a confusion matrix no longer fits a terminal


WideFlag = Annotated[bool, typer.Option("--wide", help="Every column, however narrow the terminal (--json has everything).")]


def fitted_table(header: list[str], rows: list[list[str]], secondary: tuple[str, ...] = (), wide: bool = False, **kwargs: Any) -> Table:
    """A table that stays readable at 80 columns: secondary columns only with --wide, no vertical
    rules, and a cell too long for its column folded onto the next line, never cut."""
    keep = [i for i, name in enumerate(header) if wide or name not in secondary]
    table = Table(*(header[i] for i in keep), box=box.SIMPLE_HEAD, pad_edge=False, **kwargs)
    for column in table.columns:
        column.overflow = "fold"
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


def show_json(result: Any) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


def kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def print_report(report: dict[str, Any], wide: bool = False) -> None:
    """A run's table (report.md has it as Markdown) and the notes on what the int8 search and pruning decided."""
    batches = sorted({int(b) for r in report["rows"] for b in r["latency"]})
    header = ["variant", "accuracy", "Δ pt", "params", "MACs", "KiB"] + [f"{kind} b{b}" for b in batches for kind in ("p50 ms", "speedup")]
    rows = []
    for r in report["rows"]:
        cells = [r["variant"], _fmt(r["accuracy"], lambda v: f"{100 * v:.2f}%"), _fmt(r["delta_points"], lambda v: f"{v:+.2f}"),
                 _fmt(r.get("params"), lambda v: f"{v:,}"), _fmt(r.get("macs"), lambda v: f"{v:,}"), _fmt(r.get("size_bytes"), lambda v: f"{v / 1024:.1f}")]
        for b in batches:
            t = r["latency"].get(b) or r["latency"].get(str(b)) or {}
            cells += [_fmt(t.get("p50_ms"), lambda v: f"{v:.3f}"), _fmt(t.get("speedup"), lambda v: f"{v:.2f}×")]
        rows.append(cells)
    secondary = ("params", "MACs", *(f"p50 ms b{b}" for b in batches[1:]))
    console.print(fitted_table(header, rows, secondary=secondary, wide=wide))
    for note in report["notes"]:
        console.print(f"- {note}", markup=False, highlight=False)


def _fmt(value: Any, spec: Any) -> str:
    return "–" if value is None else spec(value)
