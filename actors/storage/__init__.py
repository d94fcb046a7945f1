"""Storage back ends of tracemill: the object store for screenshots and exports."""
