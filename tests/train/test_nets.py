import pytest
import torch

from edgecnn.errors import EdgecnnError
from edgecnn.train.nets import build_net, count_params, summarize

# each net's model.summary() in its seed document, as (output shape without batch, params) per layer
SEED_SUMMARIES = {
    "digits_cnn": ((1, 8, 8), [((8, 8, 8), 80), ((4, 4, 8), 0), ((4, 4, 8), 0), ((4, 4, 8), 584), ((2, 2, 8), 0),
                               ((2, 2, 8), 0), ((32,), 0), ((10,), 330)]),  # seed 000, no activation layers
    "mnist_dense": ((1, 28, 28), [((784,), 0), ((128,), 100_480), ((10,), 1_290)]),  # seed 001
    "mnist_cnn": ((1, 28, 28), [((26, 26, 32), 320), ((13, 13, 32), 0), ((11, 11, 64), 18_496), ((7744,), 0),
                                ((64,), 495_680), ((10,), 650)]),  # seed 001
    "convnet": ((1, 28, 28), [((26, 26, 32), 320), ((13, 13, 32), 0), ((11, 11, 64), 18_496), ((5, 5, 64), 0),
                              ((3, 3, 64), 36_928), ((576,), 0), ((64,), 36_928), ((10,), 650)]),  # seed 004
}


def _keras_rows(name: str) -> list[tuple[tuple[int, ...], int]]:
    """Our summary in Keras' terms: channels last, activations folded into the layer before, as Keras does."""
    input_shape, _ = SEED_SUMMARIES[name]
    rows = summarize(build_net(name), input_shape)["layers"]
    shape = lambda s: tuple(s[2:] + s[1:2]) if len(s) > 2 else tuple(s[1:])  # noqa: E731
    return [(shape(r["output_shape"]), r["params"]) for r in rows if r["type"] != "ReLU"]


@pytest.mark.parametrize("name", sorted(SEED_SUMMARIES))
def test_summary_matches_the_seed_documents_table(name):
    assert _keras_rows(name) == SEED_SUMMARIES[name][1]


def test_parameter_counts_equal_the_documents():
    assert count_params(build_net("digits_cnn")) == 994
    assert count_params(build_net("mnist_dense")) == 101_770
    assert count_params(build_net("mnist_cnn")) == 515_146
    assert count_params(build_net("convnet")) == 93_322
    # seed 002's 1D CNN on 1 channel with a 10-way head: conv 1·3·64+64, 64·3·64+64, 64·3·128+128, 128·3·128+128; dense 128·10+10
    assert count_params(build_net("seq1d_cnn")) == 256 + 12_352 + 24_704 + 49_280 + 1_290 == 87_882


@pytest.mark.parametrize("name,shape", [("digits_cnn", (1, 8, 8)), ("convnet", (1, 28, 28)), ("seq1d_cnn", (1, 40))])
def test_every_conv_and_pool_shape_follows_the_output_size_formula(name, shape):
    rows = summarize(build_net(name), shape)["layers"]
    spatial = list(shape[1:])
    for row in rows:
        if "kernel" in row and row["padding"] != "same":
            spatial = [1 + (w - k + 2 * p) // s for w, k, s, p in zip(spatial, row["kernel"], row["stride"], row["padding"])]
        elif "kernel" in row:
            spatial = [-(-w // s) for w, s in zip(spatial, row["stride"])]
        if len(row["output_shape"]) == len(shape) + 1 and "kernel" in row:
            assert row["output_shape"][2:] == spatial, row


def test_seq1d_runs_on_40_step_signals():
    net = build_net("seq1d_cnn").eval()
    assert net(torch.zeros(5, 1, 40)).shape == (5, 10)
    rows = summarize(net, (1, 40))["layers"]
    assert [r["output_shape"] for r in rows if r["type"] == "Conv1d"] == [[None, 64, 38], [None, 64, 36], [None, 128, 10], [None, 128, 8]]


def test_summary_leaves_the_net_as_it_was_and_names_a_bad_shape():
    net = build_net("convnet").train()
    summary = summarize(net, (1, 28, 28))
    assert net.training and not any(m._forward_hooks for m in net.modules())
    assert summary["total_params"] == summary["trainable_params"] == 93_322 and summary["non_trainable_params"] == 0
    with pytest.raises(EdgecnnError, match=r"input shape \[1, 8, 8\] does not fit"):
        summarize(net, (1, 8, 8))
