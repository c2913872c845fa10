"""Evaluation: metrics and report, curves, calibration, test-set embedding, scoring of labelled images."""
