"""Datasets by name: a plain dict filled by a decorator, loud on duplicates and unknown options."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from edgecnn.data.splits import Dataset
from edgecnn.errors import EdgecnnError

LOADERS: dict[str, Callable[..., Dataset]] = {}


def register(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
    name = fn.__name__.removeprefix("load_")
    if name in LOADERS:
        raise ValueError(f"dataset {name!r} is registered twice")
    LOADERS[name] = fn
    return fn


def load_dataset(name: str, **options) -> Dataset:
    """Load a registered dataset by name."""
    if name not in LOADERS:
        raise EdgecnnError(f"unknown dataset {name!r} (accepted: {', '.join(sorted(LOADERS))})")
    accepted = inspect.signature(LOADERS[name]).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise EdgecnnError(
            f"dataset {name!r} takes no option {', '.join(map(repr, unknown))} (accepted: {', '.join(accepted) or 'none'})"
        )
    return LOADERS[name](**options)
