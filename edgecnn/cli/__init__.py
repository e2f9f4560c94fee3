"""The edgecnn command line: each command parses, calls one library function and prints the result.

Command modules register on one app, the training half's first so that `--help` lists them first;
the runtime and device commands import no torch, and the training half's import it only when they run.
"""

from edgecnn.cli import train, sweep, quantize, runtime, device  # noqa: F401,I001  (registration order is the help order)
from edgecnn.cli.app import app

__all__ = ["app"]
