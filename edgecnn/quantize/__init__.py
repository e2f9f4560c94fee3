"""int8 with onnxruntime.quantization: one configuration (model), named graph passes (passes), the
accuracy-budgeted search (search) and the layer ranking (layers). No torch.
"""
