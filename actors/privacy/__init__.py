"""Server-side redaction of personal data and secrets, applied on the write path.

`patterns` holds the detectors (one regex and one validator per kind of data); `redact` walks
text, URLs, Elements, events and DOM snapshots with them. Pure Python, no Ray: the pipeline
calls it before anything reaches the database, the object store, logs or archives.
"""
