"""The README's session block runs top to bottom as written, and its hand-run report equals the pipeline's."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
MARKER = "One session on the digits recipe, top to bottom"


def session_commands() -> list[str]:
    """The shell lines of the first sh block after the marker, comments stripped."""
    text = README.read_text()
    block = re.search(r"```sh\n(.*?)```", text[text.index(MARKER):], flags=re.S).group(1)
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [shlex.join(words) for words in lines if words]


def test_the_session_block_is_what_the_readme_promises():
    commands = session_commands()
    assert commands[0] == "edgecnn recipes" and commands[-1].startswith("edgecnn pipeline digits")
    assert any(c.startswith("edgecnn report runs/digits") for c in commands)
    assert all(c.startswith("edgecnn ") for c in commands)


@pytest.mark.slow
def test_the_readme_session_runs_top_to_bottom(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "120"}
    by_hand = None
    for command in session_commands():
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        if command.startswith("edgecnn report"):
            by_hand = json.loads((tmp_path / "runs/digits/report.json").read_text())
    pipeline = json.loads((tmp_path / "runs/digits/report.json").read_text())
    assert by_hand is not None
    assert [r["variant"] for r in by_hand["rows"]] == [r["variant"] for r in pipeline["rows"]] == ["fp32", "int8", "pruned.fp32", "pruned.int8"]
    assert by_hand["table_markdown"].splitlines()[0] == pipeline["table_markdown"].splitlines()[0]
    assert by_hand["rows"][0]["accuracy"] == pipeline["rows"][0]["accuracy"]  # same recipe, same seed: the same fp32 model
    assert all(r["accuracy"] is not None and r["latency"] for r in by_hand["rows"])
