"""tracemill: configs."""
