"""Seed 002's 1D CNN on MNIST-1D: 10 classes of 40-step signals, generated locally (paper's CNN: 94%)."""

from edgecnn.runtime.card import Preprocess
from recipes import Recipe, register

SEQ1D = register(
    Recipe(
        name="seq1d",
        net="seq1d_cnn",
        dataset="mnist1d",
        input_shape=(1, 40),  # channels, steps: one value per step
        labels=[str(i) for i in range(10)],
        preprocess=Preprocess(
            layout="NCL",  # a sequence, not an image: one channel, 40 steps; no resize or crop applies
            color="gray",
            size=(40,),
            scale=1.0,  # the generator already centers the signals to unit standard deviation
        ),
        epochs=10,  # seed 002: model.fit(x_train, y_train, batch_size=16, epochs=10)
        batch_size=16,
        optimizer="rmsprop",
        lr=1e-3,  # Keras' RMSprop default rate
        schedule="constant",
        reference="94% test accuracy (the MNIST-1D paper's CNN; seed 002 gives no figure for this net)",
        notes="seed 002's net with a 10-way softmax head in place of its single sigmoid unit; "
        "the last 10% of the 4,000 generated training signals are the validation split",
    )
)
