"""Seed 001's dense net and seed 004's convnet on Fashion-MNIST, with the same settings as on MNIST.

Seed 001 announces Fashion-MNIST but loads MNIST, so no document gives a Fashion-MNIST figure.
Data: the IDX files of Debian's dataset-fashion-mnist (`make data`) or --data-dir.
"""

from dataclasses import replace

from edgecnn.data.datasets import FASHION_MNIST_LABELS
from edgecnn.runtime.card import Preprocess
from recipes import register
from recipes.mnist import CONVNET, HOLDOUT, MNIST_DENSE

FASHION_PREPROCESS = Preprocess(
    layout="NCHW",
    color="gray",
    size=(28, 28),
    resize="center_crop",
    crop_pct=1.0,  # the dataset's items fill the whole frame: crop the full shorter side
    scale=1 / 255,
    invert=True,  # items are light on a black field; photos show them on a light one
)
NO_FIGURE = "none: seed 001 announces Fashion-MNIST but trains on MNIST"

FASHION_DENSE = register(
    replace(
        MNIST_DENSE,
        name="fashion_dense",
        dataset="fashion_mnist",
        labels=FASHION_MNIST_LABELS,
        preprocess=FASHION_PREPROCESS,
        reference=NO_FIGURE,
        notes=f"seed 001's dense net and settings (Adam, 5 epochs, batch 32); {HOLDOUT}",
    )
)

FASHION_CNN = register(
    replace(
        CONVNET,
        name="fashion_cnn",
        dataset="fashion_mnist",
        labels=FASHION_MNIST_LABELS,
        preprocess=FASHION_PREPROCESS,
        reference=NO_FIGURE,
        notes=f"seed 004's convnet and settings (RMSprop, 5 epochs, batch 64); {HOLDOUT}",
    )
)
