"""edgecnn: small CNNs from training to a measured, int8, pruned ONNX model on an edge device."""

__version__ = "0.2.0"
