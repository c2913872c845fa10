"""Preprocessing: decode any image to RGB uint8, crop the central galaxy, resize, CLAHE, opening; the cache."""
