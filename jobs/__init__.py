"""tracemill: jobs."""
