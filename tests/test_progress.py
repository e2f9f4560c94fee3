"""Progress shows on a terminal and nowhere else."""

import subprocess
import sys

CODE = """
from edgecnn.progress import progress_bar, step
step("export to ONNX")
with progress_bar("fine-tune digits", 3) as advance:
    for epoch in range(3):
        advance(f"val_acc 0.9{epoch}")
print("done")
"""


def test_nothing_is_shown_when_output_is_not_a_terminal():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert done.stdout == "done\n" and done.stderr == ""


def test_a_terminal_sees_the_steps_and_the_bar():
    """util-linux's script (Debian's essential bsdutils) runs the code on a pseudo-terminal."""
    done = subprocess.run(["script", "-qec", f"{sys.executable} -c '{CODE}'", "/dev/null"], capture_output=True, text=True, check=True)
    assert "→ export to ONNX" in done.stdout and "fine-tune digits" in done.stdout and "val_acc 0.92" in done.stdout
