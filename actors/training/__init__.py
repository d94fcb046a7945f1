"""Evaluating models on a dataset's validation split: predictions, comparison, results."""
