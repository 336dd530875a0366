"""rdec device-side runtime: numpy + ONNX Runtime / TensorRT, never torch."""
__version__ = "0.1.0"
