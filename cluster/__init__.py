"""tracemill: cluster."""
