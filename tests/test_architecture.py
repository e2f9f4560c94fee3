"""The wings' import rules: each wing imports only the ones below it, so no import cycle can form."""

import ast
from pathlib import Path

import edgecnn

ROOT = Path(edgecnn.__file__).parent
# wing → the wings it may import (errors and files, the shared floor, go unlisted)
ALLOWED = {
    "run": set(),
    "graph": set(),
    "runtime": {"graph", "run"},
    "data": {"runtime", "run"},
    "quantize": {"graph", "runtime", "data", "run"},
    "device": {"runtime", "data", "run"},
    "train": {"graph", "runtime", "data", "run", "recipes"},
    "measure": {"runtime", "data", "run"},
    "report": {"graph", "runtime", "run"},
    "pipeline": {"train", "quantize", "measure", "report", "runtime", "data", "run"},
    "engine": set(),
    "sweep": {"engine", "pipeline", "train", "report", "runtime", "run", "recipes"},
    "cli": {"train", "quantize", "runtime", "device", "data", "measure", "report", "pipeline", "sweep", "run", "recipes"},
}
SHARED = {"errors", "files", "progress", "__init__", "__version__"}


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if parts[0] == "edgecnn" and len(parts) > 1 else parts[0]


def _imports(path: Path) -> set[str]:
    """Every edgecnn module or recipes a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found.update(n for n in names if n.split(".")[0] in ("edgecnn", "recipes"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in ("edgecnn", "recipes"))
    return found


def test_each_wing_imports_only_the_wings_below_it():
    broken = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        wing = _wing(".".join(rel.parts))
        if wing in SHARED:
            continue
        for target in _imports(path):
            other = _wing(target)
            if other not in (wing, *SHARED, "edgecnn") and other not in ALLOWED[wing]:
                broken.append(f"{'/'.join(rel.parts)}.py imports {target}")
    assert broken == []


def test_every_wing_is_covered_by_the_rules():
    wings = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("_")} | {p.stem for p in ROOT.glob("*.py")}
    assert wings - SHARED == set(ALLOWED)
