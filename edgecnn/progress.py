"""Progress for work that takes more than a couple of seconds: on a terminal, a rich bar or a step
line on stderr; nothing when output is not a terminal or the caller asked for none (--json)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_stderr = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A bar of `total` steps (None: open-ended); the callback it yields advances it with a note."""
    shown = enabled and _stderr.is_terminal
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"), TimeElapsedColumn())
    with Progress(*columns, console=_stderr, transient=True, disable=not shown) as progress:
        task = progress.add_task(description, total=total, note="")
        yield lambda note="": progress.update(task, advance=1, note=note)


def step(text: str, enabled: bool = True) -> None:
    """One line saying what a long chain does now."""
    if enabled and _stderr.is_terminal:
        _stderr.print(f"→ {text}", highlight=False, markup=False)
