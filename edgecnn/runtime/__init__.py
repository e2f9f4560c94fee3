"""The runtime half: ONNX Runtime sessions and providers, the model card, preprocessing, eval, bench, info.

What a Raspberry Pi installs: onnx, onnxruntime, numpy and OpenCV; never torch. Imports graph only.
"""
