import json

import pytest
import torch

from edgecnn.errors import EdgecnnError
from edgecnn.train.fit import load_trained, shift_batch, train


def test_train_writes_the_run_folder(digits_run):
    for name in ("model.pt", "recipe.json", "history.json", "curves.png"):
        assert (digits_run / name).is_file(), name
    assert not (digits_run / "checkpoint.pt").exists()
    history = json.loads((digits_run / "history.json").read_text())
    assert len(history) == 12
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history[0])
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    state = torch.load(digits_run / "model.pt", weights_only=True)
    assert set(state) == {"0.weight", "0.bias", "4.weight", "4.bias", "9.weight", "9.bias"}


def test_same_seed_same_weights(tmp_path):
    a = train("digits", tmp_path / "a", epochs=2, show_progress=False)
    b = train("digits", tmp_path / "b", epochs=2, show_progress=False)
    assert a["torch_test_accuracy"] == b["torch_test_accuracy"]
    wa, wb = (torch.load(p / "model.pt", weights_only=True) for p in (tmp_path / "a", tmp_path / "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_after_an_interruption_reaches_the_same_weights(tmp_path, monkeypatch):
    full = train("digits", tmp_path / "full", epochs=3, show_progress=False)
    import edgecnn.train.fit as train_module

    original, calls = train_module._train_epoch, []

    def interrupted_in_second_epoch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C does mid-epoch
        return original(*args)

    part = tmp_path / "part"
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_train_epoch", interrupted_in_second_epoch)
        with pytest.raises(KeyboardInterrupt):
            train("digits", part, epochs=3, show_progress=False)
    assert (part / "checkpoint.pt").is_file() and not (part / "model.pt").exists()
    resumed = train("digits", part, epochs=3, resume=True, show_progress=False)
    assert resumed["torch_test_accuracy"] == full["torch_test_accuracy"]
    wa, wb = (torch.load(p / "model.pt", weights_only=True) for p in (tmp_path / "full", part))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert len(json.loads((part / "history.json").read_text())) == 3


def test_train_refuses_to_overwrite_and_bad_epochs(digits_run, tmp_path):
    with pytest.raises(EdgecnnError, match="--force"):
        train("digits", digits_run, epochs=1, show_progress=False)
    with pytest.raises(EdgecnnError, match="epochs must be at least 1"):
        train("digits", tmp_path / "x", epochs=0, show_progress=False)
    with pytest.raises(EdgecnnError, match="nothing to resume"):
        train("digits", tmp_path / "y", resume=True, show_progress=False)
    with pytest.raises(EdgecnnError, match="unknown recipe 'nope'"):
        train("nope", tmp_path / "z", show_progress=False)


def test_shift_batch_moves_pixels_with_zero_fill():
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    shifted = shift_batch(x, 1, -1)
    assert shifted[0, 0].tolist() == [[0, 0, 0], [1, 2, 0], [4, 5, 0]]


def test_load_trained_rejects_a_foreign_state_dict(digits_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.json").write_text((digits_run / "recipe.json").read_text())
    torch.save({"other.weight": torch.zeros(3)}, run / "model.pt")
    with pytest.raises(EdgecnnError, match="not a state_dict of net 'digits_cnn'"):
        load_trained(run)


@pytest.mark.slow  # two trainings of 30 epochs
def test_kill_9_mid_training_loses_at_most_one_epoch(tmp_path):
    """A real training process killed with SIGKILL: the checkpoint it left is whole, and --resume
    goes on from the last finished epoch to the weights an uninterrupted run reaches."""
    import json
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "killed"
    code = "from edgecnn.train.fit import train; train('digits', %r, epochs=30, show_progress=False)" % str(run)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # a few epochs on, mid-write as likely as not
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (run / "model.pt").exists()  # a temporary file may stay behind; the artifacts are whole or absent
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert 1 <= state["epoch"] < 30
    resumed = train("digits", run, epochs=30, resume=True, show_progress=False)
    straight = train("digits", tmp_path / "straight", epochs=30, show_progress=False)
    assert resumed["epochs"] == straight["epochs"] == 30
    assert json.loads((run / "history.json").read_text())[-1] == json.loads((tmp_path / "straight" / "history.json").read_text())[-1]
