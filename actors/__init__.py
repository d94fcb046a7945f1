"""tracemill: actors."""
