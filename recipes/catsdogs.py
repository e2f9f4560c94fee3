"""Seed 003 on Kaggle's cats vs dogs: the three-conv CNN (4,894,913 parameters), plain and augmented.

Data is a user download: `--data-dir` names a folder with cats/ and dogs/, or Kaggle's
train/{cats,dogs} + validation/{cats,dogs} (cats_and_dogs_filtered, the set the seed trained on).
"""

from dataclasses import replace

from edgecnn.runtime.card import Preprocess
from recipes import Recipe, register

CATSDOGS_PREPROCESS = Preprocess(
    layout="NCHW",
    color="rgb",
    size=(150, 150),  # the seed's target_size
    resize="stretch",  # flow_from_directory resizes the whole photo to 150×150, aspect not kept
    scale=1 / 255,  # ImageDataGenerator(rescale=1./255)
)
CLASSES = ["cats", "dogs"]  # Keras' alphabetical class order: cats 0, dogs 1 (the sigmoid says "dog")

CATSDOGS = register(
    Recipe(
        name="catsdogs",
        net="catsdogs_cnn",
        dataset="image_folder",
        input_shape=(3, 150, 150),
        labels=CLASSES,
        preprocess=CATSDOGS_PREPROCESS,
        epochs=15,  # seed 003: model.fit(..., epochs=15)
        batch_size=32,  # flow_from_directory(batch_size=32)
        optimizer="adam",
        lr=1e-3,  # Keras' Adam default; the seed sets none
        schedule="constant",  # Keras keeps the rate fixed
        seed=0,
        output="sigmoid",  # Dense(1, activation='sigmoid') with binary cross-entropy
        dataset_options={"preprocess": CATSDOGS_PREPROCESS.to_dict(), "classes": CLASSES},
        reference="seed 003 plots curves only, no figure (Keras, Adam, 15 epochs × 100 steps of 32)",
        notes="epochs run over the whole training folder once each, not the seed's fixed 100 steps",
    )
)

CATSDOGS_AUG = register(
    replace(
        CATSDOGS,
        name="catsdogs_aug",
        augment="shift_shear_zoom",  # the seed's width/height shift 0.2, shear 0.2 (degrees, as Keras reads it), zoom 0.2
        reference="seed 003: augmentation did not beat the plain net there (curves only, no figure)",
        notes=CATSDOGS.notes + "; Keras' shear_range is in degrees, so 0.2 barely shears",
    )
)
