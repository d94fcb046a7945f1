"""tracemill: serve_app."""
