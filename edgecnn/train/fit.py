"""Fit loop: progress bar per epoch, history, per-epoch checkpoint and resume."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from edgecnn.data import Dataset, Split, keep_test_split, load_dataset
from edgecnn.errors import EdgecnnError
from edgecnn.files import atomic_path, read_json, refuse_overwrite, save_png, write_json
from edgecnn.progress import progress_bar
from edgecnn.run import Run, holds_run
from edgecnn.train.augment import get_augment
from edgecnn.train.nets import build_net, count_params, load_pretrained, resize_to_state_dict
from recipes import Recipe, get_recipe

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("onecycle", "constant")


def recipe_from_run(run: Path) -> Recipe:
    """The recipe a run folder was trained with, as its recipe.json records it."""
    return Recipe.from_json(read_json(Run(run).recipe_json))


def load_trained(run: Path, weights: Path | None = None) -> tuple[nn.Module, Recipe]:
    """The trained net of a run folder (weights_only load of its model.pt) and its recipe."""
    run = Path(run)
    recipe = recipe_from_run(run)
    weights = Path(weights) if weights else Run(run).weights()
    if not weights.is_file():
        raise EdgecnnError(f"{weights} not found; run `edgecnn train {recipe.name} --out {run}` first")
    net = build_net(recipe.net, **_net_kwargs(recipe))
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        resize_to_state_dict(net, state).load_state_dict(state)
    except Exception as exc:  # torch raises several types for a foreign or damaged file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EdgecnnError(f"{weights} is not a state_dict of net {recipe.net!r} ({reason})") from None
    return net.eval(), recipe


def _net_kwargs(recipe: Recipe) -> dict[str, Any]:
    return {"num_classes": 1 if recipe.output == "sigmoid" else len(recipe.labels)}


def _loss(recipe: Recipe, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if recipe.output == "sigmoid":
        return nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y.float())
    return nn.functional.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)


def _correct(recipe: Recipe, logits: torch.Tensor, y: torch.Tensor) -> int:
    pred = (logits[:, 0] > 0).long() if recipe.output == "sigmoid" else logits.argmax(1)
    return int((pred == y).sum())


def _optimizer(recipe: Recipe, net: nn.Module) -> torch.optim.Optimizer:
    params = net.parameters()
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "rmsprop":
        # Keras' rho 0.9 and epsilon 1e-7, which every seed's 'rmsprop' means (torch defaults: 0.99, 1e-8)
        return torch.optim.RMSprop(params, lr=recipe.lr, alpha=0.9, eps=1e-7, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
    raise EdgecnnError(f"optimizer {recipe.optimizer!r} is not supported (accepted: {', '.join(OPTIMIZERS)})")


def _scheduler(recipe: Recipe, opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps)
    if recipe.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise EdgecnnError(f"schedule {recipe.schedule!r} is not supported (accepted: {', '.join(SCHEDULES)})")


def evaluate_torch(recipe: Recipe, net: nn.Module, split: Split, batch_size: int = 512) -> tuple[float, float]:
    """Mean loss and accuracy of `net` on a split, in eval mode."""
    net.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(split), batch_size):
            x = torch.from_numpy(split.x[i : i + batch_size])
            y = torch.from_numpy(split.y[i : i + batch_size])
            logits = net(x)
            loss += float(_loss(recipe, logits, y)) * len(y)
            correct += _correct(recipe, logits, y)
    return loss / max(len(split), 1), correct / max(len(split), 1)


def shift_batch(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift images by (dy, dx) pixels with zero fill."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _train_epoch(recipe, net, ema, opt, sched, split: Split, gen: torch.Generator) -> tuple[float, float]:
    net.train()
    x_all, y_all = torch.from_numpy(split.x), torch.from_numpy(split.y)
    order = torch.randperm(len(split), generator=gen)
    loss_sum, correct = 0.0, 0
    for i in range(0, len(split), recipe.batch_size):
        idx = order[i : i + recipe.batch_size]
        x, y = x_all[idx], y_all[idx]
        if recipe.shift_pixels and float(torch.rand(1, generator=gen)) < recipe.shift_probability:
            dy, dx = torch.randint(-recipe.shift_pixels, recipe.shift_pixels + 1, (2,), generator=gen).tolist()
            x = shift_batch(x, dy, dx)
        if recipe.augment:
            x = get_augment(recipe.augment)(x, gen)
        logits = net(x)
        loss = _loss(recipe, logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(net)
        loss_sum += loss.item() * len(y)
        correct += _correct(recipe, logits.detach(), y)
    return loss_sum / len(split), correct / len(split)


def fine_tune(recipe: Recipe, net: nn.Module, data: Dataset, epochs: int, show_progress: bool = True) -> list[dict[str, float]]:
    """Retrain a pruned net with the recipe's own optimizer and schedule, a bar per epoch on a terminal.

    The full rate recovers more than a reduced one: on convnet (MNIST subset, ratio 0.5, 5 epochs)
    a tenth of the rate lost 1.8 points, the recipe's rate gained 0.6.
    """
    recipe = dataclasses.replace(recipe, ema_decay=0.0)
    opt = _optimizer(recipe, net)
    sched = _scheduler(recipe, opt, epochs * -(-len(data.train) // recipe.batch_size))
    gen = torch.Generator().manual_seed(recipe.seed)
    history = []
    with progress_bar(f"fine-tune {recipe.name}", epochs, show_progress) as advance:
        for epoch in range(epochs):
            loss, acc = _train_epoch(recipe, net, None, opt, sched, data.train, gen)
            val_loss, val_acc = evaluate_torch(recipe, net, data.val)
            history.append({"epoch": epoch + 1, "loss": loss, "accuracy": acc, "val_loss": val_loss, "val_accuracy": val_acc})
            advance(f"val_acc {val_acc:.4f}")
    return history


def _final(net: nn.Module, ema: torch.optim.swa_utils.AveragedModel | None) -> nn.Module:
    """The weights a run keeps: the moving average when the recipe asks for one."""
    return ema.module if ema is not None else net


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Torch's threads in this process while the block runs. Trained weights, and so accuracy, depend on
    them in the last bits: runs compared across processes (a sweep's cells) train on the same number."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def recipe_run(recipe_name: str, out: Path | None) -> Run:
    """The run folder of a training: `out`, else runs/RECIPE for a known recipe (a name is never a path)."""
    return Run(out or Path("runs") / get_recipe(recipe_name).name)


@holds_run(lambda recipe_name, out, **_: recipe_run(recipe_name, out))
def train(
    recipe_name: str,
    out: Path | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    resume: bool = False,
    force: bool = False,
    dataset: Dataset | None = None,
    show_progress: bool = True,
    dataset_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a recipe into a run folder; returns the summary written to recipe.json.

    `dataset_options` (e.g. data_dir, subset) extend the recipe's and are recorded with it, so
    later steps reload the same data.
    """
    recipe = get_recipe(recipe_name)
    if epochs is not None and epochs < 1:
        raise EdgecnnError(f"epochs must be at least 1, got {epochs}")
    recipe = dataclasses.replace(
        recipe,
        epochs=recipe.epochs if epochs is None else epochs,
        seed=recipe.seed if seed is None else seed,
        dataset_options={**recipe.dataset_options, **(dataset_options or {})},
    )
    run = recipe_run(recipe.name, out)
    out, checkpoint = run.root, run.checkpoint
    if resume and force:
        raise EdgecnnError("--resume and --force contradict each other: pick one")
    if resume:
        if not checkpoint.is_file():
            done = f" (the run finished: {run.weights().name} exists)" if run.weights().is_file() else ""
            raise EdgecnnError(f"nothing to resume: {checkpoint} not found{done}")
    else:
        refuse_overwrite(run.weights(), force)

    data = dataset or load_dataset(recipe.dataset, **recipe.dataset_options)
    if not recipe.labels:  # a recipe for any image folder takes the folder's classes
        recipe = dataclasses.replace(recipe, labels=list(data.labels))
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    net = build_net(recipe.net, **_net_kwargs(recipe))
    if recipe.pretrained:
        load_pretrained(net, recipe.pretrained)
    opt = _optimizer(recipe, net)
    steps_per_epoch = -(-len(data.train) // recipe.batch_size)
    sched = _scheduler(recipe, opt, recipe.epochs * steps_per_epoch)
    ema = (
        torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(recipe.ema_decay))
        if recipe.ema_decay
        else None
    )
    gen = torch.Generator().manual_seed(recipe.seed)
    history: list[dict[str, float]] = []
    start_epoch, elapsed = 0, 0.0

    if resume:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state["recipe"] != recipe.to_json():
            raise EdgecnnError(f"{checkpoint} was written for other settings; rerun without --resume")
        net.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, start_epoch, elapsed = state["history"], state["epoch"], state["elapsed"]

    out.mkdir(parents=True, exist_ok=True)
    with Progress(
        TextColumn(f"train {recipe.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=False,
    ) as progress:
        task = progress.add_task("epochs", total=recipe.epochs, completed=start_epoch, metrics="")
        for epoch in range(start_epoch, recipe.epochs):
            t0 = time.perf_counter()
            train_loss, train_acc = _train_epoch(recipe, net, ema, opt, sched, data.train, gen)
            val_loss, val_acc = evaluate_torch(recipe, _final(net, ema), data.val)
            elapsed += time.perf_counter() - t0
            history.append(
                {"epoch": epoch + 1, "loss": train_loss, "accuracy": train_acc, "val_loss": val_loss, "val_accuracy": val_acc}
            )
            with atomic_path(checkpoint, force=True) as tmp:
                torch.save(
                    {
                        "recipe": recipe.to_json(),
                        "model": net.state_dict(),
                        "ema": ema.state_dict() if ema is not None else {},
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "generator": gen.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "history": history,
                        "epoch": epoch + 1,
                        "elapsed": elapsed,
                    },
                    tmp,
                )
            progress.update(task, advance=1, metrics=f"loss {train_loss:.3f} val_acc {val_acc:.4f}")

    net = _final(net, ema)
    test_loss, test_acc = evaluate_torch(recipe, net, data.test)
    summary = {
        **recipe.to_json(),
        "params": count_params(net),
        "dataset_source": data.source,
        "train_seconds": round(elapsed, 2),
        "torch_test_accuracy": test_acc,
        "torch_test_loss": test_loss,
        "samples": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
    }
    with atomic_path(run.weights(), force=True) as tmp:
        torch.save(net.state_dict(), tmp)
    write_json(run.history_json, history, force=True)
    write_json(run.recipe_json, summary, force=True)
    keep_test_split(run, data)
    plot_curves(history, run.curves_png, title=recipe.name)
    checkpoint.unlink(missing_ok=True)
    return summary


def plot_curves(history: list[dict[str, float]], path: Path, title: str) -> Path:
    """Loss and accuracy per epoch, train and validation, as the seeds plot them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, name in ((ax_loss, "loss", "Loss"), (ax_acc, "accuracy", "Accuracy")):
        ax.plot(epochs, [h[key] for h in history], label="Train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], label="Val")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{title}: {name.lower()}")
        ax.legend(loc="best")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return path
