"""Shared test setup: quiet TensorFlow, deterministic seeds, small synthetic Galaxy10 files."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
