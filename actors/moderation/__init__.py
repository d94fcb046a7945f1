"""Moderation of training data (issue 19.3): score the text of the steps a dataset would use,
store scores and decisions, flag what crosses a workspace's thresholds, keep blocked steps out."""
