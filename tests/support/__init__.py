"""Helpers shared by tracemill's test suites (servers, fixtures); not test modules."""
