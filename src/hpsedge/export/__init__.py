"""Export side (needs torch and onnx): ONNX export and verification, precision, TensorRT builds."""
