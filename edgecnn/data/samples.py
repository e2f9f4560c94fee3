"""Where a command's samples come from: an .npz file, a run folder's dataset, or the model's own run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgecnn.data.registry import load_dataset
from edgecnn.data.splits import Dataset, Split, load_npz
from edgecnn.errors import EdgecnnError
from edgecnn.files import atomic_path
from edgecnn.run import Run


def load_run_dataset(run: Path) -> Dataset:
    """The dataset a run folder's recipe.json names, with its options."""
    recipe = Run(run).recipe_json
    if not recipe.is_file():
        raise EdgecnnError(f"{run} is not a run folder (no recipe.json); give a run folder or an .npz with x and y")
    try:
        spec = json.loads(recipe.read_text())
        return load_dataset(spec["dataset"], **spec.get("dataset_options", {}))
    except (json.JSONDecodeError, KeyError):
        raise EdgecnnError(f"{recipe} is not a recipe written by edgecnn train") from None


def resolve_splits(data: Path | None, model: Path, *splits: str) -> list[tuple[Split, str]]:
    """Samples for a model, one entry per split asked for, loading the data once: an .npz file
    (the same samples for every split), a run folder's splits, or those of the model's own run."""
    if data is None:
        run = Run.of(model)
        if run is None:
            raise EdgecnnError(f"{model} is not inside a run folder; pass --data RUN or --data file.npz")
        data = run.root
    data = Path(data)
    if data.suffix == ".npz":
        return [(load_npz(data), str(data))] * len(splits)
    if not data.exists():
        raise EdgecnnError(f"data {data} not found; give a run folder or an .npz with x and y")
    kept = Run(data).test_npz
    if set(splits) == {"test"} and kept.is_file():  # what training kept: no dataset loader, no training half
        with np.load(kept) as npz:
            split, source = Split(npz["x"], npz["y"]), str(npz["source"])
        return [(split, f"{source} (test split, kept in {kept.name})")] * len(splits)
    dataset = load_run_dataset(data)
    return [(dataset.split(name), f"{dataset.source} ({name} split)") for name in splits]


TEST_NPZ_MAX_BYTES = 64 << 20  # larger test splits (photo folders) are read from their dataset each time


def keep_test_split(run: Run, dataset: Dataset) -> Path | None:
    """Write the test split into the run as test.npz, where it is small enough to travel with it."""
    test = dataset.test
    if test.x.nbytes + test.y.nbytes > TEST_NPZ_MAX_BYTES:
        return None
    with atomic_path(run.test_npz, force=True) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, x=test.x, y=test.y, source=np.array(dataset.source))
    return run.test_npz


def resolve_split(data: Path | None, model: Path, split: str) -> tuple[Split, str]:
    """Samples of one split for a model; see resolve_splits."""
    return resolve_splits(data, model, split)[0]
