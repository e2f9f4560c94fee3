"""ONNX graph reading, rewrites (input crop, layouts, the int8 space-to-depth stem) and counting. No torch.

Imports nothing else of edgecnn but errors.
"""
