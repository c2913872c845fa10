"""Galaxy morphology: statistics of a cutout (concentration, asymmetry, ...) and the boosting classifier on them."""
