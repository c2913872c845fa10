"""Training: checkpoints and the run lock, callbacks, the tf.data pipeline, the phases and the hub."""
