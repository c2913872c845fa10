"""Running a classifier on images: model input, batched probabilities, test-time augmentation, items -> probabilities."""
