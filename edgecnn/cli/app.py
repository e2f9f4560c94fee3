"""The one typer app and what every command shares: one-line errors, JSON output, common flags."""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

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
DeviceIdOpt = Annotated[int, typer.Option(help="GPU for cuda and tensorrt.")]
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
