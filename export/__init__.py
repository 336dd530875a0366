"""Training side (torch): networks, DDIM math, training stages, ONNX export, TensorRT build."""
