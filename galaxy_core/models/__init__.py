"""Models: augmentation layers, the network builder and loader, ONNX export and graph passes, int8, predictor backends."""
