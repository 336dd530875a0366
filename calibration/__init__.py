"""INT8 post-training quantization of the diffusion networks (calibration data, QDQ models, reports)."""
